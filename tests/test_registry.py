"""Tests of fastenc.registry: shipped registry, model sets, user manifests."""
import json
from pathlib import Path

import pytest

from fastenc import constants
from fastenc.registry import (MANIFEST_FILENAME, SHIPPED_LAYER_KEYS, ModelSpec, load_registry,
                              read_manifest, resolve_models)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def test_shipped_registry_counts(registry):
    assert len(registry) == 36
    assert registry.n_layers == 318
    assert sum(len(registry.layers(m)) for m in registry.model_names()) == 318


def test_model_queries(registry):
    assert registry.layers("ResNet50multitask") == ["conv1_relu1", "maxpool1", "layer1", "layer2",
                                                    "layer3", "layer4", "avgpool"]
    assert registry.storage("Kell2018word") == "h5"
    assert registry.storage("AST") == "per_sound_pickle"
    assert registry.display_name("ResNet50multitask") == "CochResNet50-MultiTask"
    keys = registry.layer_keys("DS2")
    assert list(keys) == registry.layers("DS2")
    assert keys["Tanh_1"] == "Hardtanh(min_val=0, max_val=20)--0"
    assert isinstance(registry["AST"], ModelSpec)
    assert registry.layers("spectemp") == ["avgpool"]
    assert not registry.has_randnetw("spectemp") and registry.has_randnetw("AST")
    assert registry.sound_category_order == ("Music", "Song", "EngSpeech", "ForSpeech", "HumVoc", "AniVoc",
                                             "HumNonVoc", "AniNonVoc", "Nature", "Mechanical", "EnvSound")


def test_registry_agrees_with_constants(registry):
    """One home per constant: the shipped registry's category order and spectrotemporal model are
    the ones fastenc.constants gives the RSA and the analyses (rsa.py does not read the JSON)."""
    assert registry.sound_category_order == constants.CATEGORY_ORDER
    assert constants.SPECTEMP in registry.model_names() and not registry.has_randnetw(constants.SPECTEMP)
    raw = json.loads((Path(constants.__file__).parent / "data" / "model_registry.json").read_text())
    assert tuple(raw["sound_category_order"]) == constants.CATEGORY_ORDER


def test_unknown_model_suggests_close_match(registry):
    with pytest.raises(ValueError, match="Kell2018word"):
        registry.layers("Kell2018wrd")


def test_resolve_model_sets(registry):
    fig25 = resolve_models("FIG_2_5_MODEL_LIST", registry)
    assert len(fig25) == 20 and fig25[-1] == "spectemp"
    assert resolve_models(["AST", "FIG_7_MODEL_LIST"], registry)[0] == "AST"
    assert len(resolve_models(["AST", "FIG_7_MODEL_LIST"], registry)) == 15  # AST not repeated
    pairs = resolve_models("FIG2_SEED_PAIRS", registry)
    assert pairs[:2] == ["Kell2018word", "Kell2018wordSeed2"] and len(pairs) == 16
    assert registry.model_set("FIG2_SEED_PAIRS")[0] == ["Kell2018word", "Kell2018wordSeed2"]


def test_resolve_unknown_name_lists_close_matches(registry):
    with pytest.raises(ValueError) as info:
        resolve_models(["AST", "FIG_2_5_MODEL_LST"], registry)
    assert "FIG_2_5_MODEL_LST" in str(info.value) and "FIG_2_5_MODEL_LIST" in str(info.value)


def _manifest(**overrides):
    entry = {"display_name": "My net", "layers": ["a", "b", "c"], "storage": "per_sound_pickle",
             "layer_keys": {"a": "Conv--0"}}
    entry.update(overrides)
    return {"models": {"MyNet": entry}, "model_sets": {"MINE": ["MyNet", "spectemp"]}}


def test_manifest_merge_from_dict_and_file(tmp_path, registry):
    merged = load_registry(manifest=_manifest())
    assert len(merged) == 37 and merged.n_layers == 321
    assert merged.layer_keys("MyNet") == {"a": "Conv--0", "b": "b", "c": "c"}
    assert resolve_models("MINE", merged) == ["MyNet", "spectemp"]
    assert len(registry) == 36  # the original is untouched

    path = tmp_path / "models.json"
    path.write_text(json.dumps(_manifest()))
    assert read_manifest(path)["MyNet"].display_name == "My net"
    assert load_registry(manifest=path).spec("MyNet").source == str(path)


def test_manifest_in_data_dir_is_picked_up_and_explicit_wins(tmp_path):
    (tmp_path / MANIFEST_FILENAME).write_text(json.dumps(_manifest()))
    assert "MyNet" in load_registry(tmp_path)
    override = {"models": {"MyNet": {"layers": ["only"], "storage": "h5"}}}
    merged = load_registry(tmp_path, manifest=override)
    assert merged.layers("MyNet") == ["only"]
    # a manifest entry with a shipped name replaces the shipped model
    replaced = load_registry(manifest={"models": {"AST": {"layers": ["x"], "storage": "h5"}}})
    assert replaced.layers("AST") == ["x"] and len(replaced) == 36


@pytest.mark.parametrize("overrides, field", [
    ({"storage": "zarr"}, "storage"),
    ({"layers": []}, "layers"),
    ({"layers": ["a", "a"]}, "layers"),
    ({"layer_keys": {"a": ""}}, "layer_keys"),        # empty storage key
    ({"layer_keys": {"zz": "k"}}, "layer_keys"),      # key for an unknown layer
    ({"display_name": 3}, "display_name"),
    ({"has_randnetw": "yes"}, "has_randnetw"),
    ({"colour": "red"}, "colour"),
])
def test_manifest_validation_names_file_and_field(tmp_path, overrides, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_manifest(**overrides)))
    with pytest.raises(ValueError) as info:
        load_registry(manifest=path)
    assert str(path) in str(info.value) and field in str(info.value) and "MyNet" in str(info.value)


def test_manifest_structural_errors(tmp_path):
    path = tmp_path / MANIFEST_FILENAME
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_registry(tmp_path)
    path.write_text(json.dumps({"modls": {}}))
    with pytest.raises(ValueError, match="modls"):
        load_registry(tmp_path)
    path.write_text(json.dumps({"models": {}, "model_sets": {"S": ["NoSuchNet"]}}))
    with pytest.raises(ValueError, match="NoSuchNet"):
        load_registry(tmp_path)
    with pytest.raises(ValueError, match="missing required field 'storage'"):
        load_registry(manifest={"models": {"N": {"layers": ["a"]}}})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_registry(manifest=tmp_path / "nope.json")


def test_resnet50music_conv1_relu1_is_stored_as_relu1(registry):
    """The study's loader (aud_dnn utils.get_source_features) reads ResNet50music's conv1_relu1 from
    the h5 dataset 'relu1'; the registry records that alias as data (the layer's storage key)."""
    assert SHIPPED_LAYER_KEYS == {"ResNet50music": {"conv1_relu1": "relu1"}}
    spec = registry["ResNet50music"]
    assert spec.storage == "h5" and spec.layers[0] == "conv1_relu1"
    assert spec.key_of("conv1_relu1") == "relu1" and spec.key_of("layer1") == "layer1"
    assert registry.layer_keys("ResNet50music")["conv1_relu1"] == "relu1"
    for other in ("ResNet50word", "ResNet50multitask", "ResNet50musicSeed2"):
        if other in registry:
            assert registry[other].key_of("conv1_relu1") == "conv1_relu1"
    # a manifest entry replacing the shipped model drops the alias (its own layer_keys apply)
    replaced = load_registry(manifest={"models": {"ResNet50music": {"layers": ["conv1_relu1"], "storage": "h5"}}})
    assert replaced["ResNet50music"].key_of("conv1_relu1") == "conv1_relu1"


def test_manifest_layer_keys_for_h5_name_datasets():
    merged = load_registry(manifest={"models": {"MyH5": {"layers": ["conv1", "fc"], "storage": "h5",
                                                          "layer_keys": {"conv1": "features/relu1"}}}})
    assert merged.layer_keys("MyH5") == {"conv1": "features/relu1", "fc": "fc"}


def test_model_set_members(registry):
    pairs = registry.model_set_members("FIG2_SEED_PAIRS")
    assert pairs[:2] == ["Kell2018word", "Kell2018wordSeed2"] and len(pairs) == len(set(pairs)) == 16
    with pytest.raises(ValueError, match="FIG_2_5_MODEL_LIST"):
        registry.model_set_members("FIG_2_5_MODEL_LST")
