"""The model registry: which models exist, their layers and how their activations are stored.

The study's 36 models (318 layers) ship with the package in ``fastenc/data/model_registry.json``:
for every model its display name, its layers in processing order, its storage kind (``"h5"`` or
``"per_sound_pickle"``, see docs/method.md §1) and, for the per-sound pickles, the key of each layer in the
pickled dict. The file also holds the model sets used by the study's figures and the order of the
11 sound categories.

User models are added with a small JSON manifest, merged over the shipped registry (a manifest
entry with the name of a shipped model replaces it)::

    {
      "models": {
        "MyNet": {
          "display_name": "My network",
          "layers": ["conv1", "conv2", "fc"],
          "storage": "h5",                      # or "per_sound_pickle"
          "layer_keys": {"conv1": "Conv2d--0"}, # optional: the layer's key in storage (pickle
                                                # dict key, or h5 dataset name) where it is not
                                                # the layer name itself
          "has_randnetw": true                  # optional (default true)
        }
      },
      "model_sets": {"MY_SET": ["MyNet", "spectemp"]}   # optional
    }

A manifest named ``fastenc_models.json`` at the root of a data folder is picked up automatically by
``load_registry(data_dir)``.

Storage aliases of the shipped models (``SHIPPED_LAYER_KEYS``): the study's h5 file of ResNet50music
stores the layer ``conv1_relu1`` under the dataset name ``relu1`` (the study's source-feature loader,
``aud_dnn/utils.py`` ``get_source_features``, maps it); the shipped registry records this as the
layer's key, so ``key_of("conv1_relu1")`` is ``"relu1"`` for that model.

Examples
--------
>>> reg = load_registry()
>>> len(reg), reg.n_layers
(36, 318)
>>> reg.layers("spectemp")
['avgpool']
>>> resolve_models(["FIG_8_MODEL_LIST"], reg)[:2]
['Kell2018word', 'Kell2018wordClean']
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_FILENAME",
    "SHIPPED_LAYER_KEYS",
    "STORAGE_KINDS",
    "ModelSpec",
    "Registry",
    "load_registry",
    "read_manifest",
    "resolve_models",
]

#: File name of a user manifest picked up automatically at the root of a data folder.
MANIFEST_FILENAME = "fastenc_models.json"
#: The two storage kinds of model activations (docs/method.md §1).
STORAGE_KINDS = ("h5", "per_sound_pickle")
#: Shipped models that have no version with permuted weights.
_MODELS_WITHOUT_RANDNETW = frozenset({"spectemp"})
_MODEL_FIELDS = {"display_name", "layers", "storage", "layer_keys", "has_randnetw"}
#: Storage keys of shipped layers that differ from the layer name, merged into the shipped
#: registry's ``layer_keys``: {model: {layer: key in the h5 file}} (from the study's
#: ``utils.get_source_features``, which reads ResNet50music's ``conv1_relu1`` from dataset ``relu1``).
SHIPPED_LAYER_KEYS: dict[str, dict[str, str]] = {
    "ResNet50music": {"conv1_relu1": "relu1"},
}


@dataclass(frozen=True)
class ModelSpec:
    """One model of the registry.

    Attributes
    ----------
    name : str
        Registry name, also the folder name under ``model_actv/``.
    display_name : str
        Name used in figures (e.g. ``"CochResNet50-MultiTask"``).
    layers : tuple of str
        Layers in processing order (shallow to deep).
    storage : {"h5", "per_sound_pickle"}
        How the activations are stored on disk (docs/method.md §1).
    layer_keys : dict of str to str
        Key of a layer in storage where it is not the layer name: the per-sound pickle dict key
        (``per_sound_pickle``) or the dataset name in the h5 file (``h5``, e.g. ResNet50music's
        ``conv1_relu1`` is stored as ``relu1``).
    has_randnetw : bool
        Whether a version with permuted weights exists (False for ``spectemp``).
    source : str
        ``"shipped"`` or the path of the manifest that defined the model.

    Examples
    --------
    >>> spec = load_registry()["AST"]
    >>> spec.storage, spec.layers[0], spec.key_of("Embedding")
    ('per_sound_pickle', 'Embedding', 'Conv2d(1, 768, kernel_size=(16, 16), stride=(10, 10))--0')
    """

    name: str
    display_name: str
    layers: tuple[str, ...]
    storage: str
    layer_keys: Mapping[str, str] = field(default_factory=dict)
    has_randnetw: bool = True
    source: str = "shipped"

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return len(self.layers)

    def key_of(self, layer: str) -> str:
        """Key of ``layer`` in storage: per-sound pickle key or h5 dataset name (the layer name
        itself when not mapped).

        Examples
        --------
        >>> load_registry()["ResNet50music"].key_of("conv1_relu1")
        'relu1'
        >>> load_registry()["ResNet50word"].key_of("conv1_relu1")
        'conv1_relu1'
        """
        if layer not in self.layers:
            raise ValueError(
                f"model {self.name!r} has no layer {layer!r}; its layers are {list(self.layers)}"
            )
        return self.layer_keys.get(layer, layer)


@dataclass(frozen=True)
class Registry:
    """Models, model sets and sound category order.

    Use :func:`load_registry` to build one. Models keep their registry order (shipped models first,
    then manifest models in manifest order).

    Examples
    --------
    >>> reg = load_registry()
    >>> "AST" in reg, reg.display_name("DS2"), reg.storage("VGGish")
    (True, 'DeepSpeech2', 'per_sound_pickle')
    >>> reg.sound_category_order[:3]
    ('Music', 'Song', 'EngSpeech')
    """

    models: Mapping[str, ModelSpec]
    model_sets: Mapping[str, list]
    sound_category_order: tuple[str, ...]
    manifests: tuple[str, ...] = ()

    # -- container protocol ------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, name: str) -> ModelSpec:
        return self.spec(name)

    # -- queries -----------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        """Total number of layers over all models."""
        return sum(spec.n_layers for spec in self.models.values())

    def model_names(self) -> list[str]:
        """Names of all models, in registry order."""
        return list(self.models)

    def spec(self, name: str) -> ModelSpec:
        """The :class:`ModelSpec` of model ``name`` (``ValueError`` with close matches if unknown)."""
        try:
            return self.models[name]
        except (KeyError, TypeError):
            raise ValueError(_unknown_message("model", name, list(self.models))) from None

    def layers(self, name: str) -> list[str]:
        """Layers of model ``name`` in processing order."""
        return list(self.spec(name).layers)

    def storage(self, name: str) -> str:
        """Storage kind of model ``name``: ``"h5"`` or ``"per_sound_pickle"``."""
        return self.spec(name).storage

    def layer_keys(self, name: str) -> dict[str, str]:
        """Storage key (pickle key or h5 dataset name) of every layer of ``name`` (layer name itself
        when not mapped)."""
        spec = self.spec(name)
        return {layer: spec.key_of(layer) for layer in spec.layers}

    def display_name(self, name: str) -> str:
        """Display name of model ``name``."""
        return self.spec(name).display_name

    def has_randnetw(self, name: str) -> bool:
        """Whether model ``name`` has a version with permuted weights."""
        return self.spec(name).has_randnetw

    def model_set(self, set_name: str) -> list:
        """The raw model set ``set_name`` (a list of names, or of name pairs for the pair sets)."""
        try:
            return list(self.model_sets[set_name])
        except KeyError:
            raise ValueError(_unknown_message("model set", set_name, list(self.model_sets))) from None

    def model_set_members(self, set_name: str) -> list[str]:
        """Model names of set ``set_name``, pair sets flattened, each once, in set order.

        Examples
        --------
        >>> load_registry().model_set_members("FIG2_SEED_PAIRS")[:2]
        ['Kell2018word', 'Kell2018wordSeed2']
        """
        return list(dict.fromkeys(_flatten_set(self.model_set(set_name))))

    def merge(self, manifest: str | Path | Mapping[str, Any]) -> "Registry":
        """A new registry with the models and model sets of ``manifest`` merged over this one.

        Parameters
        ----------
        manifest : path or dict
            A manifest file (JSON) or its already-parsed content.

        Returns
        -------
        Registry
        """
        if isinstance(manifest, Mapping):
            source, content = "<manifest dict>", manifest
        else:
            source = str(manifest)
            content = _read_json(Path(manifest))
        new_models, new_sets = _parse_manifest(content, source)
        models = dict(self.models)
        models.update(new_models)
        sets = dict(self.model_sets)
        sets.update(new_sets)
        _check_model_sets(new_sets, models, source)
        return Registry(models, sets, self.sound_category_order, self.manifests + (source,))


def _unknown_message(kind: str, name: object, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (known: {len(choices)} {kind}s, e.g. {', '.join(choices[:6])})"


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"model manifest not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model manifest {path} is not valid JSON: {exc}") from None


def _parse_model(name: Any, entry: Any, source: str) -> ModelSpec:
    where = f"model manifest {source}: model {name!r}"
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"{where}: model names must be non-empty folder names without '/'")
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: entry must be a JSON object, got {type(entry).__name__}")
    unknown = set(entry) - _MODEL_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_MODEL_FIELDS)}")
    for required in ("layers", "storage"):
        if required not in entry:
            raise ValueError(f"{where}: missing required field {required!r}")
    layers = entry["layers"]
    if (not isinstance(layers, list) or not layers
            or not all(isinstance(layer, str) and layer for layer in layers)):
        raise ValueError(f"{where}: field 'layers' must be a non-empty list of layer names (strings)")
    duplicated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if duplicated:
        raise ValueError(f"{where}: field 'layers' repeats {duplicated}")
    storage = entry["storage"]
    if storage not in STORAGE_KINDS:
        raise ValueError(f"{where}: field 'storage' must be one of {list(STORAGE_KINDS)}, got {storage!r}")
    display_name = entry.get("display_name", name)
    if not isinstance(display_name, str) or not display_name:
        raise ValueError(f"{where}: field 'display_name' must be a non-empty string")
    layer_keys = entry.get("layer_keys", {}) or {}
    if not isinstance(layer_keys, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in layer_keys.items()):
        raise ValueError(f"{where}: field 'layer_keys' must be an object from layer name to storage key "
                         "(pickle key or h5 dataset name)")
    if not all(layer_keys.values()):
        raise ValueError(f"{where}: field 'layer_keys' has an empty key")
    stray = [k for k in layer_keys if k not in layers]
    if stray:
        raise ValueError(f"{where}: field 'layer_keys' names layers not in 'layers': {stray}")
    has_randnetw = entry.get("has_randnetw", name not in _MODELS_WITHOUT_RANDNETW)
    if not isinstance(has_randnetw, bool):
        raise ValueError(f"{where}: field 'has_randnetw' must be true or false")
    return ModelSpec(name=name, display_name=display_name, layers=tuple(layers), storage=storage,
                     layer_keys=dict(layer_keys), has_randnetw=has_randnetw, source=source)


def _parse_manifest(content: Any, source: str) -> tuple[dict[str, ModelSpec], dict[str, list]]:
    if not isinstance(content, Mapping):
        raise ValueError(f"model manifest {source}: top level must be a JSON object with a 'models' field")
    unknown = set(content) - {"models", "model_sets", "description"}
    if unknown:
        raise ValueError(f"model manifest {source}: unknown top-level field(s) {sorted(unknown)}; "
                         "allowed: 'models', 'model_sets', 'description'")
    if "models" not in content:
        raise ValueError(f"model manifest {source}: missing required field 'models'")
    models_content = content["models"]
    if not isinstance(models_content, Mapping):
        raise ValueError(f"model manifest {source}: field 'models' must be an object from model name to entry")
    models = {name: _parse_model(name, entry, source) for name, entry in models_content.items()}
    sets_content = content.get("model_sets", {}) or {}
    if not isinstance(sets_content, Mapping):
        raise ValueError(f"model manifest {source}: field 'model_sets' must be an object from set name to list")
    sets = {}
    for set_name, members in sets_content.items():
        if not isinstance(members, list):
            raise ValueError(f"model manifest {source}: model set {set_name!r} must be a list of model names")
        sets[set_name] = list(members)
    return models, sets


def _flatten_set(members: Iterable) -> list[str]:
    names: list[str] = []
    for member in members:
        if isinstance(member, str):
            names.append(member)
        elif isinstance(member, (list, tuple)):
            names.extend(_flatten_set(member))
        else:
            raise ValueError(f"model set entries must be names or lists of names, got {member!r}")
    return names


def _check_model_sets(sets: Mapping[str, list], models: Mapping[str, ModelSpec], source: str) -> None:
    for set_name, members in sets.items():
        try:
            names = _flatten_set(members)
        except ValueError as exc:
            raise ValueError(f"model manifest {source}: model set {set_name!r}: {exc}") from None
        missing = [n for n in names if n not in models]
        if missing:
            raise ValueError(f"model manifest {source}: model set {set_name!r} names unknown model(s) {missing}")


def _shipped_registry() -> Registry:
    text = resources.files("fastenc").joinpath("data/model_registry.json").read_text(encoding="utf-8")
    content = json.loads(text)
    models_content = {name: dict(entry) for name, entry in content["models"].items()}
    for name, keys in SHIPPED_LAYER_KEYS.items():
        if name in models_content:
            models_content[name]["layer_keys"] = {**keys, **models_content[name].get("layer_keys", {})}
    models = {name: _parse_model(name, entry, "shipped") for name, entry in models_content.items()}
    sets = {name: list(members) for name, members in content["model_sets"].items()}
    return Registry(models, sets, tuple(content["sound_category_order"]))


def read_manifest(path: str | Path) -> dict[str, ModelSpec]:
    """Read and validate a user manifest; return its models.

    Parameters
    ----------
    path : str or Path
        A JSON manifest (format in the module docstring).

    Returns
    -------
    dict of str to ModelSpec

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is not valid JSON or a field is wrong; the message names the file and the field.

    Examples
    --------
    >>> import json, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> json.dump({"models": {"MyNet": {"layers": ["a", "b"], "storage": "h5"}}}, open(p, "w"))
    >>> read_manifest(p)["MyNet"].layers
    ('a', 'b')
    """
    models, _ = _parse_manifest(_read_json(Path(path)), str(path))
    return models


def load_registry(data_dir: str | Path | None = None,
                  manifest: str | Path | Mapping[str, Any] | None = None) -> Registry:
    """The shipped registry, merged with user manifests.

    Parameters
    ----------
    data_dir : str or Path, optional
        A data root; if it holds ``fastenc_models.json``, that manifest is merged first.
    manifest : str, Path or dict, optional
        An explicit manifest (file or parsed content), merged last (it wins over the data root's).

    Returns
    -------
    Registry

    Examples
    --------
    >>> reg = load_registry(manifest={"models": {"MyNet": {"layers": ["l1"], "storage": "h5"}}})
    >>> reg.layers("MyNet"), len(reg)
    (['l1'], 37)
    """
    registry = _shipped_registry()
    if data_dir is not None:
        auto = Path(data_dir) / MANIFEST_FILENAME
        if auto.is_file():
            registry = registry.merge(auto)
    if manifest is not None:
        registry = registry.merge(manifest)
    return registry


def resolve_models(names_or_sets: str | Iterable[str], registry: Registry | None = None) -> list[str]:
    """Expand model names and model-set names into a list of model names.

    Set names (e.g. ``"FIG_2_5_MODEL_LIST"``) expand to their members (pair sets are flattened);
    duplicates are dropped, first occurrence wins.

    Parameters
    ----------
    names_or_sets : str or iterable of str
        Model names and/or model-set names.
    registry : Registry, optional
        Defaults to the shipped registry.

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        A name is neither a model nor a model set; the message lists close matches.

    Examples
    --------
    >>> resolve_models(["AST", "FIG_2_5_MODEL_LIST"])[:3]
    ['AST', 'Kell2018word', 'Kell2018speaker']
    >>> resolve_models("Kell2018wrd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown model or model set 'Kell2018wrd'; did you mean 'Kell2018word', ...
    """
    registry = load_registry() if registry is None else registry
    if isinstance(names_or_sets, str):
        names_or_sets = [names_or_sets]
    resolved: list[str] = []
    for name in names_or_sets:
        if name in registry.models:
            expanded = [name]
        elif name in registry.model_sets:
            expanded = _flatten_set(registry.model_sets[name])
        else:
            choices = list(registry.models) + list(registry.model_sets)
            close = difflib.get_close_matches(str(name), choices, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"unknown model or model set {name!r}{hint} "
                             f"(model sets: {', '.join(registry.model_sets)})")
        for model in expanded:
            if model not in registry.models:
                raise ValueError(f"model set {name!r} names unknown model {model!r}")
            if model not in resolved:
                resolved.append(model)
    return resolved
