"""run_all on the embedded demo recovers the planted truth (fastenc.datasets.DEMO_TRUTH)."""
import numpy as np
import pandas as pd
import pytest

import fastenc
from fastenc.datasets import make_demo
from fastenc import run_all


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_demo(root / "demo")
    out = root / "out"
    tables = run_all(data, out, progress=False)
    return data, out, tables


ROI_COLUMNS = ["source_model", "randnetw", "roi", "rel_pos_mean", "rel_pos_yerr", "n_participants"]
DEMO_POOL = "DemoCNN;DemoTransformer"


def test_outputs_written(study):
    import matplotlib.pyplot as plt
    _, out, results = study
    drawn = set(results.figures)
    assert drawn == set((out / "figures").glob("*.png"))
    assert len(drawn) == 2 * 8 + 1                    # 8 per neural target + the components
    assert set(results.tables) == {p.stem for p in out.glob("*.csv")}   # every table by its file name
    pd.testing.assert_frame_equal(results.tables["across-models_NH2015"], pd.read_csv(out / "across-models_NH2015.csv"),
                                  check_exact=False, rtol=1e-15)
    for t in ("NH2015", "B2021"):
        df = pd.read_csv(out / f"across-models_{t}.csv")
        assert {"source_model", "randnetw", "median_r2_test_c_mean", "median_r2_test_c_yerr",
                "pooled_models", "model_set"} <= set(df.columns)
        # the demo's models are its own: none of FIG_2_5_MODEL_LIST is present, all present are pooled
        assert (df["pooled_models"] == f"{DEMO_POOL};spectemp").all()
        assert df["model_set"].str.contains("none of FIG_2_5_MODEL_LIST present").all()
        rsa = pd.read_csv(out / f"rsa_across-models_{t}.csv")
        assert {"source_model", "randnetw", "roi", "rsa_mean", "rsa_yerr", "noise_ceiling",
                "noise_ceiling_yerr", "pooled_models"} <= set(rsa.columns)
        assert set(rsa["roi"]) == {"All", "Primary", "Lateral", "Posterior", "Anterior"}
        roi = pd.read_csv(out / f"rsa_roi-vs-roi_{t}.csv")
        assert roi.columns[0] == "roi" and list(roi["roi"]) == ["Primary", "Lateral", "Posterior", "Anterior"]
        M = roi.set_index("roi").to_numpy()
        np.testing.assert_allclose(np.diag(M), 1.0)
        np.testing.assert_allclose(M, M.T)
        assert (np.abs(M) <= 1).all()
        for name in (f"best-layer-roi_{t}.csv", f"rsa_best-layer-roi_{t}.csv"):
            b = pd.read_csv(out / name)
            assert list(b.columns[:6]) == ROI_COLUMNS, name
            assert set(b["randnetw"]) == {False, True}, name           # trained and permuted networks
            assert len(b) == 2 * 2 * 4 and (b["pooled_models"] == DEMO_POOL).all(), name
            assert b["model_set"].str.contains("none of FIG_7_MODEL_LIST present").all()
            assert b["rel_pos_mean"].between(0, 1).all() and (b["rel_pos_yerr"] >= 0).all()
            w = pd.read_csv(out / name.replace("best-layer-roi_", "best-layer-roi-wilcoxon_"))
            assert len(w) == 2 * 6 and {"roi_1", "roi_2", "statistic", "p_value", "n_models"} <= set(w.columns)
            assert {("Anterior", "Lateral"), ("Lateral", "Posterior")} <= set(zip(w["roi_1"], w["roi_2"]))
        for fig in ("across-models", "across-layers", "best-layer-roi", "best-layer-roi_randnetw",
                    "rsa_across-models", "rsa_roi-matrices", "rsa_best-layer-roi", "rsa_best-layer-roi_randnetw"):
            png = out / "figures" / f"{fig}_{t}.png"
            assert png in drawn and png.with_suffix(".pdf").is_file()
            img = plt.imread(png)
            assert img.ndim == 3 and min(img.shape[:2]) >= 200 and img[..., :3].std() > 0.05  # not blank
    comp = pd.read_csv(out / "across-models_NH2015comp.csv")
    assert {"median_r2_test_mean", "median_r2_test_yerr"} <= set(comp.columns)


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
def test_trained_beat_spectemp_beat_permuted(study, target):
    _, _, tables = study
    df = tables.regression[target].across_models.set_index(["source_model", "randnetw"])["median_r2_test_c_mean"]
    st = df[("spectemp", False)]
    for m in ("DemoCNN", "DemoTransformer"):
        assert df[(m, False)] > st > df[(m, True)]


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
@pytest.mark.parametrize("kind", ["", "rsa_"])
def test_non_primary_rois_prefer_deeper_layers(study, target, kind):
    """Planted truth: Primary voxels peak at early layers, the other ROIs at deeper ones (trained
    networks), by regression and by RSA."""
    _, out, _ = study
    roi = pd.read_csv(out / f"{kind}best-layer-roi_{target}.csv")
    trained = roi[~roi["randnetw"]].set_index(["source_model", "roi"])["rel_pos_mean"]
    for m in ("DemoCNN", "DemoTransformer"):
        assert trained[(m, "Primary")] <= 0.25, m
        for r in ("Anterior", "Lateral", "Posterior"):
            assert trained[(m, r)] > trained[(m, "Primary")] + 0.2, (m, r)
    n = roi.set_index(["source_model", "randnetw", "roi"])["n_participants"]
    assert (n == (8 if target == "NH2015" else 20)).all()


def test_rsa_best_layer_per_roi_is_the_all_sounds_argmax(study):
    """rsa_best-layer-roi: per participant the nanargmax over layers of the Spearman between RSMs
    of all 165 sounds (slow reference: tests/naive_rsa.py), mean over participants."""
    from fastenc.io import load_neural, open_model

    from . import naive_rsa
    data, out, _ = study
    nd = load_neural(data, "NH2015")
    Ym = nd.Y.mean(axis=2)
    subj = nd.roi_meta["subj_idx"].to_numpy()
    lab = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
    with open_model(data, "DemoTransformer") as acts:
        layers = [X for _, X in acts.iter_layers()]
    per_subj = pd.read_csv(out / "rsa_subject-scores_NH2015.csv")
    per_subj = per_subj[(per_subj.source_model == "DemoTransformer") & ~per_subj.randnetw]
    roi_t = pd.read_csv(out / "rsa_best-layer-roi_NH2015.csv").set_index(["source_model", "randnetw", "roi"])
    for r in ("Primary", "Anterior"):
        rel = []
        for s in np.unique(subj):
            _, _, rp = naive_rsa.all_sounds_best_layer(layers, Ym[:, (subj == s) & (lab == r)])
            rel.append(rp)
            got = per_subj[(per_subj.roi == r) & (per_subj.subj_idx == s)]["best_layer_rel_all_sounds"]
            assert got.item() == pytest.approx(rp), (r, s)
        assert roi_t.loc[("DemoTransformer", False, r), "rel_pos_mean"] == pytest.approx(np.mean(rel))


def test_rsa_roi_vs_roi_is_mean_of_participant_values(study):
    from fastenc.io import load_neural

    from . import naive_rsa
    data, out, _ = study
    nd = load_neural(data, "NH2015")
    Ym = nd.Y.mean(axis=2)
    subj = nd.roi_meta["subj_idx"].to_numpy()
    lab = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
    from fastenc.io import load_stimuli
    order = naive_rsa.category_reorder(load_stimuli(data)["category"].tolist())
    Ym = Ym[order]  # the split masks index the category-ordered sounds (docs/method.md §6)
    rois = {r: {s: Ym[:, (subj == s) & (lab == r)] for s in np.unique(subj)} for r in ("Primary", "Lateral")}
    ref = naive_rsa.roi_vs_roi(rois, masks=naive_rsa.study_split_masks())
    got = pd.read_csv(out / "rsa_roi-vs-roi_NH2015.csv", index_col="roi")
    assert got.loc["Primary", "Lateral"] == pytest.approx(ref[0, 1], abs=1e-10)


def test_rsa_trained_beats_permuted_and_stays_below_ceiling(study):
    _, out, tables = study
    df = tables.rsa["NH2015"].across_models
    allv = df[df["roi"] == "All"].set_index(["source_model", "randnetw"])
    for m in ("DemoCNN", "DemoTransformer"):
        assert allv.loc[(m, False), "rsa_mean"] > allv.loc[(m, True), "rsa_mean"]
        assert allv.loc[(m, False), "rsa_mean"] < allv.loc[(m, False), "noise_ceiling"] + 0.05
    # noise-ceiling band: std / sqrt(participants - 1) of the participants' ceilings
    sub = pd.read_csv(out / "rsa_subject-scores_NH2015.csv")
    nc = sub[sub.roi == "All"].groupby("subj_idx")["noise_ceiling"].first().to_numpy()
    assert allv["noise_ceiling_yerr"].iloc[0] == pytest.approx(np.std(nc) / np.sqrt(len(nc) - 1))
    assert allv["noise_ceiling"].iloc[0] == pytest.approx(nc.mean())


def test_component_scores_follow_planted_depth(study):
    _, _, tables = study
    comp = tables.components["NH2015comp"].across_models
    cnn = comp[(comp["source_model"] == "DemoCNN") & ~comp["randnetw"]].set_index("component")
    assert cnn.loc["lowfreq", "best_layer"] in ("conv1", "conv2")
    assert cnn.loc["speech", "best_layer"] in ("conv4", "conv5", "fc")


def test_stored_unit_matches_score_layer(study):
    data, out, _ = study
    from fastenc.io import load_neural, open_model
    from fastenc.store import ResultStore
    X = open_model(data, "DemoCNN").load_layer("conv3")
    s = fastenc.score_layer(X, load_neural(data, "NH2015").Y)
    stored = ResultStore(out).read("NH2015", "DemoCNN", False, "conv3")
    np.testing.assert_array_equal(stored["r2_test_c"], s.r2_test_c)


def test_second_run_reuses_everything(study):
    data, out, _ = study
    tables = run_all(data, out, progress=False, figures=False, rsa=False)
    assert (tables.regression_units["status"] == "skipped").all()


def test_rsa_corrected_option(study):
    data, out, tables = study
    corr = run_all(data, out, progress=False, figures=False, rsa_corrected=True)
    quirk = tables.rsa["NH2015"].across_models.set_index(["source_model", "randnetw", "roi"])
    fixed = corr.rsa["NH2015"].across_models.set_index(["source_model", "randnetw", "roi"])
    # same model scores; Spearman ceiling instead of Pearson; SEM over participants, not models
    np.testing.assert_allclose(fixed["rsa_mean"], quirk.loc[fixed.index, "rsa_mean"])
    assert not np.allclose(fixed["noise_ceiling"], quirk.loc[fixed.index, "noise_ceiling"])
    assert (out / "rsa-corrected").is_dir()
    # RSA best layer per ROI: same positions; error over participants (sqrt(8 - 1)) instead of
    # over models (sqrt(2 - 1), the study's quirk)
    key = ["source_model", "randnetw", "roi"]
    q = tables.rsa["NH2015"].best_layer_roi.set_index(key)
    c = corr.rsa["NH2015"].best_layer_roi.set_index(key).loc[q.index]
    np.testing.assert_allclose(c["rel_pos_mean"], q["rel_pos_mean"])
    np.testing.assert_allclose(c["rel_pos_yerr"] * np.sqrt(8 - 1), q["rel_pos_yerr"] * np.sqrt(2 - 1), atol=1e-12)


def test_model_comparisons_report_resample_p_values(study):
    _, out, _ = study
    for name in ("model-comparisons_NH2015comp.csv", "model-comparisons_NH2015.csv", "model-comparisons_B2021.csv"):
        df = pd.read_csv(out / name)
        assert {"model_1", "model_2", "p_value", "p_value_study", "n_resamples"} <= set(df.columns), name
        assert (df["n_resamples"] == 10000).all()
        # never 0: (k + 1) / (N + 1) for k resamples at least as extreme; the study's k / N beside it
        k = df["p_value"].to_numpy() * 10001 - 1
        np.testing.assert_allclose(k, np.round(k), atol=1e-6)
        assert (np.round(k) >= 0).all() and (np.round(k) <= 10000).all()
        np.testing.assert_allclose(df["p_value_study"], np.round(k) / 10000, atol=1e-12)
        tvp = df[df["comparison"] == "trained vs permuted"]
        assert len(tvp) and (tvp["p_value"] == 1 / 10001).all() and (tvp["p_value_study"] == 0).all()
    comp = pd.read_csv(out / "model-comparisons_NH2015comp.csv")
    assert set(comp["component"]) == {"lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"}


def test_missing_target_folder_and_single_model(tmp_path):
    import shutil
    root = make_demo(tmp_path / "demo")
    shutil.rmtree(root / "data" / "neural" / "B2021")
    tables = run_all(root, tmp_path / "out", models=["spectemp"], progress=False, figures=False)
    assert "across-models_B2021" not in tables  # default targets: those present
    df = tables.regression["NH2015"].across_models
    assert df["source_model"].tolist() == ["spectemp"] and df["median_r2_test_c_mean"].iloc[0] > 0
    with pytest.raises(FileNotFoundError, match="B2021"):
        run_all(root, tmp_path / "out", models=["spectemp"], targets=["B2021"], progress=False)
