"""Stale results are never reused: a unit or RSA table whose inputs changed is recomputed.

For each input kind (one layer's activations, the stimulus names, one target's neural data,
the alpha grid, the method version) the demo is run, the input is changed and the run is
repeated into the same output folder: the results must equal those of a fresh output folder
on the changed input, the units whose inputs did not change must not be rewritten, and the
recomputed ones must be logged with the reason.

The demo is trimmed to stay fast: DemoCNN with 2 layers, DemoTransformer (per-sound pickles)
with 1 layer, spectemp; no permuted versions; targets NH2015 (with RSA) and NH2015comp.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from fastenc import pipeline
from fastenc.study import store
from fastenc.cli import main as cli_main

from .h5util import h5_content
from fastenc.datasets import make_demo
from fastenc.io import load_neural, load_stimuli
from fastenc.ridge import STUDY_ALPHAS

MODELS = ["DemoCNN", "DemoTransformer", "spectemp"]
TARGETS = ["NH2015", "NH2015comp"]
N_UNITS = 4 * len(TARGETS)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = make_demo(tmp_path_factory.mktemp("stale") / "demo")
    manifest = json.loads((root / "fastenc_models.json").read_text())
    manifest["models"]["DemoCNN"]["layers"] = ["conv1", "conv2"]
    manifest["models"]["DemoTransformer"]["layers"] = ["Encoder_3"]
    keys = manifest["models"]["DemoTransformer"]["layer_keys"]
    manifest["models"]["DemoTransformer"]["layer_keys"] = {"Encoder_3": keys["Encoder_3"]}
    (root / "fastenc_models.json").write_text(json.dumps(manifest))
    for p in (root / "model_actv").rglob("*_randnetw*"):
        p.unlink()
    return root


def run(data, out, **kw):
    return pipeline.run_all(data, out, models=MODELS, targets=TARGETS, progress=False, figures=False, **kw)


@pytest.fixture(scope="module")
def base(demo, tmp_path_factory):
    """Results of the original demo."""
    out = tmp_path_factory.mktemp("stale") / "base"
    tables = run(demo, out)
    assert len(tables["regression_units"]) == N_UNITS
    return out


@pytest.fixture
def case(demo, base, tmp_path):
    """(copy of the demo, copy of the base results) to change and rerun."""
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(demo, data)
    shutil.copytree(base, out)
    return data, out


def stamps(out):
    files = [*(Path(out) / "regression").rglob("*.h5"), *(Path(out) / "rsa").rglob("*.csv")]
    return {p.relative_to(out): p.stat().st_mtime_ns for p in files}


def rewritten(before, out):
    now = stamps(out)
    assert set(now) == set(before)
    return {k for k in now if now[k] != before[k]}


def results(out, attrs=True, rsa=True):
    """Every regression unit (arrays, and attributes with the input record), every cached RSA
    table and every table of the study, by path (``rsa=False``: without the RSA tables and the
    consistency / seed tables, which pair regression with RSA scores)."""
    out = Path(out)
    res = {p.relative_to(out): h5_content(p, attrs) for p in sorted((out / "regression").rglob("*.h5"))}
    res.update({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.csv"))
                if rsa or not str(p.relative_to(out)).startswith(("rsa", "consistency", "seeds"))})
    return res


def unit(target, model, layer):
    return Path("regression", target, model, f"{layer}.h5")


def recomputed(tables):
    reg = tables["regression_units"]
    rows = reg[reg["status"] == "recomputed"]
    assert set(reg["status"]) <= {"recomputed", "skipped"}
    return {unit(t, m, layer): reason for t, m, layer, reason in
            zip(rows["target"], rows["model"], rows["layer"], rows["reason"])}


def log_lines(out):
    p = Path(out) / "fastenc.log"
    return [line.split(" ", 2)[2] for line in p.read_text().splitlines()] if p.exists() else []


# ---------------------------------------------------------------------------------------------
def test_identical_rerun_recomputes_nothing(case, base, capsys):
    data, out = case
    before = stamps(out)
    tables = run(data, out)
    assert set(tables["regression_units"]["status"]) == {"skipped"}
    assert rewritten(before, out) == set()
    assert results(out) == results(base)
    assert not log_lines(out) and "recomputed" not in capsys.readouterr().err


def test_changed_layer_activations(case, base, tmp_path, capsys):
    """The user's report: DemoCNN activations replaced with noise, run, restored, rerun."""
    data, out = case
    h5 = data / "model_actv" / "DemoCNN" / "natsound_activations.h5"
    with h5py.File(h5, "r+") as f:
        original = f["conv2"][()]
        f["conv2"][...] = np.random.default_rng(1).standard_normal(original.shape)
    before = stamps(out)
    tables = run(data, out)
    changed = {unit("NH2015", "DemoCNN", "conv2"), unit("NH2015comp", "DemoCNN", "conv2")}
    assert recomputed(tables) == {u: "activations changed" for u in changed}
    assert rewritten(before, out) == changed | {Path("rsa/NH2015/DemoCNN.csv")}
    assert log_lines(out) == ["NH2015/DemoCNN/conv2: recomputed (activations changed)",
                              "NH2015comp/DemoCNN/conv2: recomputed (activations changed)",
                              "rsa/NH2015/DemoCNN: recomputed (activations changed)"]
    assert "3 units recomputed because inputs changed; see" in capsys.readouterr().err
    run(data, tmp_path / "fresh")
    assert results(out) == results(tmp_path / "fresh")
    assert results(out) != results(base)

    with h5py.File(h5, "r+") as f:  # restore, rerun through the command line: --quiet still says it
        f["conv2"][...] = original
    before = stamps(out)
    assert cli_main(["run-all", "--data-dir", str(data), "--out", str(out), "--models", *MODELS,
                     "--targets", *TARGETS, "--no-figures", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (f"fastenc: 3 units recomputed because inputs changed; "
                                            f"see {out / 'fastenc.log'}")
    assert rewritten(before, out) == changed | {Path("rsa/NH2015/DemoCNN.csv")}
    assert results(out) == results(base)


def _swap(names, i, j):
    names = list(names)
    names[i], names[j] = names[j], names[i]
    return names


def test_swapped_stimulus_names(case, tmp_path):
    """Two sound names swapped consistently (NH2015 stimulus list and B2021's, which must agree)."""
    data, out = case
    i, j = 3, 40
    meta_path = data / "data" / "neural" / "NH2015" / "neural_stim_meta.npy"
    meta = np.load(meta_path, allow_pickle=True)
    field = meta.dtype.names[0]  # the wav name (see fastenc.io.load_stimuli)
    meta[field] = _swap(meta[field], i, j)
    np.save(meta_path, meta)
    mat_path = data / "data" / "neural" / "B2021" / "stim_info_v4.mat"
    names = [str(np.asarray(n).ravel()[0]) for n in
             scipy.io.loadmat(mat_path)["stim_info"]["stim_names"][0, 0].ravel()]
    scipy.io.savemat(mat_path, {"stim_info": {
        "stim_names": np.array(_swap(names, i, j), dtype=object).reshape(1, -1),
        "stim_category": np.array([""] * len(names), dtype=object)}})
    stim = load_stimuli(data)["stim_id"]
    assert stim[i].startswith(f"stim{j + 1}_") and len(load_neural(data, "B2021").stim_ids) == 165  # accepted
    before = stamps(out)
    tables = run(data, out)
    reasons = recomputed(tables)
    assert len(reasons) == N_UNITS and rewritten(before, out) == set(before)
    assert reasons[unit("NH2015", "DemoCNN", "conv1")] == "stimulus order or names changed"
    # per-sound pickles are assembled in the new order: the activations changed too
    assert reasons[unit("NH2015", "DemoTransformer", "Encoder_3")] == \
        "activations changed, stimulus order or names changed"
    assert "rsa/NH2015/spectemp: recomputed (stimulus order or names changed)" in log_lines(out)
    run(data, tmp_path / "fresh")
    assert results(out) == results(tmp_path / "fresh")


def test_changed_neural_data_of_one_target(case, tmp_path):
    data, out = case
    path = data / "data" / "neural" / "NH2015" / "voxel_features_array.npy"
    Y = np.load(path)
    Y[:, :40] += np.random.default_rng(2).standard_normal(Y[:, :40].shape)
    np.save(path, Y)
    before = stamps(out)
    tables = run(data, out)
    nh = {u for u in before if u.parts[1] == "NH2015"}
    assert rewritten(before, out) == nh  # NH2015comp untouched; NH2015's RSA tables redone
    assert recomputed(tables) == {u: "neural data changed" for u in nh if u.parts[0] == "regression"}
    run(data, tmp_path / "fresh")
    assert results(out) == results(tmp_path / "fresh")


def test_changed_alpha_grid(case, tmp_path):
    data, out = case
    alphas = STUDY_ALPHAS[::7]
    before = stamps(out)
    tables = run(data, out, alphas=alphas)
    reg_units = {u for u in before if u.parts[0] == "regression"}
    assert rewritten(before, out) == reg_units  # the RSA does not use the alphas
    assert set(recomputed(tables).values()) == {"alpha grid changed"} and len(recomputed(tables)) == N_UNITS
    run(data, tmp_path / "fresh", alphas=alphas, rsa=False)
    assert results(out, rsa=False) == results(tmp_path / "fresh")


def test_method_version_bump(case, base, monkeypatch):
    data, out = case
    monkeypatch.setattr(store, "METHOD_VERSION", store.METHOD_VERSION + 1)
    before = stamps(out)
    tables = run(data, out)
    assert rewritten(before, out) == set(before)
    assert set(recomputed(tables).values()) == {"method version changed"}
    with h5py.File(out / unit("NH2015", "DemoCNN", "conv1"), "r") as f:
        assert f.attrs["input_method"] == str(store.METHOD_VERSION)
    # same inputs, same method: same numbers as the base (records aside)
    assert results(out, attrs=False) == results(base, attrs=False)


def test_component_units_without_predictions(case, base):
    """A folder written before the component units held their test predictions: those units are
    recomputed (and logged), the NH2015 units are reused untouched, and the results equal the base."""
    data, out = case
    comp = {p.relative_to(out) for p in (out / "regression" / "NH2015comp").rglob("*.h5")}
    for p in comp:  # as an older fastenc wrote them: no predictions, no record of them
        with h5py.File(out / p, "a") as f:
            del f["predictions"]
            del f.attrs["input_predictions"]
    before = stamps(out)
    tables = run(data, out)
    assert rewritten(before, out) == comp
    why = "no stored test predictions (written before they were stored)"
    assert recomputed(tables) == {p: why for p in comp}
    assert sorted(log_lines(out)) == sorted(f"{p.parent.relative_to('regression')}/{p.stem}: recomputed ({why})"
                                            for p in comp)
    assert results(out, attrs=False) == results(base, attrs=False)
