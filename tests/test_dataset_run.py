"""Whole models scored against a dataset manifest in run-all (issue #12): planted truth, numbers
against independent references, reuse of stored units, errors, the CLI, and the study beside it."""
import json
import os
import pickle
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

import fastenc
from fastenc import analysis as A
from fastenc.dataset import load_dataset

from . import naive

N, PER, REPS, K = 300, 8, 2, 5           # stimuli, targets per participant x ROI, repetitions, folds
LAYERS = ["early", "middle", "late"]
MODELS_JSON = {"models": {"PlantNet": {"display_name": "Planted net", "layers": LAYERS, "storage": "h5"},
                          "PickleNet": {"layers": ["a", "b"], "storage": "per_sound_pickle",
                                        "has_randnetw": False}}}


def _write_dataset(d, n=N, per=PER, seed=0, pickles=False):
    """300 'images', 2 repetitions, 2 participants x 2 ROIs; PlantNet's middle layer spans the
    latent signal, its early layer is noise, its late layer a noisy copy; the permuted version
    is noise. Returns the manifest path."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 6))
    n_t = 4 * per
    Y = (Z @ rng.standard_normal((6, n_t)))[:, :, None] * 0.3 + rng.standard_normal((n, n_t, REPS))
    np.save(d / "responses.npy", Y)
    ids = [f"img{i:04d}" for i in range(n)]
    pd.DataFrame({"stimulus_id": ids}).to_csv(d / "stimuli.csv", index=False)
    pd.DataFrame({"participant": np.repeat(["P1", "P2"], 2 * per),
                  "roi": np.tile(np.repeat(["V1", "IT"], per), 2)}).to_csv(d / "targets.csv", index=False)
    acts = {"early": rng.standard_normal((n, 16)),
            "middle": Z @ rng.standard_normal((6, 16)) + 0.3 * rng.standard_normal((n, 16)),
            "late": Z @ rng.standard_normal((6, 16)) + 2.0 * rng.standard_normal((n, 16))}
    folder = d / "model_actv" / "PlantNet"
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "natsound_activations.h5", "w") as f:
        for k, v in acts.items():
            f.create_dataset(k, data=v)
    with h5py.File(folder / "natsound_activations_randnetw.h5", "w") as f:
        for k in acts:
            f.create_dataset(k, data=rng.standard_normal((n, 16)))
    if pickles:
        pf = d / "model_actv" / "PickleNet"
        pf.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(ids):
            with open(pf / f"{s}_activations.pkl", "wb") as fh:
                pickle.dump({"a": acts["early"][i], "b": acts["middle"][i]}, fh)
    (d / "fastenc_models.json").write_text(json.dumps(MODELS_JSON))
    (d / "vision.toml").write_text('name = "vision"\nresponses = "responses.npy"\n'
                                   'stimulus_ids = "stimuli.csv:stimulus_id"\ntargets = "targets.csv"\n'
                                   f'[splits]\nscheme = "kfold"\nk = {K}\nseed = 0\n')
    return d / "vision.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("vision")
    manifest = _write_dataset(d / "data")
    out = d / "out"
    res = fastenc.run_all(datasets=[manifest], out=out, progress=False, figures=False)
    return manifest, out, res


def test_planted_truth_middle_layer_best_and_permuted_lower(run):
    manifest, out, res = run
    tabs = res.datasets["vision"]
    am = pd.read_csv(out / "dataset-vision_across-models.csv")
    pd.testing.assert_frame_equal(am, tabs.across_models, check_dtype=False)
    allr = am[am["roi"] == "all"].set_index("randnetw")
    assert allr.loc[False, "best_layer"] == "middle" and allr.loc[False, "best_layer_share"] > 0.8
    assert allr.loc[False, "score_mean"] > 0.5 > 0.1 > allr.loc[True, "score_mean"]
    assert set(am["roi"]) == {"all", "V1", "IT"} and (am["unit"] == "participants").all()
    assert (am["metric"] == "r2_test_c").all() and (am["n_units"] == 2).all()
    lay = pd.read_csv(out / "dataset-vision_layers.csv")
    for (rn, p, r), g in lay.groupby(["randnetw", "participant", "roi"]):
        if not rn:  # the middle layer has the highest median score everywhere
            assert g.set_index("layer")["median_r2_test_c"].idxmax() == "middle", (p, r)
    assert set(lay["participant"]) == {"all", "P1", "P2"} and set(lay["roi"]) == {"all", "V1", "IT"}
    sub = pd.read_csv(out / "dataset-vision_subject-scores.csv")
    assert len(sub) == 2 * 3 * 2 and (sub[~sub["randnetw"]]["best_layer"] == "middle").all()
    units = res.regression_units
    assert set(units["target"]) == {"dataset-vision"} and len(units) == 6 and (units["status"] == "done").all()
    assert sorted(res.tables) == sorted(f"dataset-vision_{t}" for t in
                                        ("layers", "across-layers", "across-models", "target-scores",
                                         "subject-scores"))


def test_stored_units_and_tables_against_references(run):
    manifest, out, res = run
    ds = load_dataset(manifest)
    store = fastenc.study.StudyStore(out)
    X = {}
    with h5py.File(manifest.parent / "model_actv/PlantNet/natsound_activations.h5", "r") as f:
        for layer in LAYERS:
            X[layer] = f[layer][()]
    for layer in LAYERS:
        unit = store.read("dataset-vision", "PlantNet", False, layer)
        np.testing.assert_array_equal(unit["r2_test_c"], ds.score_layer(X[layer]).r2_test_c)
    # brute force: plain ridge refits for every left-out stimulus and alpha, two targets, one fold
    r2c = store.read("dataset-vision", "PlantNet", False, "middle")["r2_test_c"]
    train, test = np.flatnonzero(ds.splits[0]), np.flatnonzero(~ds.splits[0])
    Y = np.load(manifest.parent / "responses.npy")
    floors = (naive.critical_r_bisect(len(train)), naive.critical_r_bisect(len(test)))
    for t in (0, 17):
        ref = naive.score_voxel_split(X["middle"], Y[:, t, :], train, test, floors=floors)
        assert r2c[t, 0] == pytest.approx(ref["r2_test_c"], abs=1e-8)
    # the layers table: explicit pandas medians over targets of each target's clipped median
    rows = []
    tg = pd.read_csv(manifest.parent / "targets.csv")
    for rn in (False, True):
        for li, layer in enumerate(LAYERS):
            u = store.read("dataset-vision", "PlantNet", rn, layer)
            d = tg.assign(c=np.minimum(np.median(u["r2_test_c"], axis=1), 1.0), r=np.median(u["r_test"], axis=1))
            for keys in ([], ["participant"], ["roi"], ["participant", "roi"]):
                for k, g in (d.groupby(keys) if keys else [((), d)]):
                    k = dict(zip(keys, k if isinstance(k, tuple) else (k,)))
                    rows.append({"randnetw": rn, "layer": layer, "participant": k.get("participant", "all"),
                                 "roi": k.get("roi", "all"), "c": g["c"].median(), "r": g["r"].median()})
    ref = pd.DataFrame(rows).set_index(["randnetw", "layer", "participant", "roi"]).sort_index()
    got = pd.read_csv(out / "dataset-vision_layers.csv").set_index(
        ["randnetw", "layer", "participant", "roi"]).sort_index()
    np.testing.assert_allclose(got["median_r2_test_c"].to_numpy(), ref["c"].to_numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["median_r_test"].to_numpy(), ref["r"].to_numpy(), rtol=1e-12, atol=0)
    # headline: per participant the best layer on independent splits of the stored values
    vals = np.stack([store.read("dataset-vision", "PlantNet", False, lay)["r2_test_c"] for lay in LAYERS])
    best = A.best_layer_any_splits(vals, tg["participant"].to_numpy(dtype=object))
    sub = pd.read_csv(out / "dataset-vision_subject-scores.csv")
    sub = sub[(sub["roi"] == "all") & ~sub["randnetw"]].set_index("participant")["score"]
    np.testing.assert_allclose(sub.loc[["P1", "P2"]].to_numpy(), best.subject_scores.loc[["P1", "P2"]].to_numpy(),
                               rtol=1e-12)
    am = pd.read_csv(out / "dataset-vision_across-models.csv")
    trained = am[(am["roi"] == "all") & ~am["randnetw"]].iloc[0]
    assert trained["score_mean"] == pytest.approx(best.subject_scores.mean(), rel=1e-12)
    ts = pd.read_csv(out / "dataset-vision_target-scores.csv")
    ts = ts[~ts["randnetw"]].sort_values("target_id")
    np.testing.assert_allclose(ts["score"].to_numpy(), best.voxel_scores.mean(axis=0), rtol=1e-12)
    modes = [LAYERS[int(np.bincount(best.best_layer[:, j]).argmax())] for j in range(vals.shape[1])]
    assert ts["best_layer"].tolist() == modes


def _naive_best_layer(values, subj, n_iter=10):
    """docs/method.md §5 written out for S splits: per iteration i, per layer and target a fresh
    random half (S // 2) of the splits from RandomState(i) for selection, the rest for readout."""
    L, V, S = values.shape
    scores = np.empty((n_iter, V))
    for i in range(n_iter):
        keys = np.random.RandomState(i).random_sample((L, V, S))
        sel, rd = np.empty((L, V)), np.empty((L, V))
        for layer in range(L):
            for v in range(V):
                chosen = sorted(np.argsort(keys[layer, v], kind="stable")[: S // 2])
                rest = [s for s in range(S) if s not in chosen]
                sel[layer, v] = min(np.median(values[layer, v, chosen]), 1.0)
                rd[layer, v] = min(np.median(values[layer, v, rest]), 1.0)
        rs = np.random.RandomState(0)
        for v in range(V):
            top = np.flatnonzero(sel[:, v] == sel[:, v].max())
            b = top[0] if len(top) == 1 else rs.choice(top)
            scores[i, v] = rd[b, v]
    return {s: np.mean([np.median(scores[i, subj == s]) for i in range(n_iter)]) for s in np.unique(subj)}


def test_best_layer_any_splits_against_literal_loop():
    rs = np.random.RandomState(3)
    vals = np.round(rs.rand(3, 12, 5) * 1.3, 1)  # rounded: ties between layers happen
    subj = np.repeat([0, 1, 2], 4)
    got = A.best_layer_any_splits(vals, subj)
    ref = _naive_best_layer(vals, subj)
    np.testing.assert_allclose(got.subject_scores.to_numpy(), [ref[s] for s in range(3)], rtol=1e-12)
    # no participants: each target is its own unit
    per_target = A.best_layer_any_splits(vals, None).subject_scores.to_numpy()
    np.testing.assert_allclose(per_target, got.voxel_scores.mean(axis=0), rtol=1e-12)
    # 10 splits: the study's procedure, bit for bit
    v10 = rs.rand(3, 12, 10)
    pd.testing.assert_series_equal(A.best_layer_any_splits(v10, subj).subject_scores,
                                   A.best_layer_independent_splits(v10, subj).subject_scores)
    with pytest.raises(ValueError):
        A.best_layer_any_splits(vals[:, :, :1], subj)


def _mtimes(out):
    return {p: p.stat().st_mtime_ns for p in sorted((out / "regression").rglob("*.h5"))}


def test_second_run_reuses_and_changed_responses_recompute(run, tmp_path):
    manifest, out0, _ = run
    data = tmp_path / "data"
    shutil.copytree(manifest.parent, data)
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    before = _mtimes(out)
    res = fastenc.run_all(datasets=[data / "vision.toml"], out=out, progress=False, figures=False)
    assert (res.regression_units["status"] == "skipped").all() and _mtimes(out) == before
    assert not (out / "fastenc.log").exists()
    Y = np.load(data / "responses.npy")
    Y[0, 0, 0] += 1.0
    np.save(data / "responses.npy", Y)
    res = fastenc.run_all(datasets=[data / "vision.toml"], out=out, progress=False, figures=False)
    assert (res.regression_units["status"] == "recomputed").all()
    assert set(res.regression_units["reason"]) == {"neural data changed"}
    log = (out / "fastenc.log").read_text()
    assert "dataset-vision/PlantNet_randnetw/late: recomputed (neural data changed)" in log
    fresh = fastenc.run_all(datasets=[data / "vision.toml"], out=tmp_path / "fresh", progress=False, figures=False)
    for name, df in fresh.tables.items():
        assert (out / f"{name}.csv").read_bytes() == (tmp_path / "fresh" / f"{name}.csv").read_bytes(), name
        pd.testing.assert_frame_equal(res.tables[name], df)


@pytest.fixture()
def small(tmp_path):
    return _write_dataset(tmp_path / "small", n=40, per=1, pickles=True)


def test_pickles_are_read_by_the_manifest_ids(small, tmp_path):
    (small.parent / "p.toml").write_text(small.read_text() + "")
    text = small.read_text().replace('name = "vision"', 'name = "pick"\nmodels = ["PickleNet"]')
    (small.parent / "p.toml").write_text(text)
    res = fastenc.run_all(datasets=[small.parent / "p.toml"], out=tmp_path / "o", progress=False, figures=False)
    ds = load_dataset(small.parent / "p.toml")
    with h5py.File(small.parent / "model_actv/PlantNet/natsound_activations.h5", "r") as f:
        X = f["middle"][()]
    stored = fastenc.study.StudyStore(tmp_path / "o").read("dataset-pick", "PickleNet", False, "b")
    np.testing.assert_array_equal(stored["r2_test_c"], ds.score_layer(X).r2_test_c)
    assert list(res.datasets["pick"].across_models["source_model"].unique()) == ["PickleNet"]


def test_no_participants_one_repetition_targets_are_the_units(small, tmp_path):
    d = small.parent
    np.save(d / "responses1.npy", np.load(d / "responses.npy")[:, :, :1])
    (d / "plain.toml").write_text('name = "plain"\nresponses = "responses1.npy"\n'
                                  'stimulus_ids = "stimuli.csv:stimulus_id"\nmodels = ["PlantNet"]\n'
                                  '[splits]\nscheme = "kfold"\nk = 5\n')
    res = fastenc.run_all(datasets=[d / "plain.toml"], out=tmp_path / "o", progress=False)
    tabs = res.datasets["plain"]
    assert tabs.metric == "r2_test" and tabs.subject_scores is None and tabs.rois == []
    am = tabs.across_models
    assert (am["unit"] == "targets").all() and (am["n_units"] == 4).all() and (am["metric"] == "r2_test").all()
    ts = tabs.target_scores
    for rn, g in ts.groupby("randnetw"):
        row = am[am["randnetw"] == rn].iloc[0]
        assert row["score_mean"] == pytest.approx(g["score"].mean(), rel=1e-12)
        assert row["score_sem_between"] == pytest.approx(g["score"].std(ddof=0) / np.sqrt(len(g) - 1), rel=1e-12)
    assert "median_r2_test_c" not in tabs.layers and {"median_r2_test", "median_r_test"} <= set(tabs.layers)
    figs = sorted(p.name for p in (tmp_path / "o" / "figures").glob("*.png"))
    assert figs == ["dataset-plain_across-layers.png", "dataset-plain_across-models.png"]


def test_errors_name_the_file(small, tmp_path):
    d = small.parent

    def run_with(text, name="bad.toml"):
        (d / name).write_text(text)
        fastenc.run_all(datasets=[d / name], out=tmp_path / "o", progress=False, figures=False)

    base = small.read_text()
    h5 = d / "model_actv/PlantNet/natsound_activations.h5"
    # activation rows != stimuli
    with h5py.File(h5, "a") as f:
        good = f["late"][()]
        del f["late"]
        f.create_dataset("late", data=good[:39])
    with pytest.raises(ValueError, match=r"natsound_activations\.h5.*layer 'late'.*39 rows; expected 40"):
        run_with(base.replace('name = "vision"', 'name = "v"\nmodels = ["PlantNet"]'))
    with h5py.File(h5, "a") as f:
        del f["late"]
        f.create_dataset("late", data=good)
    # a pickle set missing one stimulus id
    os.remove(d / "model_actv/PickleNet/img0007_activations.pkl")
    with pytest.raises(FileNotFoundError, match=r"1 of 40 per-stimulus file\(s\) missing.*img0007_activations\.pkl"):
        run_with(base)
    # a missing activation file of a model the manifest asks for
    os.remove(d / "model_actv/PlantNet/natsound_activations_randnetw.h5")
    os.remove(h5)
    with pytest.raises(FileNotFoundError, match=r"no activations of model 'PlantNet'.*natsound_activations\.h5"):
        run_with(base.replace('name = "vision"', 'name = "v"\nmodels = ["PlantNet"]'))
    with pytest.raises(FileNotFoundError, match=r"no activations of model 'PlantNet'"):
        run_with(base)  # its folder is there: not skipped in silence
    # an unknown model: named in the manifest, or a folder the registry does not know
    with pytest.raises(ValueError, match=r"bad\.toml.*unknown model or model set 'NoSuchNet'.*fastenc_models\.json"):
        run_with(base.replace('name = "vision"', 'name = "v"\nmodels = ["NoSuchNet"]'))
    (d / "model_actv/Mystery").mkdir()
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['Mystery'\].*fastenc_models\.json"):
        run_with(base)
    # a missing activations folder, and a missing manifest
    with pytest.raises(FileNotFoundError, match=r"activations folder .*elsewhere does not exist"):
        run_with(base.replace('name = "vision"', 'name = "v"\nactivations = "elsewhere"'))
    with pytest.raises(FileNotFoundError, match="dataset manifest not found"):
        fastenc.run_all(datasets=[d / "nothing.toml"], out=tmp_path / "o", progress=False)
    # the stimulus ids must match the rows of the responses
    pd.DataFrame({"stimulus_id": [f"img{i:04d}" for i in range(39)]}).to_csv(d / "stimuli.csv", index=False)
    with pytest.raises(ValueError, match="39 stimulus ids but the responses have 40 rows"):
        run_with(base)


def test_cli_dataset_only_writes_tables_figures_and_report(small, tmp_path, monkeypatch, capsys):
    from fastenc.cli import main
    monkeypatch.setenv("FASTENC_CACHE", str(tmp_path / "cache"))
    text = small.read_text().replace('name = "vision"', 'name = "vision"\nmodels = ["PlantNet"]')
    small.write_text(text)
    out = tmp_path / "out"
    assert main(["run-all", "--dataset", str(small), "--out", str(out), "--quiet"]) == 0
    assert not (tmp_path / "cache").exists()  # the demo was not built
    assert "dataset-vision_across-models" in capsys.readouterr().out
    for name in ("layers", "across-layers", "across-models", "target-scores", "subject-scores"):
        assert (out / f"dataset-vision_{name}.csv").is_file()
    for fig in ("across-models", "across-layers", "across-layers-roi"):
        assert (out / "figures" / f"dataset-vision_{fig}.png").is_file()
    assert "dataset-vision_rsa: RSA is not run" in (out / "figures" / "SKIPPED.txt").read_text()
    page = (out / "report.html").read_text()
    assert "dataset-vision_across-models" in page and "dataset vision" in page and "Your datasets" in page
    assert not list(out.glob("across-models_*.csv"))  # no study
    assert "No across-model table was written" not in page  # the dataset's table is the headline
    assert "dataset vision: median r2_test_c at the best layer" in page


def test_study_and_dataset_in_one_run(small, tmp_path):
    from fastenc.datasets import make_demo
    root = make_demo(tmp_path / "demo")
    small.write_text(small.read_text().replace('name = "vision"', 'name = "vision"\nmodels = ["PlantNet"]'))
    res = fastenc.run_all(root, tmp_path / "out", models=["spectemp"], targets=["NH2015"], rsa=False,
                          figures=False, progress=False, datasets=[small])
    assert set(res.regression_units["target"]) == {"NH2015", "dataset-vision"}
    assert (tmp_path / "out" / "across-models_NH2015.csv").is_file()
    assert (tmp_path / "out" / "dataset-vision_across-models.csv").is_file()
    assert "across-models_NH2015" in res.tables and "dataset-vision_layers" in res.tables


def test_cli_regress_dataset_units_are_reused_by_run_all(small, tmp_path, monkeypatch, capsys):
    """`regress --dataset` computes a dataset's units only (no study, no demo); run-all then reuses
    every one of them, and `regress` with the study and a dataset computes both."""
    from fastenc.cli import main
    from fastenc.datasets import make_demo
    monkeypatch.setenv("FASTENC_CACHE", str(tmp_path / "cache"))
    small.write_text(small.read_text().replace('name = "vision"', 'name = "vision"\nmodels = ["PlantNet"]'))
    out = tmp_path / "out"
    assert main(["regress", "--dataset", str(small), "--out", str(out), "--quiet"]) == 0
    assert not (tmp_path / "cache").exists()  # the demo was not built
    printed = capsys.readouterr().out
    assert "dataset-vision" in printed and "done" in printed and "NH2015" not in printed
    res = fastenc.run_all(datasets=[small], out=out, progress=False, figures=False)
    units = res.regression_units
    assert len(units) == 2 * len(LAYERS) and set(units["status"]) == {"skipped"}
    both = fastenc.study.run_regression(make_demo(tmp_path / "demo"), tmp_path / "out2", models=["spectemp"],
                                        targets=["NH2015"], progress=False, datasets=[small])
    assert set(both["target"]) == {"NH2015", "dataset-vision"} and set(both["status"]) == {"done"}
