"""Tests of fastenc.io on the demo dataset and on corrupted copies of it."""
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

import fastenc.io as fio
from fastenc.datasets import make_demo
from fastenc.registry import load_registry


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("io") / "demo", seed=0)


@pytest.fixture(scope="module")
def registry(demo):
    return load_registry(demo)


def clone(demo: Path, dst: Path, models=()) -> Path:
    """Copy the neural data, the manifest and some models of the demo (for corrupting)."""
    shutil.copytree(demo / "data", dst / "data")
    shutil.copy(demo / "fastenc_models.json", dst / "fastenc_models.json")
    for model in models:
        shutil.copytree(demo / "model_actv" / model, dst / "model_actv" / model)
    return dst


NH = Path("data/neural/NH2015")
B21 = Path("data/neural/B2021")


# ---------------------------------------------------------------------------------------------
# stimuli and neural data
# ---------------------------------------------------------------------------------------------
def test_load_stimuli(demo):
    stimuli = fio.load_stimuli(demo)
    raw = np.load(demo / NH / "neural_stim_meta.npy")
    assert len(stimuli) == 165
    assert stimuli["wav_name"].tolist() == [n.decode() for n in raw[raw.dtype.names[0]]]
    assert not stimuli["stim_id"].str.endswith(".wav").any()
    assert (stimuli["category"].value_counts() == 15).all() and stimuli["category"].nunique() == 11


def test_load_stimuli_accepts_bytes_category_and_refuses_wrong_length(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    raw = np.load(root / NH / "neural_stim_meta.npy")
    dtype = [(n, raw.dtype[n] if i != 4 else "S16") for i, n in enumerate(raw.dtype.names)]
    as_bytes = np.zeros(len(raw), dtype=dtype)
    for n in raw.dtype.names:
        as_bytes[n] = raw[n] if n != raw.dtype.names[4] else [c.encode() for c in raw[n]]
    np.save(root / NH / "neural_stim_meta.npy", as_bytes)
    assert fio.load_stimuli(root)["category"].tolist() == fio.load_stimuli(demo)["category"].tolist()
    np.save(root / NH / "neural_stim_meta.npy", raw[:160])
    with pytest.raises(ValueError, match="neural_stim_meta.npy.*160"):
        fio.load_stimuli(root)


def test_nh2015_keeps_three_repetition_voxels(demo):
    nh = fio.load_neural(demo, "NH2015")
    raw = np.load(demo / NH / "voxel_features_array.npy")
    meta = np.load(demo / NH / "voxel_features_meta.npy")
    keep = meta["n_reps"] == 3
    assert (~keep).sum() > 0
    assert nh.Y.dtype == np.float64 and nh.Y.shape == (165, keep.sum(), 3)
    np.testing.assert_array_equal(nh.Y, raw[:, keep])
    assert np.isfinite(nh.Y).all()
    np.testing.assert_array_equal(nh.roi_meta["voxel_id"], meta["voxel_id"][keep])
    np.testing.assert_array_equal(nh.voxel_meta["voxel_id"], meta["voxel_id"][keep])
    assert set(nh.voxel_meta["hemi"]) == {"lh", "rh"}
    assert nh.has_repetitions and len(nh.subjects) == 8
    assert nh.stim_ids == fio.load_stimuli(demo)["stim_id"].tolist()
    assert nh.target_names == [str(v) for v in meta["voxel_id"][keep]]


def test_b2021_first_165_sounds(demo):
    b = fio.load_neural(demo, "B2021")
    raw = np.load(demo / B21 / "voxel_features_array.npy")
    assert raw.shape[0] == 192
    np.testing.assert_array_equal(b.Y, raw[:165])
    assert list(b.voxel_meta.columns) == ["voxel_id"] and len(b.subjects) == 20


def test_b2021_stimulus_order_mismatch_refused(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    path = root / B21 / "stim_info_v4.mat"
    names = [str(n[0]) for n in scipy.io.loadmat(path)["stim_info"]["stim_names"][0, 0].ravel()]
    # MATLAB quirks accepted: column cell, names with .wav
    column = np.array([n + ".wav" for n in names], dtype=object).reshape(-1, 1)
    scipy.io.savemat(path, {"stim_info": {"stim_names": column}})
    assert fio.load_neural(root, "B2021").Y.shape[0] == 165
    names[3], names[4] = names[4], names[3]
    scipy.io.savemat(path, {"stim_info": {"stim_names": np.array(names, dtype=object)}})
    with pytest.raises(ValueError, match=r"stim_info_v4.mat.*out of order.*position 3"):
        fio.load_neural(root, "B2021")


def test_components_reindexed_into_nh2015_order(demo):
    comps = fio.load_neural(demo, "NH2015comp")
    mat = scipy.io.loadmat(demo / "data/neural/NH2015comp/components.mat")
    file_names = [str(x[0]).removesuffix(".wav") for x in mat["stim_names"].ravel()]
    stim_ids = fio.load_stimuli(demo)["stim_id"].tolist()
    assert file_names != stim_ids  # the demo stores them shuffled
    expected = mat["R"][[file_names.index(s) for s in stim_ids]]
    np.testing.assert_array_equal(comps.Y, expected)
    assert comps.target_names == ["lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"]
    assert not comps.has_repetitions and comps.roi_meta is None


def test_components_with_foreign_sound_refused(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    path = root / "data/neural/NH2015comp/components.mat"
    mat = scipy.io.loadmat(path)
    names = [str(x[0]) for x in mat["stim_names"].ravel()]
    names[0] = "stim999_unknown.wav"
    scipy.io.savemat(path, {"R": mat["R"], "stim_names": np.array(names, dtype=object),
                            "component_names": mat["component_names"]})
    with pytest.raises(ValueError, match="components.mat.*stim_names"):
        fio.load_neural(root, "NH2015comp")


def test_roi_selection_and_empty_roi(demo, tmp_path):
    nh = fio.load_neural(demo, "NH2015")
    primary = fio.load_neural(demo, "NH2015", roi="Primary")
    assert 0 < primary.n_targets < nh.n_targets
    assert (primary.roi_meta["roi_label_general"] == "Primary").all()
    mask = (nh.roi_meta["roi_label_general"] == "Primary").to_numpy()
    np.testing.assert_array_equal(primary.Y, nh.Y[:, mask])
    assert nh.roi_meta["roi_label_general"].isna().any()  # unlabelled voxels are NaN
    assert fio.load_neural(demo, "NH2015", roi="All").n_targets == nh.n_targets
    with pytest.raises(ValueError, match="'Auditory' is empty.*Anterior"):
        fio.load_neural(demo, "NH2015", roi="Auditory")
    with pytest.raises(ValueError, match="no anatomical ROIs"):
        fio.load_neural(demo, "NH2015comp", roi="Primary")
    # the string "missing" is read as NaN too
    root = clone(demo, tmp_path / "r")
    frame = pd.read_pickle(root / NH / "df_roi_meta.pkl")
    frame["roi_label_general"] = frame["roi_label_general"].fillna("missing")
    frame.to_pickle(root / NH / "df_roi_meta.pkl")
    reread = fio.load_neural(root, "NH2015").roi_meta["roi_label_general"]
    assert (frame["roi_label_general"] == "missing").any()
    assert reread.isna().sum() == nh.roi_meta["roi_label_general"].isna().sum()


def test_voxel_id_mismatch_refused(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    frame = pd.read_pickle(root / NH / "df_roi_meta.pkl")
    frame.loc[5, "voxel_id"] = -1
    frame.to_pickle(root / NH / "df_roi_meta.pkl")
    with pytest.raises(ValueError, match=r"voxel_id.*df_roi_meta.pkl"):
        fio.load_neural(root, "NH2015")


def test_wrong_rows_and_missing_files(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    raw = np.load(root / NH / "voxel_features_array.npy")
    np.save(root / NH / "voxel_features_array.npy", raw[:164])
    with pytest.raises(ValueError, match="voxel_features_array.npy.*164 rows"):
        fio.load_neural(root, "NH2015")
    (root / B21 / "df_roi_meta.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="B2021.*df_roi_meta.pkl"):
        fio.load_neural(root, "B2021")
    with pytest.raises(ValueError, match="unknown neural target"):
        fio.load_neural(root, "NH2016")


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------
def test_h5_model_round_trip(demo, registry):
    acts = fio.open_model(demo, "DemoCNN", registry=registry)
    assert acts.layers == registry.layers("DemoCNN")
    seen = []
    with h5py.File(demo / "model_actv/DemoCNN/natsound_activations.h5", "r") as fh:
        assert [n.decode() for n in fh["layer_list"][()]] == acts.layers
        for layer, X in acts.iter_layers():
            seen.append(layer)
            assert X.dtype == np.float64 and X.shape[0] == 165
            np.testing.assert_array_equal(X, fh[layer][()].astype(np.float64))
    assert seen == acts.layers
    rand = fio.open_model(demo, "DemoCNN", randnetw=True)
    assert not np.array_equal(rand.load_layer("conv1"), acts.load_layer("conv1"))


def test_pickle_model_round_trip(demo, registry):
    stim_ids = fio.load_stimuli(demo)["stim_id"]
    keys = registry.layer_keys("DemoTransformer")
    acts = fio.open_model(demo, "DemoTransformer", randnetw=True)
    for layer, X in acts.iter_layers():
        expected = []
        for stim in stim_ids:
            with open(demo / f"model_actv/DemoTransformer/{stim}_activations_randnetw.pkl", "rb") as fh:
                expected.append(pickle.load(fh)[keys[layer]])
        np.testing.assert_array_equal(X, np.array(expected, dtype=np.float64))


def test_pickles_read_once_per_model(demo, monkeypatch):
    calls = []
    real_load = pickle.load

    def counting_load(fh, *args, **kwargs):
        calls.append(fh.name)
        return real_load(fh, *args, **kwargs)

    monkeypatch.setattr(fio.pickle, "load", counting_load)
    acts = fio.open_model(demo, "DemoTransformer")
    layers = list(acts.iter_layers())
    for layer in acts.layers:
        acts.load_layer(layer)
    assert len(layers) == 5
    assert len(calls) == 165 and len(set(calls)) == 165
    acts.release()
    acts.load_layer("Final")
    assert len(calls) == 330


def test_returned_arrays_are_independent(demo):
    acts = fio.open_model(demo, "DemoTransformer")
    X = acts.load_layer("Final")
    X[:] = 0
    assert acts.load_layer("Final").any()


def test_spectemp_has_no_randnetw(demo):
    with pytest.raises(ValueError, match="spectemp.*permuted"):
        fio.open_model(demo, "spectemp", randnetw=True)


def test_unknown_model_and_layer(demo, registry):
    with pytest.raises(ValueError, match="DemoCNN"):
        fio.open_model(demo, "DemoCN", registry=registry)
    with pytest.raises(ValueError, match="DemoCNN.*conv9"):
        fio.open_model(demo, "DemoCNN", registry=registry).load_layer("conv9")
    with pytest.raises(FileNotFoundError, match="AST"):
        fio.open_model(demo, "AST", registry=registry)


def _rewrite_pickle(path, edit):
    with open(path, "rb") as fh:
        content = pickle.load(fh)
    edit(content)
    with open(path, "wb") as fh:
        pickle.dump(content, fh)


def test_pickle_errors_name_file_model_layer(demo, tmp_path, registry):
    root = clone(demo, tmp_path / "r", models=["DemoTransformer"])
    stim_ids = fio.load_stimuli(root)["stim_id"].tolist()
    folder = root / "model_actv/DemoTransformer"
    key = registry.layer_keys("DemoTransformer")["Encoder_2"]

    victim = folder / f"{stim_ids[7]}_activations.pkl"
    backup = victim.read_bytes()
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=f"DemoTransformer.*{stim_ids[7]}_activations.pkl"):
        fio.open_model(root, "DemoTransformer")

    def check(edit, pattern):
        victim.write_bytes(backup)
        _rewrite_pickle(victim, edit)
        with pytest.raises(ValueError, match=pattern) as info:
            fio.open_model(root, "DemoTransformer").load_layer("Embedding")
        assert str(victim) in str(info.value) and "DemoTransformer" in str(info.value)

    check(lambda c: c.pop(key), "Encoder_2")                                     # layer missing
    check(lambda c: c.__setitem__(key, c[key][:-3]), "Encoder_2.*93 units")      # width differs
    check(lambda c: c.__setitem__(key, np.full_like(c[key], np.nan)), "Encoder_2.*NaN")
    check(lambda c: c.__setitem__(key, np.full_like(c[key], np.inf)), "Encoder_2.*inf")
    victim.write_bytes(backup[: len(backup) // 2])                               # truncated pickle
    with pytest.raises(ValueError, match="cannot read activation pickle") as info:
        fio.open_model(root, "DemoTransformer").load_layer("Final")
    assert str(victim) in str(info.value)


def test_h5_errors_name_file_model_layer(demo, tmp_path):
    root = clone(demo, tmp_path / "r", models=["DemoCNN"])
    path = root / "model_actv/DemoCNN/natsound_activations.h5"
    backup = path.read_bytes()

    with h5py.File(path, "a") as fh:
        del fh["conv3"]
        fh.create_dataset("conv3", data=np.zeros((164, 8)))
        fh["conv4"][0, 0] = np.nan
        del fh["fc"]
    acts = fio.open_model(root, "DemoCNN")
    with pytest.raises(ValueError, match="conv3.*164 rows") as info:
        acts.load_layer("conv3")
    assert str(path) in str(info.value) and "DemoCNN" in str(info.value)
    with pytest.raises(ValueError, match="conv4.*NaN"):
        acts.load_layer("conv4")
    with pytest.raises(ValueError, match="layer 'fc' of model 'DemoCNN' not found in .*natsound_activations.h5"):
        acts.load_layer("fc")
    with pytest.raises(ValueError, match="conv3"):
        list(acts.iter_layers())

    path.write_bytes(backup[: len(backup) // 2])
    with pytest.raises(ValueError, match="natsound_activations.h5.*DemoCNN.*truncated or corrupt"):
        fio.open_model(root, "DemoCNN")
    (root / "model_actv/DemoCNN/natsound_activations_randnetw.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"DemoCNN.*randnetw.*natsound_activations_randnetw.h5"):
        fio.open_model(root, "DemoCNN", randnetw=True)


def test_available_models(demo, tmp_path):
    assert fio.available_models(demo) == {
        "spectemp": {"trained": True, "randnetw": False},
        "DemoCNN": {"trained": True, "randnetw": True},
        "DemoTransformer": {"trained": True, "randnetw": True},
    }
    root = clone(demo, tmp_path / "r", models=["DemoCNN", "DemoTransformer"])
    (root / "model_actv/DemoCNN/natsound_activations_randnetw.h5").unlink()
    stim = fio.load_stimuli(root)["stim_id"][0]
    (root / f"model_actv/DemoTransformer/{stim}_activations.pkl").unlink()
    assert fio.available_models(root) == {
        "DemoCNN": {"trained": True, "randnetw": False},
        "DemoTransformer": {"trained": False, "randnetw": True},
    }
