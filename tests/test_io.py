"""Tests of fastenc.io on the demo dataset and on corrupted copies of it."""
import pickle
import re
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


def test_b2021_meta_plain_integer_array(demo, tmp_path):
    """The study's B2021 voxel_features_meta.npy is a plain np.arange(n_voxels), not a structured array."""
    meta = np.load(demo / B21 / "voxel_features_meta.npy")
    assert meta.dtype.names is None and meta.dtype.kind == "i"
    b = fio.load_neural(demo, "B2021")
    np.testing.assert_array_equal(b.voxel_ids, np.arange(b.n_targets))
    np.testing.assert_array_equal(b.voxel_meta["voxel_id"], np.arange(b.n_targets))
    assert b.target_names[:3] == ["0", "1", "2"]
    np.testing.assert_array_equal(b.source_columns, np.arange(b.n_targets))

    # a structured array with a voxel_id field is read the same way
    root = clone(demo, tmp_path / "r")
    structured = np.zeros(len(meta), dtype=[("voxel_id", "<i8")])
    structured["voxel_id"] = meta
    np.save(root / B21 / "voxel_features_meta.npy", structured)
    again = fio.load_neural(root, "B2021")
    np.testing.assert_array_equal(again.voxel_ids, b.voxel_ids)
    np.testing.assert_array_equal(again.Y, b.Y)
    # int32 and a (n, 1) column are plain integer arrays too
    np.save(root / B21 / "voxel_features_meta.npy", meta.astype(np.int32).reshape(-1, 1))
    np.testing.assert_array_equal(fio.load_neural(root, "B2021").voxel_ids, b.voxel_ids)
    # not voxel ids: refused, naming the file
    np.save(root / B21 / "voxel_features_meta.npy", meta.astype(float))
    with pytest.raises(ValueError, match=r"B2021 voxel metadata .*voxel_features_meta.npy.*integer array"):
        fio.load_neural(root, "B2021")
    np.save(root / B21 / "voxel_features_meta.npy", meta[:-1])
    with pytest.raises(ValueError, match=r"voxel_features_meta.npy has \d+ records but"):
        fio.load_neural(root, "B2021")
    # NH2015 needs n_reps: a plain array there is refused
    nh_meta = np.load(root / NH / "voxel_features_meta.npy")
    np.save(root / NH / "voxel_features_meta.npy", nh_meta["voxel_id"])
    with pytest.raises(ValueError, match=r"NH2015 voxel metadata .*structured array.*n_reps"):
        fio.load_neural(root, "NH2015")


def test_b2021_stimulus_order_mismatch_refused(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    path = root / B21 / "stim_info_v4.mat"
    names = [str(n[0]) for n in scipy.io.loadmat(path)["stim_info"]["stim_names"][0, 0].ravel()]
    # MATLAB quirks accepted: row cell, names with .wav
    row = np.array([n + ".wav" for n in names], dtype=object).reshape(1, -1)
    scipy.io.savemat(path, {"stim_info": {"stim_names": row}})
    assert fio.load_neural(root, "B2021").Y.shape[0] == 165
    names[3], names[4] = names[4], names[3]
    scipy.io.savemat(path, {"stim_info": {"stim_names": np.array(names, dtype=object).reshape(-1, 1)}})
    with pytest.raises(ValueError, match=r"NH2015 and B2021 stimulus lists disagree.*2 position\(s\).*position 3"
                       ) as info:
        fio.load_neural(root, "B2021")
    message = str(info.value)
    assert str(path) in message and str(root / NH / "neural_stim_meta.npy") in message
    assert repr(names[3]) in message and repr(names[4]) in message


def test_swapped_nh2015_names_name_both_files(demo, tmp_path):
    """Swapping two NH2015 sounds is detected through B2021, and the message names both files."""
    root = clone(demo, tmp_path / "r")
    path = root / NH / "neural_stim_meta.npy"
    raw = np.load(path)
    raw[[10, 11]] = raw[[11, 10]]
    np.save(path, raw)
    with pytest.raises(ValueError, match="NH2015 and B2021 stimulus lists disagree.*position 10") as info:
        fio.load_neural(root, "B2021")
    assert str(path) in str(info.value) and str(root / B21 / "stim_info_v4.mat") in str(info.value)


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
    with pytest.raises(ValueError, match=r"activation pickle .* of model 'DemoTransformer' \(sound 7\) "
                                         r"is truncated") as info:
        fio.open_model(root, "DemoTransformer").load_layer("Final")
    assert str(victim) in str(info.value)
    victim.write_bytes(b"")                                                      # empty pickle
    with pytest.raises(ValueError, match=r"activation pickle .* is empty \(0 bytes\)") as info:
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
    with pytest.raises(ValueError, match="natsound_activations.h5 of model 'DemoCNN' is truncated"):
        fio.open_model(root, "DemoCNN")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"natsound_activations.h5 of model 'DemoCNN' is empty \(0 bytes\)"):
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


# ---------------------------------------------------------------------------------------------
# the study's file formats, written independently of make_demo (following aud_dnn's code)
# ---------------------------------------------------------------------------------------------
CATEGORIES = ("Music", "Song", "EngSpeech", "ForSpeech", "HumVoc", "AniVoc", "HumNonVoc", "AniNonVoc",
              "Nature", "Mechanical", "EnvSound")


def _study_root(root: Path, rng) -> dict:
    """A data root written the way the study's files are (see each comment); returns what was written.

    Readers in the study: AUD_main.py / utils.get_target (stimuli, NH2015 meta, components, B2021
    stim_info), plot_utils_AUD_RSA (categories as text, field 4), NH_metadata_voxel_reliability.py and
    the B2021 packaging script (df_roi_meta columns, integer coordinates), utils.get_source_features
    (h5 layer_list as bytes, ResNet50music's relu1), PytorchWrapper.compile_activations (pickles).
    """
    nh, b21, comp = root / NH, root / B21, root / "data/neural/NH2015comp"
    for folder in (nh, b21, comp):
        folder.mkdir(parents=True)
    stim_ids = [f"stim{i + 1}_sound_{i}" for i in range(165)]
    categories = [CATEGORIES[i % 11] for i in range(165)]
    # neural_stim_meta.npy: 165 records, field 0 the wav name as bytes, field 4 the category as text
    stim = np.zeros(165, dtype=[("filename", "S40"), ("fmri_stim_idx", "<i8"), ("embedded-wav-start-idx", "<i8"),
                                ("embedded-wav-end-idx", "<i8"), ("category_label", "<U10"), ("id", "<i8")])
    stim["filename"] = [f"{s}.wav".encode() for s in stim_ids]
    stim["category_label"] = categories
    stim["id"] = np.arange(165)
    np.save(nh / "neural_stim_meta.npy", stim)

    # NH2015: (165, voxels, 3); meta records voxel_id, n_reps, subj_idx, hemi (bytes), x_ras, y_ras (ints)
    n_vox = 14
    n_reps = np.array([3, 2, 3, 3, 3, 3, 2, 3, 3, 3, 3, 3, 2, 3])
    Y = rng.standard_normal((165, n_vox, 3))
    Y[:, n_reps == 2, 2] = np.nan
    np.save(nh / "voxel_features_array.npy", Y)
    meta = np.zeros(n_vox, dtype=[("voxel_id", "<i8"), ("n_reps", "<i8"), ("subj_idx", "<i8"), ("hemi", "S2"),
                                  ("x_ras", "<i8"), ("y_ras", "<i8")])
    meta["voxel_id"] = 7000 + 3 * np.arange(n_vox)
    meta["n_reps"] = n_reps
    meta["subj_idx"] = np.repeat([1, 2], n_vox // 2)
    meta["hemi"] = [b"lh", b"rh"] * (n_vox // 2)
    meta["x_ras"] = rng.integers(-60, 60, n_vox)
    meta["y_ras"] = rng.integers(-40, 20, n_vox)
    np.save(nh / "voxel_features_meta.npy", meta)
    kept = meta[n_reps == 3]
    labels = ["Primary", np.nan, "Lateral", "Anterior", "Posterior", np.nan, "Primary", "Lateral", np.nan,
              "Anterior", "Posterior"]
    roi = pd.DataFrame({"subj_idx": kept["subj_idx"], "hemi": [h.decode("utf-8") for h in kept["hemi"]],
                        "x_ras": kept["x_ras"], "y_ras": kept["y_ras"], "voxel_id": kept["voxel_id"],
                        "kell_r_reliability": rng.random(len(kept)), "pearson_r_reliability": rng.random(len(kept)),
                        "coord_id": [f"{x}_{y}" for x, y in zip(kept["x_ras"], kept["y_ras"])],
                        "shared_by": 1.0, "roi_label_general": labels})
    roi["roi_anat_hemi"] = [np.nan if not isinstance(r, str) else f"{r}_{h}" for r, h in zip(roi["roi_label_general"],
                                                                                               roi["hemi"])]
    roi.to_pickle(nh / "df_roi_meta.pkl")

    # B2021: 192 sounds; voxel_features_meta.npy a plain np.arange; stim_info a 1x1 struct whose
    # stim_names is a 192x1 cell (the study reads ["stim_info"]["stim_names"][0][0], then i[0][0])
    n_b = 9
    Yb = rng.standard_normal((192, n_b, 3))
    np.save(b21 / "voxel_features_array.npy", Yb)
    np.save(b21 / "voxel_features_meta.npy", np.arange(n_b))
    pd.DataFrame({"subj_idx": np.repeat([1, 2, 3], 3), "hemi": ["lh", "rh", "lh"] * 3,
                  "x_ras": rng.integers(-60, 60, n_b), "y_ras": rng.integers(-40, 20, n_b),
                  "voxel_id": np.arange(n_b), "pearson_r_reliability": rng.random(n_b),
                  "roi_label_general": ["Primary", "Lateral", np.nan] * 3}).to_pickle(b21 / "df_roi_meta.pkl")
    names_192 = stim_ids + [f"extra_{i}" for i in range(27)]
    scipy.io.savemat(b21 / "stim_info_v4.mat", {"stim_info": {
        "category_names": np.array(CATEGORIES, dtype=object).reshape(-1, 1),
        "stim_names": np.array(names_192, dtype=object).reshape(-1, 1)}})

    # components.mat: R (165 x 6) in its own order, stim_names a 1x165 cell (["stim_names"][0], x[0]),
    # component_names a 6x1 cell (x[0][0] for each row)
    order = rng.permutation(165)
    R_file = rng.standard_normal((165, 6))
    components = ["lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"]
    scipy.io.savemat(comp / "components.mat", {
        "R": R_file, "stim_names": np.array([stim_ids[i] for i in order], dtype=object).reshape(1, -1),
        "component_names": np.array(components, dtype=object).reshape(-1, 1)})

    # h5 (utils.get_source_features): layer_list of byte names, one (165, units) dataset per layer;
    # ResNet50music stores conv1_relu1 as "relu1"
    resnet_layers = ["conv1_relu1", "maxpool1", "layer1", "layer2", "layer3", "layer4", "avgpool"]
    stored = {("relu1" if layer == "conv1_relu1" else layer): rng.standard_normal((165, 5 + i)).astype(np.float32)
              for i, layer in enumerate(resnet_layers)}
    (root / "model_actv/ResNet50music").mkdir(parents=True)
    with h5py.File(root / "model_actv/ResNet50music/natsound_activations.h5", "w") as fh:
        fh.create_dataset("layer_list", data=np.array([n.encode() for n in stored]))
        for name, X in stored.items():
            fh.create_dataset(name, data=X)

    # per-sound pickles (PytorchWrapper.compile_activations): {key: 1-D array with all layers}, one per sound
    keys = {"Embedding": "Conv1d(1, 8)--0", "Final": "Linear(in_features=8, out_features=4, bias=True)--0"}
    (root / "model_actv/MyPickled").mkdir(parents=True)
    pickled = {layer: rng.standard_normal((165, 8 if layer == "Embedding" else 4)) for layer in keys}
    for row, sid in enumerate(stim_ids):
        with open(root / f"model_actv/MyPickled/{sid}_activations.pkl", "wb") as fh:
            pickle.dump({keys[layer]: X[row] for layer, X in pickled.items()}, fh)
    manifest = {"models": {"MyPickled": {"layers": list(keys), "storage": "per_sound_pickle", "layer_keys": keys}}}
    return dict(stim_ids=stim_ids, categories=categories, Y=Y, meta=meta, keep=n_reps == 3, roi=roi, Yb=Yb,
                order=order, R_file=R_file, components=components, stored=stored, pickled=pickled,
                manifest=manifest, names_192=names_192)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "root"
    return root, _study_root(root, np.random.default_rng(7))


def test_study_files_read_by_the_studys_own_expressions(study):
    """Guard that _study_root really writes the study's formats: its readers' expressions work."""
    root, w = study
    sound_meta = np.load(root / NH / "neural_stim_meta.npy")
    assert [i[0][:-4].decode("utf-8") for i in sound_meta] == w["stim_ids"]
    assert [i[4] for i in sound_meta] == w["categories"]            # text: compared with str
    stim_info = scipy.io.loadmat(str(root / B21 / "stim_info_v4"))["stim_info"]
    assert [i[0][0].astype(str) for i in stim_info["stim_names"][0][0]][:165] == w["stim_ids"]
    comp = scipy.io.loadmat(str(root / "data/neural/NH2015comp/components.mat"))
    assert [x[0][0] for x in comp["component_names"]] == w["components"]
    assert [x[0] for x in comp["stim_names"][0]] == [w["stim_ids"][i] for i in w["order"]]
    voxel_meta_all = np.load(root / NH / "voxel_features_meta.npy")
    assert [v["hemi"].decode("utf-8") for v in voxel_meta_all[voxel_meta_all["n_reps"] == 3]][:2] == ["lh", "lh"]
    with h5py.File(root / "model_actv/ResNet50music/natsound_activations.h5", "r") as fh:
        assert [name.decode("utf-8") for name in fh["layer_list"]][0] == "relu1"


def test_study_format_stimuli_and_nh2015(study):
    root, w = study
    stimuli = fio.load_stimuli(root)
    assert stimuli["stim_id"].tolist() == w["stim_ids"] and stimuli["category"].tolist() == w["categories"]
    nh = fio.load_neural(root, "NH2015")
    keep = w["keep"]
    np.testing.assert_array_equal(nh.Y, w["Y"][:, keep])
    np.testing.assert_array_equal(nh.voxel_ids, w["meta"]["voxel_id"][keep])
    np.testing.assert_array_equal(nh.source_columns, np.flatnonzero(keep))
    assert nh.voxel_meta["hemi"].tolist()[:2] == ["lh", "lh"] and nh.voxel_meta["x_ras"].dtype.kind == "i"
    assert nh.roi_meta["roi_label_general"].isna().sum() == 3
    assert fio.load_neural(root, "NH2015", roi="Primary").voxel_ids.tolist() == \
        w["roi"].loc[w["roi"]["roi_label_general"] == "Primary", "voxel_id"].tolist()


def test_study_format_b2021_and_components(study):
    root, w = study
    b = fio.load_neural(root, "B2021")
    np.testing.assert_array_equal(b.Y, w["Yb"][:165])
    np.testing.assert_array_equal(b.voxel_ids, np.arange(9))
    assert b.subjects.tolist() == [1, 2, 3]
    comps = fio.load_neural(root, "NH2015comp")
    assert comps.target_names == w["components"]
    position = {s: i for i, s in enumerate(w["stim_ids"][j] for j in w["order"])}
    np.testing.assert_array_equal(comps.Y, w["R_file"][[position[s] for s in w["stim_ids"]]])


def test_study_format_resnet50music_relu1_alias(study, tmp_path):
    root, w = study
    acts = fio.open_model(root, "ResNet50music")
    assert acts.layers[0] == "conv1_relu1"
    np.testing.assert_array_equal(acts.load_layer("conv1_relu1"), w["stored"]["relu1"].astype(np.float64))
    layers = dict(acts.iter_layers())
    assert list(layers) == acts.layers
    np.testing.assert_array_equal(layers["layer4"], w["stored"]["layer4"])
    # a file that names the dataset conv1_relu1 (as the other ResNets do) is read too
    other = tmp_path / "other"
    (other / "model_actv/ResNet50music").mkdir(parents=True)
    shutil.copytree(root / "data", other / "data")
    with h5py.File(other / "model_actv/ResNet50music/natsound_activations.h5", "w") as fh:
        for name, X in w["stored"].items():
            fh.create_dataset("conv1_relu1" if name == "relu1" else name, data=X)
    np.testing.assert_array_equal(fio.open_model(other, "ResNet50music").load_layer("conv1_relu1"),
                                  w["stored"]["relu1"])
    with h5py.File(other / "model_actv/ResNet50music/natsound_activations.h5", "a") as fh:
        del fh["conv1_relu1"]
    with pytest.raises(ValueError, match=r"layer 'conv1_relu1' of model 'ResNet50music' not found in .*"
                                         r"\(dataset 'relu1' or 'conv1_relu1'\)"):
        fio.open_model(other, "ResNet50music").load_layer("conv1_relu1")


def test_study_format_per_sound_pickles(study):
    root, w = study
    registry = load_registry(root, manifest=w["manifest"])
    acts = fio.open_model(root, "MyPickled", registry=registry)
    for layer, X in acts.iter_layers():
        np.testing.assert_array_equal(X, w["pickled"][layer])


# ---------------------------------------------------------------------------------------------
# empty and truncated files: the message names the file and the problem
# ---------------------------------------------------------------------------------------------
FILES = [
    (NH / "voxel_features_array.npy", "NH2015", "NH2015 voxel responses"),
    (NH / "voxel_features_meta.npy", "NH2015", "NH2015 voxel metadata"),
    (NH / "neural_stim_meta.npy", "NH2015", "stimulus metadata"),
    (NH / "df_roi_meta.pkl", "NH2015", "NH2015 ROI metadata"),
    (B21 / "df_roi_meta.pkl", "B2021", "B2021 ROI metadata"),
    (B21 / "stim_info_v4.mat", "B2021", "B2021 stimulus info"),
    (B21 / "voxel_features_meta.npy", "B2021", "B2021 voxel metadata"),
    (Path("data/neural/NH2015comp/components.mat"), "NH2015comp", "NH2015 components"),
]


@pytest.mark.parametrize("how", ["empty", "truncated"])
@pytest.mark.parametrize("rel, target, what", FILES, ids=[f"{t}:{r.name}" for r, t, _ in FILES])
def test_empty_or_truncated_neural_file(demo, tmp_path, rel, target, what, how):
    root = clone(demo, tmp_path / "r")
    path = root / rel
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    problem = r"is empty \(0 bytes\)" if how == "empty" else "is truncated"
    with pytest.raises(ValueError) as info:
        fio.load_neural(root, target)
    message = str(info.value)
    assert f"{what} {path} " in message, message
    assert re.search(problem, message), message
    assert "Traceback" not in message


def test_unreadable_but_not_truncated_file_says_corrupt(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    path = root / NH / "df_roi_meta.pkl"
    path.write_bytes(b"this is not a pickle at all" * 10)
    with pytest.raises(ValueError, match=r"NH2015 ROI metadata .*df_roi_meta.pkl cannot be read \(corrupt"):
        fio.load_neural(root, "NH2015")


def test_check_finite_names_voxel_id_and_array_index(demo, tmp_path):
    root = clone(demo, tmp_path / "r")
    Y = np.load(root / NH / "voxel_features_array.npy")
    meta = np.load(root / NH / "voxel_features_meta.npy")
    kept = np.flatnonzero(meta["n_reps"] == 3)
    column = int(next(k for i, k in enumerate(kept) if k != i))  # a voxel after a dropped one
    Y[[3, 40], column, 1] = np.inf
    np.save(root / NH / "voxel_features_array.npy", Y)
    nh = fio.load_neural(root, "NH2015")
    i = int(np.flatnonzero(kept == column)[0])
    assert i != column and nh.nonfinite_targets().tolist() == [i]
    with pytest.raises(ValueError) as info:
        nh.check_finite()
    message = str(info.value)
    assert f"voxel_id {meta['voxel_id'][column]} (array index [:, {column}, :]; sound rows [3, 40], " \
           f"repetitions [1])" in message
    assert str(root / NH / "voxel_features_array.npy") in message and "--nan-policy omit" in message
    fio.load_neural(demo, "NH2015").check_finite()  # intact data: no error
    # components: the column of R and the sound ids
    path = root / "data/neural/NH2015comp/components.mat"
    mat = scipy.io.loadmat(path)
    mat["R"][0, 4] = np.nan
    scipy.io.savemat(path, {k: mat[k] for k in ("R", "stim_names", "component_names")})
    first = [str(x[0]) for x in mat["stim_names"].ravel()][0]
    with pytest.raises(ValueError, match=rf"component 'speech' \(column 4 of R; sounds \['{first}'\]\)"):
        fio.load_neural(root, "NH2015comp").check_finite()
