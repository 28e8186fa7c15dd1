"""Corrupted inputs through run_all / run_regression: clear errors, finished results untouched.

Each test corrupts a copy of the demo (tmp_path) and runs the pipeline into an output folder
that already holds finished units (spectemp, all targets); those files must keep their bytes
and modification times whatever happens.
"""
from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io

from fastenc.study import run as pipeline
from fastenc.datasets import make_demo
from fastenc.io import load_neural


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("faults") / "demo")


@pytest.fixture(scope="module")
def finished(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "finished"
    pipeline.run_regression(demo, out, models=["spectemp"], progress=False)
    return out


@pytest.fixture
def case(demo, finished, tmp_path):
    """(data copy, output folder holding finished units); checks those units are untouched after."""
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    out = tmp_path / "out"
    shutil.copytree(finished, out)

    def snapshot():
        return {p.relative_to(out): (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    before = snapshot()
    assert len(before) == 5  # 3 regression units + the layer's ED table and its input record
    yield data, out
    after = snapshot()
    assert {k: after.get(k) for k in before} == before, "finished results were modified by the failing run"
    assert not list(out.rglob(".*.tmp-*")), "a partial file was left behind"


def _pickles(data, model="DemoTransformer", suffix=""):
    return sorted((data / "model_actv" / model).glob(f"*_activations{suffix}.pkl"))


def test_truncated_hdf5_activation_file(case):
    data, out = case
    h5 = data / "model_actv" / "DemoCNN" / "natsound_activations.h5"
    h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
    with pytest.raises(ValueError, match=re.escape(str(h5)) + r" of model 'DemoCNN' is truncated"):
        pipeline.run_all(data, out, models=["spectemp", "DemoCNN"], progress=False, figures=False)


@pytest.mark.parametrize("how", ["empty", "truncated"])
def test_empty_or_truncated_roi_pickle(case, how):
    """pickle's bare "Ran out of input" is not passed on: the message names the file and the problem."""
    data, out = case
    p = data / "data" / "neural" / "NH2015" / "df_roi_meta.pkl"
    p.write_bytes(b"" if how == "empty" else p.read_bytes()[:100])
    with pytest.raises(ValueError) as err:
        pipeline.run_regression(data, out, models=["spectemp"], targets=["NH2015"], progress=False)
    msg = str(err.value)
    assert msg.startswith(f"NH2015 ROI metadata {p} is ")
    assert ("empty (0 bytes)" if how == "empty" else "truncated") in msg
    assert msg != "Ran out of input"


def test_truncated_per_sound_pickle(case):
    data, out = case
    bad = _pickles(data)[5]
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r" of model 'DemoTransformer' \(sound \d+\) "
                                         r"is truncated"):
        pipeline.run_regression(data, out, models=["spectemp", "DemoTransformer"], targets=["NH2015comp"],
                                progress=False)


def test_missing_layer_in_hdf5_names_file_and_layer(case):
    data, out = case
    h5 = data / "model_actv" / "DemoCNN" / "natsound_activations_randnetw.h5"
    with h5py.File(h5, "r+") as f:
        f.move("conv3", "conv3_renamed")
    with pytest.raises(ValueError, match=r"layer 'conv3' of model 'DemoCNN' \(randnetw\) not found in "
                       + re.escape(str(h5))):
        pipeline.run_regression(data, out, models=["spectemp", "DemoCNN"], targets=["NH2015comp"],
                                progress=False)


@pytest.mark.parametrize("models", [None, ["DemoTransformer"]])
def test_missing_pickle_for_one_sound(case, models):
    data, out = case
    gone = _pickles(data)[42]
    gone.unlink()
    # before the fix the trained version was silently dropped from the study
    with pytest.raises(FileNotFoundError, match=r"model 'DemoTransformer' are incomplete: 1 of 165 .*"
                       + re.escape(str(gone))):
        pipeline.run_all(data, out, models=models, progress=False, figures=False)


def _nan_in_voxel_after_dropped(folder):
    """Put NaN in a kept voxel whose array index differs from its position among the kept voxels."""
    Y = np.load(folder / "voxel_features_array.npy")
    meta = np.load(folder / "voxel_features_meta.npy", allow_pickle=True)
    kept = np.flatnonzero(meta["n_reps"] == 3)
    position = int(next(i for i, k in enumerate(kept) if k != i))
    column = int(kept[position])
    Y[17, column, 2] = np.nan
    np.save(folder / "voxel_features_array.npy", Y)
    return position, column, int(meta["voxel_id"][column])


def test_nan_voxel_names_file_voxel_id_and_array_index(case):
    data, out = case
    folder = data / "data" / "neural" / "NH2015"
    position, column, vid = _nan_in_voxel_after_dropped(folder)
    assert position != column
    with pytest.raises(ValueError) as err:
        pipeline.run_regression(data, out, models=["spectemp"], targets=["NH2015"], progress=False)
    msg = str(err.value)
    assert msg.startswith(f"NH2015 responses in {folder / 'voxel_features_array.npy'} contain NaN or inf in "
                          f"1 voxel(s): voxel_id {vid} (array index [:, {column}, :]; sound rows [17], "
                          f"repetitions [2])")
    # the advice is one the CLI can follow, and no other (wrong) voxel number is given
    assert "--nan-policy omit" in msg and f"voxel {position}" not in msg


def test_nan_policy_omit_scores_the_other_voxels(case, tmp_path):
    data, out = case
    position, column, vid = _nan_in_voxel_after_dropped(data / "data" / "neural" / "NH2015")
    fresh = tmp_path / "omit_out"
    df = pipeline.run_regression(data, fresh, models=["spectemp"], targets=["NH2015"], progress=False,
                                 nan_policy="omit")
    assert set(df["status"]) == {"done"}
    from fastenc.study.store import ResultStore
    r2 = ResultStore(fresh).read("NH2015", "spectemp", False, "avgpool", names=["r2_test"])["r2_test"]
    assert r2.shape[0] == load_neural(data, "NH2015").n_targets
    assert np.isnan(r2[position]).all()
    assert np.isfinite(np.delete(r2, position, axis=0)).all()
    with pytest.raises(ValueError, match="nan_policy"):
        pipeline.run_regression(data, fresh, models=["spectemp"], targets=["NH2015"], progress=False,
                                nan_policy="ignore")


def test_b2021_stimulus_order_mismatch(case):
    data, out = case
    mat_path = data / "data" / "neural" / "B2021" / "stim_info_v4.mat"
    mat = scipy.io.loadmat(str(mat_path))
    names = mat["stim_info"]["stim_names"][0, 0]
    flat = names.ravel()
    flat[3], flat[4] = flat[4].copy(), flat[3].copy()
    scipy.io.savemat(str(mat_path), {"stim_info": mat["stim_info"]})
    with pytest.raises(ValueError, match=r"NH2015 and B2021 stimulus lists disagree.*position 3.* in "
                       + re.escape(str(mat_path)) + r" \(stim_info.stim_names\) vs .* in "
                       + re.escape(str(data / "data" / "neural" / "NH2015" / "neural_stim_meta.npy"))):
        pipeline.run_all(data, out, models=["spectemp"], progress=False, figures=False)


def test_swapped_nh2015_stimulus_names(case):
    """The fault is in NH2015's file: the message must not blame B2021's file alone."""
    data, out = case
    stim_path = data / "data" / "neural" / "NH2015" / "neural_stim_meta.npy"
    raw = np.load(stim_path)
    raw[[20, 21]] = raw[[21, 20]]
    np.save(stim_path, raw)
    with pytest.raises(ValueError) as err:
        pipeline.run_all(data, out, models=["spectemp"], progress=False, figures=False)
    msg = str(err.value)
    assert "NH2015 and B2021 stimulus lists disagree" in msg and "position 20" in msg
    assert str(stim_path) in msg and str(data / "data" / "neural" / "B2021" / "stim_info_v4.mat") in msg


def test_layer_width_differs_across_sounds(case):
    data, out = case
    bad = _pickles(data, suffix="_randnetw")[9]
    with open(bad, "rb") as fh:
        content = pickle.load(fh)
    key = list(content)[2]
    content[key] = np.asarray(content[key]).ravel()[:-5]
    with open(bad, "wb") as fh:
        pickle.dump(content, fh)
    with pytest.raises(ValueError) as err:
        pipeline.run_regression(data, out, models=["spectemp", "DemoTransformer"], targets=["NH2015comp"],
                                progress=False)
    msg = str(err.value)
    assert str(bad) in msg and "model 'DemoTransformer' (randnetw)" in msg and "same width" in msg
    assert re.search(r"layer 'Encoder_\d'", msg) and "[model" not in msg  # no misleading second layer name
    # the trained version (intact) was finished before the permuted one failed
    assert len(list((out / "regression" / "NH2015comp" / "DemoTransformer").glob("*.h5"))) == 5


def test_unknown_model_and_target(case):
    data, out = case
    with pytest.raises(ValueError, match="unknown model or model set 'NoSuchNet'"):
        pipeline.run_all(data, out, models=["spectemp", "NoSuchNet"], progress=False, figures=False)
    with pytest.raises(ValueError, match=r"unknown targets \['V1'\]"):
        pipeline.run_regression(data, out, models=["spectemp"], targets=["V1"], progress=False)


def test_empty_roi_is_documented_behaviour(case):
    """An ROI without voxels is not an error of the run: it is NaN in the ROI best-layer table and
    absent from the RSA tables (an ROI needs >= 2 participants with >= 2 voxels); asking the
    loader for it explicitly is an error naming the ROI."""
    data, out = case
    p = data / "data" / "neural" / "NH2015" / "df_roi_meta.pkl"
    df = pd.read_pickle(p)
    df.loc[df["roi_label_general"] == "Primary", "roi_label_general"] = np.nan
    df.to_pickle(p)
    with pytest.raises(ValueError, match="ROI 'Primary' is empty for target 'NH2015'"):
        load_neural(data, "NH2015", roi="Primary")
    with pytest.warns(UserWarning, match=r"no voxel in ROI\(s\) \['Primary'\]"):
        tables = pipeline.run_all(data, out, models=["DemoCNN"], targets=["NH2015"], progress=False,
                                  figures=False)
    roi = tables.regression["NH2015"].best_layer_roi
    primary = roi["roi"] == "Primary"
    assert primary.any() and roi.loc[primary, "rel_pos_mean"].isna().all()
    assert set(roi.loc[~primary, "roi"]) == {"Anterior", "Lateral", "Posterior"}
    assert roi.loc[~primary, "rel_pos_mean"].notna().all()
    assert "Primary" not in set(tables.rsa["NH2015"].across_models["roi"])
    assert {"All", "Lateral"} <= set(tables.rsa["NH2015"].across_models["roi"])
