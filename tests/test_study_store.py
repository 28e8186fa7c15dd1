"""The study layer (fastenc.study): the one store, the executors, the layering, nan_policy="omit"
through the analyses and the RSA, and the progress lines."""
from __future__ import annotations

import ast
import io
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from fastenc.datasets import make_demo
from fastenc.progress import Progress
from fastenc.study import run_all, run_regression
from fastenc.study.executors import LocalExecutor
from fastenc.study.store import RecomputeLog, StudyStore, stale_reason

PKG = Path(__file__).resolve().parents[1] / "fastenc"
INPUTS = {"method": "2", "activations": "a1", "stimuli": "s", "neural": "n", "splits": "p", "alphas": "x"}


def _unit(store, target="NH2015", model="M", randnetw=False, layer="l1", inputs=INPUTS, value=1.0):
    arrays = {"r2_test": np.full((3, 2), value)}
    summary = pd.DataFrame({"r2_test_median": [value] * 3})
    return store.write(target, model, randnetw, layer, arrays, summary, ["v0", "v1", "v2"], inputs)


# ------------------------------------------------------------------------------------- store
def test_store_reuse_rule_per_input(tmp_path):
    store = StudyStore(tmp_path)
    assert store.check("NH2015", "M", False, "l1", INPUTS) == ("missing", None)
    _unit(store)
    assert store.check("NH2015", "M", False, "l1", INPUTS) == ("current", None)
    for key, why in [("activations", "activations changed"), ("neural", "neural data changed"),
                     ("splits", "splits changed"), ("alphas", "alpha grid changed"),
                     ("stimuli", "stimulus order or names changed"), ("method", "method version changed")]:
        assert store.check("NH2015", "M", False, "l1", {**INPUTS, key: "other"}) == ("stale", why)
    two = {**INPUTS, "activations": "a2", "alphas": "x2"}
    assert store.check("NH2015", "M", False, "l1", two) == ("stale", "activations changed, alpha grid changed")
    # an unfinished file is redone, not reused
    with h5py.File(store.path("NH2015", "M", False, "l1"), "a") as f:
        f.attrs["complete"] = False
    assert store.check("NH2015", "M", False, "l1", INPUTS) == ("incomplete", "never finished")


def test_store_read_returns_target_names(tmp_path):
    store = StudyStore(tmp_path)
    _unit(store, value=0.25)
    res = store.read("NH2015", "M", False, "l1")
    assert res["target_names"] == ["v0", "v1", "v2"]
    assert res["r2_test"].tolist() == [[0.25, 0.25]] * 3
    assert res["summary"]["r2_test_median"].tolist() == [0.25] * 3
    only = store.read("NH2015", "M", False, "l1", names=["r2_test", "target_names"])
    assert set(only) == {"r2_test", "target_names"}
    assert store.layer_values("NH2015", "M", False, ["l1", "l1"], "r2_test").shape == (2, 3, 2)
    with pytest.raises(FileNotFoundError, match="no regression result for NH2015/M/l2"):
        store.read("NH2015", "M", False, "l2")


def test_store_refuses_a_file_of_another_unit(tmp_path):
    store = StudyStore(tmp_path)
    _unit(store, model="a/b")               # "a/b" and "a_b" map to the same file name
    assert store.path("NH2015", "a/b", False, "l1") == store.path("NH2015", "a_b", False, "l1")
    with pytest.raises(ValueError, match="holds another unit"):
        store.check("NH2015", "a_b", False, "l1", INPUTS)


def test_rsa_units_share_the_reuse_rule(tmp_path):
    store = StudyStore(tmp_path)
    df = pd.DataFrame({"roi": ["All"], "rsa": [0.5]})
    assert store.rsa_check("NH2015", "M", True, INPUTS) == ("missing", None)
    p = store.rsa_write("NH2015", "M", True, df, INPUTS)
    assert p == tmp_path / "rsa" / "NH2015" / "M_randnetw.csv"
    assert store.rsa_check("NH2015", "M", True, INPUTS) == ("current", None)
    assert store.rsa_check("NH2015", "M", True, {**INPUTS, "neural": "n2"}) == ("stale", "neural data changed")
    assert store.rsa_check("NH2015", "M", True, INPUTS, corrected=True) == ("missing", None)  # rsa-corrected/
    pd.testing.assert_frame_equal(store.rsa_read("NH2015", "M", True), df)
    # a table edited by hand no longer pairs with its input record
    p.write_text(p.read_text().replace("0.5", "0.6"))
    assert store.rsa_check("NH2015", "M", True, INPUTS) == ("incomplete", "table and input record of different writes")
    # a table without a record (an older fastenc) is recomputed, saying why
    (tmp_path / "rsa" / "NH2015" / "M_randnetw.inputs.json").unlink()
    assert store.rsa_check("NH2015", "M", True, INPUTS) == ("stale", "no record of its inputs (written by an older fastenc)")
    assert stale_reason({}, INPUTS) == "no record of its inputs (written by an older fastenc)"


def test_recompute_log_lines(tmp_path):
    log = RecomputeLog(tmp_path)
    log.add("NH2015/M/l1", "activations changed")
    stream = io.StringIO()
    log.summary(verbose=False, stream=stream)
    assert stream.getvalue() == f"fastenc: 1 unit recomputed because inputs changed; see {tmp_path / 'fastenc.log'}\n"
    assert (tmp_path / "fastenc.log").read_text().endswith("NH2015/M/l1: recomputed (activations changed)\n")


# ------------------------------------------------------------------------------- layering
def _imports(path: Path) -> set:
    """Modules a file imports (relative imports resolved against fastenc), inside functions too."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_executors_import_no_stage():
    mods = _imports(PKG / "study" / "executors.py")
    assert not [m for m in mods if m.startswith("fastenc")], mods


def test_library_never_imports_the_study_layer():
    shims = {"__init__.py", "pipeline.py", "analysis_stage.py", "distributed.py", "store.py", "cli.py"}
    for path in PKG.glob("*.py"):
        if path.name not in shims:
            assert not [m for m in _imports(path) if m.startswith("fastenc.study")], path.name
    for path in (PKG / "_core").glob("*.py"):
        assert not [m for m in _imports(path) if m.startswith("fastenc.study")], path.name


def test_local_executor_runs_tasks_in_order_with_events():
    seen, events = [], []

    def task(item, shared, ctx):
        ctx.emit(("start", item))
        return item + shared

    LocalExecutor(n_threads=1).run(task, [1, 2, 3], 10, on_result=lambda i, v: seen.append((i, v)),
                                   on_event=events.append)
    assert seen == [(1, 11), (2, 12), (3, 13)]
    assert events == [("start", 1), ("start", 2), ("start", 3)]
    with pytest.raises(ValueError, match="bad input 2"):
        LocalExecutor().run(lambda i, s, c: (_ for _ in ()).throw(ValueError(f"bad input {i}")) if i == 2 else i,
                            [1, 2], None, on_result=lambda i, v: None)


# ------------------------------------------------------------------------------ progress
def test_progress_in_a_log_prints_one_line_per_tenth():
    log = io.StringIO()
    p = Progress(50, "stage", stream=log)
    for _ in range(50):
        p.update(1)
    lines = log.getvalue().splitlines()
    assert len(lines) == 10
    assert [int(line.split()[2].split("/")[0]) for line in lines] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]


def test_progress_eta_ignores_the_first_computed_unit(monkeypatch):
    clock = iter([0.0, 100.0, 102.0])            # t0; the first unit took 100 s (compiling); 2 s later
    monkeypatch.setattr("fastenc.progress.time.perf_counter", lambda: next(clock))
    p = Progress(10, "stage", enabled=False)
    p.update(1)                                     # at 100 s: no ETA from one unit
    assert np.isnan(p.eta())
    p.update(1)
    assert p.eta() == pytest.approx((102.0 - 100.0) / 1 * 8)   # 2 s a unit, 8 left: not 100 s a unit


# ----------------------------------------------------------------------- nan_policy="omit"
@pytest.fixture(scope="module")
def nan_case(tmp_path_factory):
    """The demo and a copy with one NH2015 voxel NaN in one repetition of one sound."""
    root = tmp_path_factory.mktemp("omit")
    demo = make_demo(root / "demo")
    data = root / "nan"
    shutil.copytree(demo, data)
    folder = data / "data/neural/NH2015"
    Y = np.load(folder / "voxel_features_array.npy")
    meta = np.load(folder / "voxel_features_meta.npy")
    kept = np.flatnonzero(meta["n_reps"] == 3)     # the voxels the loader keeps, in order
    position = 5
    Y[60, kept[position], 0] = np.nan
    np.save(folder / "voxel_features_array.npy", Y)
    kw = dict(models=["spectemp", "DemoCNN"], targets=["NH2015"], progress=False, figures=False)
    clean = run_all(demo, root / "clean_out", **kw)
    omit = run_all(data, root / "omit_out", nan_policy="omit", **kw)
    from fastenc.io import load_neural
    subj = load_neural(demo, "NH2015").roi_meta["subj_idx"].to_numpy()[position]
    return clean, omit, subj, data, position


def test_nan_omit_leaves_the_voxel_out_of_the_analysis(nan_case):
    """The omit run's headline scores are those of the analysis on the clean run's stored scores
    with the voxel deleted (the other voxels' regressions are unchanged by the omission)."""
    from fastenc import analysis as an
    from fastenc.io import load_neural
    from fastenc.registry import load_registry
    clean, omit, _, data, position = nan_case
    subj = load_neural(data, "NH2015").roi_meta["subj_idx"].to_numpy()
    scores = omit.regression["NH2015"].subject_scores
    assert np.isfinite(scores["score"]).all()
    store = StudyStore(clean.out)
    for model, randnetw in [("DemoCNN", False), ("DemoCNN", True), ("spectemp", False)]:
        layers = load_registry(data).layers(model)
        vals = np.delete(store.layer_values("NH2015", model, randnetw, layers, "r2_test_c"), position, axis=1)
        ref = an.best_layer_independent_splits(vals, np.delete(subj, position), clip=True).subject_scores
        got = scores[(scores["source_model"] == model) & (scores["randnetw"] == randnetw)].set_index("subj_idx")["score"]
        np.testing.assert_allclose(got.to_numpy(), ref.loc[got.index].to_numpy(), rtol=1e-12)
    assert np.isfinite(omit.regression["NH2015"].across_models["median_r2_test_c_mean"]).all()
    assert np.isfinite(omit.regression["NH2015"].across_layers["median_r2_test_c_mean"]).all()


def test_nan_omit_leaves_the_voxel_out_of_the_rsa(nan_case):
    clean, omit, subj, _, _ = nan_case
    key = ["source_model", "randnetw", "roi", "subj_idx"]
    a = clean.rsa["NH2015"].subject_scores.set_index(key)
    b = omit.rsa["NH2015"].subject_scores.set_index(key).loc[a.index]
    assert np.isfinite(b["rsa"]).all() and np.isfinite(b["noise_ceiling"]).all()
    others = a.index.get_level_values("subj_idx") != subj
    # a participant's model RSA uses its own voxels only: the others' are those of the clean data
    # (the noise ceilings are not: they compare each participant with the others)
    np.testing.assert_allclose(b.loc[others, "rsa"], a.loc[others, "rsa"], rtol=1e-12)
    # ... and the participant of the omitted voxel is scored on its other voxels
    assert not np.allclose(b.loc[~others, "rsa"], a.loc[~others, "rsa"], rtol=1e-12)


def test_nan_omit_participant_arrays_drop_the_voxel(nan_case):
    from fastenc.splits import seed_splits
    from fastenc.study.plan import load_target_bundle
    from fastenc.study.rsa import rsa_participants
    from fastenc.constants import STUDY_ALPHAS
    _, _, subj, data, position = nan_case
    b = load_target_bundle(data, "NH2015", seed_splits(), STUDY_ALPHAS, nan_policy="omit")
    assert not b.kept[position] and b.kept.sum() == b.kept.size - 1
    per_roi = rsa_participants(b, prepare=False)[0]
    ids, parts = per_roi["All"]
    n_vox = {s: int((b.subj_idx == s).sum()) for s in ids}
    assert [p.shape[1] for p in parts] == [n_vox[s] - (s == subj) for s in ids]
    assert all(np.isfinite(p).all() for p in parts)


def test_overwrite_recomputes_every_unit(nan_case, tmp_path):
    clean, _, _, _, _ = nan_case
    out = clean.out
    again = run_regression(out.parent / "demo", out, models=["spectemp"], targets=["NH2015"], progress=False)
    assert set(again["status"]) == {"skipped"}
    forced = run_regression(out.parent / "demo", out, models=["spectemp"], targets=["NH2015"], progress=False,
                            overwrite=True)
    assert set(forced["status"]) == {"done"} and len(forced) == 1
