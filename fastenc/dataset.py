"""Your own brain data: a dataset manifest (TOML or JSON) naming responses, stimuli, targets and splits.

The study's targets (NH2015, B2021, NH2015comp) are built in; any other stimulus set — fMRI,
ECoG or cell recordings, auditory or visual, hundreds to a few thousand stimuli, any number of
repetitions — is described by a small manifest, with paths relative to the manifest's folder::

    name = "vision_demo"                   # the target's name in outputs
    responses = "responses.npy"            # (stimuli, targets, repetitions), or (stimuli, targets);
                                           #   "file.h5:dataset" for an HDF5 dataset
    stimulus_ids = "stimuli.csv:stimulus_id"  # a CSV column, or a text file with one id per line
    categories = "stimuli.csv:category"    # optional: per-stimulus category (RSA ordering)
    targets = "targets.csv"                # optional: one row per target, in response column order:
                                           #   participant, roi, and optional x, y, z, target_id
    nan_policy = "raise"                   # or "omit": targets with NaN/inf are not scored
    activations = "."                      # optional: the folder holding model_actv/<model>/ (default:
                                           #   the manifest's folder) and, for models not in the
                                           #   study's registry, fastenc_models.json
    models = ["MyNet"]                     # optional: models (or registry model sets) to score;
                                           #   default every model whose activations are there

    [splits]
    scheme = "kfold"                       # "study", "kfold", "shuffle", "group" or "file"
    k = 5                                  # kfold: k, seed
    seed = 0                               # shuffle: n_train, n_splits, seed
                                           # group: column = "run" (a column of the stimulus CSV)
                                           # file: path = "masks.npy" ((n_splits, stimuli) bool)

:func:`load_dataset` reads and checks it all and returns a :class:`Dataset`; its
:meth:`Dataset.score_layer` scores one layer's activations (rows in the manifest's stimulus
order) with :func:`fastenc.score_layer`: alpha per target by exact leave-one-out inside each
train set, noise correction to the number of repetitions with floors at the one-tailed
p < .05 critical r for the split sizes (no correction with one repetition). Activations of a
model for this stimulus set are read like the study's (:func:`fastenc.io.open_model` with
``stim_ids=dataset.stimulus_ids``: an h5 file of (stimuli, units) per layer, or one pickle per
stimulus named by its id).

Whole models: ``fastenc.run_all(datasets=[manifest])`` or ``python cli.py run-all --dataset
manifest.toml`` score every layer of every model under ``activations`` (the study's two storage
kinds, in the manifest's stimulus order)::

    <activations>/model_actv/<model>/natsound_activations.h5            # (stimuli, units) per layer
    <activations>/model_actv/<model>/natsound_activations_randnetw.h5   # optional: permuted weights
    <activations>/model_actv/<model>/<stimulus_id>_activations[_randnetw].pkl   # or per stimulus
    <activations>/fastenc_models.json      # layers and storage of models not in the study's registry

(the format :mod:`fastenc.extract` writes and :func:`fastenc.registry.load_registry` reads). The
outputs are described in docs/outputs.md ("Your own datasets"); RSA is not run for datasets.

Examples
--------
>>> import json, tempfile, numpy as np, pandas as pd
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> np.save(d / "responses.npy", rng.standard_normal((40, 6, 2)))
>>> pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(40)]}).to_csv(d / "stimuli.csv", index=False)
>>> _ = (d / "data.json").write_text(json.dumps({"name": "toy", "responses": "responses.npy",
...     "stimulus_ids": "stimuli.csv:stimulus_id", "splits": {"scheme": "kfold", "k": 4}}))
>>> ds = load_dataset(d / "data.json")
>>> ds.n_stimuli, ds.n_targets, ds.n_repetitions, ds.splits.shape
(40, 6, 2, (4, 40))
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .splits import group_splits, kfold_splits, seed_splits, shuffle_splits

__all__ = ["Dataset", "load_dataset", "SPLIT_SCHEMES"]

SPLIT_SCHEMES = ("study", "kfold", "shuffle", "group", "file")
_KEYS = {"name", "responses", "stimulus_ids", "categories", "targets", "nan_policy", "splits", "activations",
         "models"}


@dataclass
class Dataset:
    """A user dataset, loaded and checked (see the module docstring for the manifest).

    Attributes
    ----------
    name : str
    responses : (stimuli, targets, repetitions) float64 array (repetitions may be 1)
    stimulus_ids : list of str, the row order of ``responses`` and of every activation matrix
    targets : DataFrame, one row per target (``target_id``, ``participant``, ``roi``, coordinates)
    categories : list of str or None
    splits : (n_splits, stimuli) bool train masks
    nan_policy : "raise" or "omit"
    manifest : Path of the manifest (None for a Dataset built in Python)
    activations : Path of the folder holding ``model_actv/`` (default: the manifest's folder)
    models : list of str (model names or registry model sets) or None (every model present)
    """

    name: str
    responses: np.ndarray
    stimulus_ids: list
    targets: pd.DataFrame
    categories: list | None
    splits: np.ndarray
    nan_policy: str
    manifest: Path | None
    activations: Path | None = None
    models: list | None = None
    _prepared: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_stimuli(self) -> int:
        return self.responses.shape[0]

    @property
    def n_targets(self) -> int:
        return self.responses.shape[1]

    @property
    def n_repetitions(self) -> int:
        return self.responses.shape[2]

    def check_stimuli(self, ids, where="activations") -> None:
        """Error unless ``ids`` are this dataset's stimulus ids in the same order."""
        ids = [str(i) for i in ids]
        if ids != self.stimulus_ids:
            if len(ids) != len(self.stimulus_ids):
                raise ValueError(f"{where} have {len(ids)} stimuli but dataset {self.name!r} "
                                 f"({self.manifest}) has {len(self.stimulus_ids)}")
            i = next(k for k, (a, b) in enumerate(zip(ids, self.stimulus_ids)) if a != b)
            raise ValueError(f"{where} are not in the stimulus order of dataset {self.name!r} ({self.manifest}): "
                             f"position {i} is {ids[i]!r}, the manifest says {self.stimulus_ids[i]!r}")

    def score_layer(self, X, **kwargs):
        """:func:`fastenc.score_layer` of one layer (rows in this dataset's stimulus order) on its
        responses and splits (keyword arguments are passed on)."""
        from .scoring import prepare_targets, score_layer
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != self.n_stimuli:
            raise ValueError(f"activations must be ({self.n_stimuli} stimuli, units) for dataset {self.name!r}; "
                             f"got shape {X.shape}")
        Y = self.responses if self.n_repetitions > 1 else self.responses[:, :, 0]
        nan_policy = kwargs.pop("nan_policy", self.nan_policy)
        if nan_policy != self.nan_policy:
            return score_layer(X, Y, splits=self.splits, nan_policy=nan_policy, **kwargs)
        # prepared once, reused by every layer (with its reliabilities); again if responses is replaced
        if self._prepared is None or self._prepared[0] is not self.responses:
            self._prepared = (self.responses, prepare_targets(Y, nan_policy=nan_policy))
        return score_layer(X, self._prepared[1], splits=self.splits, **kwargs)

    @property
    def kept(self) -> np.ndarray:
        """(targets,) bool: the targets scored (all, or with ``nan_policy = "omit"`` those
        without NaN/inf responses)."""
        return np.isfinite(self.responses).all(axis=(0, 2))

    def __getstate__(self):  # pickled (e.g. sent to Dask workers) without the prepared targets
        state = dict(self.__dict__)
        state["_prepared"] = None
        return state


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"dataset manifest not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ValueError(f"dataset manifest {path} cannot be parsed: {e}") from e


def _file(base: Path, spec: str, what: str, manifest: Path) -> tuple[Path, str | None]:
    """``"file"`` or ``"file:part"`` relative to the manifest; the file must exist."""
    spec = str(spec)
    name, part = spec, None
    if ":" in spec and not Path(spec).exists():
        name, part = spec.rsplit(":", 1)
    p = (base / name) if not Path(name).is_absolute() else Path(name)
    if not p.is_file():
        raise FileNotFoundError(f"dataset manifest {manifest}: {what} file {p} does not exist")
    return p, part


def _column(base, spec, what, manifest, default_column=None) -> list:
    p, col = _file(base, spec, what, manifest)
    if p.suffix.lower() in (".csv", ".tsv", ".parquet"):
        df = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(
            p, sep="\t" if p.suffix.lower() == ".tsv" else ",", dtype=str, keep_default_na=False)
        col = col or default_column
        if col is None or col not in df:
            raise ValueError(f"dataset manifest {manifest}: {what}: no column {col!r} in {p} "
                             f"(columns: {list(df.columns)})")
        return [str(v) for v in df[col]]
    return [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]


def _responses(base, spec, manifest) -> np.ndarray:
    p, part = _file(base, spec, "responses", manifest)
    try:
        if p.suffix.lower() in (".h5", ".hdf5"):
            with h5py.File(p, "r") as f:
                if part is None or part not in f:
                    raise ValueError(f"dataset manifest {manifest}: responses: name an HDF5 dataset of {p} "
                                     f"as 'file.h5:dataset' (datasets: {list(f.keys())})")
                Y = f[part][()]
        else:
            Y = np.load(p, allow_pickle=False)
    except ValueError as e:
        if "Object arrays" in str(e):
            raise ValueError(f"responses {p}: repetitions of different lengths (an object array); store a "
                             "(stimuli, targets, repetitions) numeric array, NaN-padded if needed") from e
        raise ValueError(f"dataset manifest {manifest}: responses file {p} is unreadable: {e}") from e
    except (OSError, EOFError) as e:
        raise ValueError(f"dataset manifest {manifest}: responses file {p} is unreadable or truncated: {e}") from e
    if Y.dtype == object:
        raise ValueError(f"responses {p}: repetitions of different lengths (an object array); store a "
                         "(stimuli, targets, repetitions) numeric array, NaN-padded if needed")
    if Y.dtype.kind not in "fiu":
        raise ValueError(f"responses {p} must be numeric, got dtype {Y.dtype}")
    if Y.ndim == 2:
        Y = Y[:, :, None]
    if Y.ndim != 3 or min(Y.shape) < 1:
        raise ValueError(f"responses {p} must be (stimuli, targets[, repetitions]), got shape {Y.shape}")
    return np.asarray(Y, dtype=np.float64)


def _splits(conf: dict, n: int, base: Path, manifest: Path, stim_table: pd.DataFrame | None) -> np.ndarray:
    scheme = conf.get("scheme")
    if scheme not in SPLIT_SCHEMES:
        raise ValueError(f"dataset manifest {manifest}: [splits] scheme must be one of {list(SPLIT_SCHEMES)}, "
                         f"got {scheme!r}")
    if scheme == "study":
        return seed_splits(n_stimuli=n)
    if scheme == "kfold":
        k = int(conf.get("k", 5))
        if k > n:
            raise ValueError(f"dataset manifest {manifest}: k = {k} folds for {n} stimuli (k must be <= n)")
        return kfold_splits(n, k, seed=conf.get("seed", 0))
    if scheme == "shuffle":
        if "n_train" not in conf:
            raise ValueError(f"dataset manifest {manifest}: the shuffle scheme needs n_train")
        return shuffle_splits(n, int(conf["n_train"]), int(conf.get("n_splits", 10)), seed=int(conf.get("seed", 0)))
    if scheme == "group":
        col = conf.get("column")
        if stim_table is None or col not in stim_table:
            raise ValueError(f"dataset manifest {manifest}: the group scheme needs column = <a column of the "
                             "stimulus CSV> naming each stimulus's group")
        try:
            return group_splits(stim_table[col].to_numpy())
        except ValueError as e:
            raise ValueError(f"dataset manifest {manifest}: group column {col!r}: {e}") from e
    p, _ = _file(base, conf.get("path", ""), "splits", manifest)
    S = np.load(p, allow_pickle=False)
    if S.dtype != bool or S.ndim != 2 or S.shape[1] != n:
        raise ValueError(f"splits file {p} must be a boolean (n_splits, {n}) train-mask array, got {S.dtype} {S.shape}")
    return S


def load_dataset(manifest) -> Dataset:
    """Read a dataset manifest (``.toml`` or ``.json``) and everything it names; check it.

    Errors name the manifest and the file at fault: a missing file, stimulus ids that are not
    unique or do not match the responses' rows, a target table of another length, a group
    column with one group, k > stimuli, NaN responses (with ``nan_policy = "raise"``).
    """
    manifest = Path(manifest)
    conf = _read_manifest(manifest)
    unknown = set(conf) - _KEYS
    if unknown:
        raise ValueError(f"dataset manifest {manifest}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    for key in ("name", "responses", "stimulus_ids"):
        if key not in conf:
            raise ValueError(f"dataset manifest {manifest}: missing key {key!r}")
    base = manifest.parent
    Y = _responses(base, conf["responses"], manifest)
    ids = _column(base, conf["stimulus_ids"], "stimulus_ids", manifest, default_column="stimulus_id")
    if len(ids) != Y.shape[0]:
        raise ValueError(f"dataset manifest {manifest}: {len(ids)} stimulus ids but the responses have "
                         f"{Y.shape[0]} rows (stimuli)")
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise ValueError(f"dataset manifest {manifest}: stimulus id {dup!r} appears more than once")
    categories = None
    if conf.get("categories"):
        categories = _column(base, conf["categories"], "categories", manifest)
        if len(categories) != len(ids):
            raise ValueError(f"dataset manifest {manifest}: {len(categories)} categories for {len(ids)} stimuli")
    stim_table = None
    stim_spec = str(conf["stimulus_ids"]).rsplit(":", 1)[0]
    if stim_spec.lower().endswith((".csv", ".tsv")):
        stim_table = pd.read_csv(base / stim_spec, sep="\t" if stim_spec.lower().endswith(".tsv") else ",")
    if conf.get("targets"):
        p, _ = _file(base, conf["targets"], "targets", manifest)
        targets = pd.read_parquet(p) if p.suffix.lower() == ".parquet" else pd.read_csv(p)
        if len(targets) != Y.shape[1]:
            raise ValueError(f"targets table {p} has {len(targets)} rows but the responses have {Y.shape[1]} "
                             "targets (columns)")
    else:
        targets = pd.DataFrame(index=range(Y.shape[1]))
    targets = targets.reset_index(drop=True)
    if "target_id" not in targets:
        targets.insert(0, "target_id", np.arange(Y.shape[1]))
    nan_policy = conf.get("nan_policy", "raise")
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"dataset manifest {manifest}: nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    bad = ~np.isfinite(Y).all(axis=(0, 2))
    if bad.any() and nan_policy == "raise":
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"responses of dataset {conf['name']!r} contain NaN or inf in {int(bad.sum())} target(s) "
                         f"(first: column {j}, target_id {targets['target_id'].iloc[j]!r}); set "
                         "nan_policy = \"omit\" in the manifest to score only complete targets")
    S = _splits(dict(conf.get("splits") or {"scheme": "kfold"}), len(ids), base, manifest, stim_table)
    activations = base
    if conf.get("activations") is not None:
        a = Path(str(conf["activations"]))
        activations = a if a.is_absolute() else base / a
        if not activations.is_dir():
            raise FileNotFoundError(f"dataset manifest {manifest}: activations folder {activations} does not exist "
                                    "(it must hold model_actv/<model>/)")
    models = conf.get("models")
    if models is not None:
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
            raise ValueError(f"dataset manifest {manifest}: models must be a non-empty list of model names, "
                             f"got {conf['models']!r}")
    return Dataset(name=str(conf["name"]), responses=Y, stimulus_ids=ids, targets=targets,
                   categories=categories, splits=S, nan_policy=nan_policy, manifest=manifest,
                   activations=activations, models=models)
