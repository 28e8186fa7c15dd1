"""Tests of fastenc.datasets.make_demo: layout, determinism, idempotence, planted truth."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

import fastenc.io as fio
from fastenc.datasets import DEMO_MARKER, DEMO_MODELS, DEMO_TRUTH, make_demo
from fastenc.registry import load_registry, resolve_models
from fastenc.splits import seed_splits


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("datasets") / "demo", seed=0)


EXPECTED_FILES = [
    "data/neural/NH2015/voxel_features_array.npy",
    "data/neural/NH2015/voxel_features_meta.npy",
    "data/neural/NH2015/neural_stim_meta.npy",
    "data/neural/NH2015/df_roi_meta.pkl",
    "data/neural/B2021/voxel_features_array.npy",
    "data/neural/B2021/voxel_features_meta.npy",
    "data/neural/B2021/df_roi_meta.pkl",
    "data/neural/B2021/stim_info_v4.mat",
    "data/neural/NH2015comp/components.mat",
    "model_actv/DemoCNN/natsound_activations.h5",
    "model_actv/DemoCNN/natsound_activations_randnetw.h5",
    "model_actv/spectemp/natsound_activations.h5",
    "fastenc_models.json",
    DEMO_MARKER,
]


def test_layout(demo):
    for rel in EXPECTED_FILES:
        assert (demo / rel).is_file(), rel
    assert not (demo / "model_actv/spectemp/natsound_activations_randnetw.h5").exists()
    pickles = sorted(p.name for p in (demo / "model_actv/DemoTransformer").iterdir())
    assert len(pickles) == 330 and sum(p.endswith("_randnetw.pkl") for p in pickles) == 165


def test_raw_files_follow_the_study_format(demo):
    nh = demo / "data/neural/NH2015"
    stim = np.load(nh / "neural_stim_meta.npy")
    assert stim.shape == (165,)
    first = stim[stim.dtype.names[0]]
    assert first.dtype.kind == "S" and all(n.startswith(b"stim") and n.endswith(b".wav") for n in first)
    categories = pd.Series(stim[stim.dtype.names[4]])
    assert set(categories) == set(load_registry().sound_category_order) and (categories.value_counts() == 15).all()
    # categories are interleaved in file order, as in the study
    assert categories.iloc[:15].nunique() > 3

    meta = np.load(nh / "voxel_features_meta.npy")
    assert meta.dtype.names == ("voxel_id", "n_reps", "subj_idx", "hemi", "x_ras", "y_ras")
    assert meta["hemi"].dtype.kind == "S" and (meta["n_reps"] != 3).sum() == 6
    Y = np.load(nh / "voxel_features_array.npy")
    assert Y.shape == (165, len(meta), 3)
    assert np.isnan(Y[:, meta["n_reps"] != 3, 2]).all() and np.isfinite(Y[:, meta["n_reps"] == 3]).all()

    roi = pd.read_pickle(nh / "df_roi_meta.pkl")
    for column in ("subj_idx", "hemi", "x_ras", "y_ras", "roi_label_general", "roi_anat_hemi",
                   "pearson_r_reliability", "voxel_id"):
        assert column in roi.columns
    labelled = roi["roi_label_general"].dropna()
    assert set(labelled) == {"Primary", "Anterior", "Lateral", "Posterior"}
    assert roi["roi_label_general"].isna().any()
    assert (roi["roi_anat_hemi"].dropna() == labelled + "_" + roi.loc[labelled.index, "hemi"]).all()
    counts = roi.groupby("subj_idx").size()
    assert len(counts) == 8 and counts.between(30, 40).all()
    assert roi.groupby("subj_idx")["roi_label_general"].nunique().eq(4).all()

    assert all(meta[f].dtype.kind == "i" for f in ("voxel_id", "n_reps", "subj_idx", "x_ras", "y_ras"))
    assert roi["x_ras"].dtype.kind == "i" and roi["hemi"].isin(["lh", "rh"]).all()

    # B2021 voxel_features_meta.npy is a PLAIN integer array, np.arange(n_voxels), as the study saved it
    b_meta = np.load(demo / "data/neural/B2021/voxel_features_meta.npy")
    assert b_meta.dtype.names is None and b_meta.dtype.kind == "i" and b_meta.ndim == 1
    np.testing.assert_array_equal(b_meta, np.arange(len(b_meta)))
    b_roi = pd.read_pickle(demo / "data/neural/B2021/df_roi_meta.pkl")
    np.testing.assert_array_equal(b_roi["voxel_id"], b_meta)
    b_counts = b_roi.groupby("subj_idx").size()
    assert len(b_counts) == 20 and b_counts.between(15, 20).all()
    assert np.load(demo / "data/neural/B2021/voxel_features_array.npy").shape == (192, len(b_meta), 3)
    names = scipy.io.loadmat(demo / "data/neural/B2021/stim_info_v4.mat")["stim_info"]["stim_names"][0, 0]
    assert names.shape == (192, 1)  # a column cell, as the study iterates it


def test_files_read_by_the_studys_own_code(demo):
    """The reading expressions of aud_dnn (AUD_main.py, utils.get_target, plot_utils_AUD_RSA.py,
    utils.get_source_features) work on the demo and give the demo's values."""
    nh = demo / "data/neural"
    sound_meta = np.load(nh / "NH2015/neural_stim_meta.npy")
    stimuli_IDs = [i[0][:-4].decode("utf-8") for i in sound_meta]
    stimuli_categories = [i[4] for i in sound_meta]
    assert stimuli_IDs == fio.load_stimuli(demo)["stim_id"].tolist()
    assert sum(c == "Music" for c in stimuli_categories) == 15  # text, compared with str

    voxel_meta_all = np.load(nh / "NH2015/voxel_features_meta.npy")
    is_3 = voxel_meta_all["n_reps"] == 3
    assert [v["hemi"].decode("utf-8") for v in voxel_meta_all[is_3]] == \
        fio.load_neural(demo, "NH2015").roi_meta["hemi"].tolist()

    comp_data = scipy.io.loadmat(nh / "NH2015comp/components.mat")
    comp_stimuli_IDs = [x[0] for x in comp_data["stim_names"][0]]
    comp_names = [x[0][0] for x in comp_data["component_names"]]
    voxel_data = pd.DataFrame(comp_data["R"], index=comp_stimuli_IDs, columns=comp_names).reindex(stimuli_IDs)
    assert comp_names == DEMO_TRUTH["components"] and not voxel_data.isna().any().any()
    np.testing.assert_array_equal(voxel_data.to_numpy(), fio.load_neural(demo, "NH2015comp").Y)

    sound_meta_mat = scipy.io.loadmat(str(nh / "B2021/stim_info_v4"))["stim_info"]
    stimuli_IDs_B2021 = [i[0][0].astype(str) for i in sound_meta_mat["stim_names"][0][0]]
    assert stimuli_IDs == stimuli_IDs_B2021[:165] and len(stimuli_IDs_B2021) == 192
    voxel_id = np.load(nh / "B2021/voxel_features_meta.npy")
    np.testing.assert_array_equal(voxel_id, fio.load_neural(demo, "B2021").voxel_ids)

    with h5py.File(demo / "model_actv/DemoCNN/natsound_activations.h5", "r") as h5file:
        layer_lst = [layer.decode("utf-8") for layer in h5file["layer_list"]]
        assert layer_lst == DEMO_MODELS["DemoCNN"]["layers"]
        np.testing.assert_array_equal(np.asarray(h5file["conv2"]), fio.open_model(demo, "DemoCNN").load_layer("conv2"))


def test_reliability_spread(demo):
    reliability = pd.read_pickle(demo / "data/neural/NH2015/df_roi_meta.pkl")["pearson_r_reliability"]
    assert reliability.min() < 0.25 and reliability.max() > 0.75


def test_manifest_and_registry(demo):
    registry = load_registry(demo)
    assert registry.storage("DemoCNN") == "h5" and len(registry.layers("DemoCNN")) >= 5
    assert registry.storage("DemoTransformer") == "per_sound_pickle" and len(registry.layers("DemoTransformer")) >= 4
    assert resolve_models("DEMO_MODEL_LIST", registry) == ["DemoCNN", "DemoTransformer", "spectemp"]
    for model in ("DemoCNN", "DemoTransformer", "spectemp"):
        for _, X in fio.open_model(demo, model).iter_layers():
            assert 32 <= X.shape[1] <= 256


def test_deterministic_and_idempotent(demo, tmp_path):
    again = make_demo(tmp_path / "again", seed=0)
    other = make_demo(tmp_path / "other", seed=1)
    rel = "data/neural/NH2015/voxel_features_array.npy"
    np.testing.assert_array_equal(np.load(demo / rel), np.load(again / rel))
    a = fio.open_model(demo, "DemoTransformer").load_layer("Final")
    np.testing.assert_array_equal(a, fio.open_model(again, "DemoTransformer").load_layer("Final"))
    assert not np.array_equal(a, fio.open_model(other, "DemoTransformer").load_layer("Final"))

    marker = again / DEMO_MARKER
    stamp = (again / rel).stat().st_mtime_ns
    assert make_demo(again, seed=0) == again
    assert (again / rel).stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="seed 0"):
        make_demo(again, seed=1)
    make_demo(again, seed=1, overwrite=True)
    assert json.loads(marker.read_text())["seed"] == 1
    np.testing.assert_array_equal(np.load(again / rel), np.load(other / rel))

    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(FileExistsError, match="a_file is an existing file, not a folder"):
        make_demo(tmp_path / "a_file")
    assert (tmp_path / "a_file").read_text() == "keep me"

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a fastenc demo"):
        make_demo(tmp_path / "foreign")

    # an incomplete demo (no marker) is rewritten
    marker.unlink()
    make_demo(again, seed=0)
    np.testing.assert_array_equal(np.load(again / rel), np.load(demo / rel))


def _ridge_r2(X, Y, train, alpha=1.0):
    """Test r² of a fixed-alpha ridge on standardized X (a cheap check of the planted truth)."""
    Xtr, Xte = X[train], X[~train]
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-12
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    ym = Y[train].mean(0)
    K = Xtr @ Xtr.T
    coef = np.linalg.solve(K + alpha * X.shape[1] * np.eye(len(K)), Y[train] - ym)
    P = Xte @ (Xtr.T @ coef)
    Pc, Yc = P - P.mean(0), Y[~train] - Y[~train].mean(0)
    r = (Pc * Yc).sum(0) / np.sqrt((Pc ** 2).sum(0) * (Yc ** 2).sum(0))
    return np.clip(r, 0, None) ** 2


def test_planted_truth(demo):
    nh = fio.load_neural(demo, "NH2015")
    Y = nh.Y.mean(axis=2)
    rois = nh.roi_meta["roi_label_general"].to_numpy()
    train = seed_splits()[0]

    def per_layer(model, randnetw=False):
        return {layer: _ridge_r2(X, Y, train) for layer, X in fio.open_model(demo, model, randnetw).iter_layers()}

    for model in ("DemoCNN", "DemoTransformer"):
        scores = per_layer(model)
        layers = list(scores)
        best = {roi: int(np.argmax([np.median(s[rois == roi]) for s in scores.values()]))
                for roi in ("Primary", "Anterior", "Lateral", "Posterior")}
        assert best["Primary"] < min(best["Anterior"], best["Lateral"], best["Posterior"]), (model, best)
        assert best["Primary"] <= 1 and best["Anterior"] >= len(layers) - 2
        best_trained = max(np.median(s) for s in scores.values())
        best_random = max(np.median(s) for s in per_layer(model, randnetw=True).values())
        assert best_trained > 2 * best_random
    spectemp = np.median(per_layer("spectemp")["avgpool"])
    assert best_random < spectemp < best_trained
    assert DEMO_TRUTH["roi_preferred_depth"]["Primary"] < DEMO_TRUTH["roi_preferred_depth"]["Anterior"]


def test_components_link_to_features(demo):
    comps = fio.load_neural(demo, "NH2015comp")
    assert comps.Y.shape == (165, 6) and np.isfinite(comps.Y).all()
    train = seed_splits()[0]
    deep = fio.open_model(demo, "DemoCNN").load_layer("fc")
    shallow = fio.open_model(demo, "DemoCNN").load_layer("conv1")
    r2_deep, r2_shallow = _ridge_r2(deep, comps.Y, train), _ridge_r2(shallow, comps.Y, train)
    names = comps.target_names
    assert r2_shallow[names.index("lowfreq")] > r2_deep[names.index("lowfreq")]
    assert r2_deep[names.index("music")] > r2_shallow[names.index("music")]
