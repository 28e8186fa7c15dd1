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
#: figures per neural target added by issue #10: preferred-layer histogram, ED vs score (trained
#: and permuted in one), across-layers per ROI, RSA per ROI
NEW_FIGURES = 4
#: consistency across models, across layers; component predictions; voxel maps of the median over models
NEW_STUDY_FIGURES = 4
#: the demo's model versions: each has its voxel maps (both targets in one figure)
DEMO_VERSIONS = [("DemoCNN", False), ("DemoTransformer", False), ("spectemp", False), ("DemoCNN", True),
                 ("DemoTransformer", True)]
DEMO_POOL = "DemoCNN;DemoTransformer"


def test_outputs_written(study):
    import matplotlib.pyplot as plt
    _, out, results = study
    drawn = set(results.figures)
    assert drawn == set((out / "figures").glob("*.png"))
    assert len(drawn) == 2 * (8 + NEW_FIGURES) + 1 + NEW_STUDY_FIGURES + len(DEMO_VERSIONS)
    # every table by its file name (the per-voxel tables are streamed to disk, not held)
    assert set(results.tables) | set(results.streamed_tables) == {p.stem for p in out.glob("*.csv")}
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
            assert png in drawn and not png.with_suffix(".pdf").exists()  # PDFs only with pdf=True
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


def test_component_predictions_stored_and_plotted(study):
    """The component units hold score_layer's test predictions; component-predictions_NH2015comp
    is their mean over the test splits at each component's most frequent best layer, against the
    measured responses; the figure is drawn, and the demo's planted signal is predicted."""
    data, out, results = study
    from fastenc.io import load_neural, open_model, load_stimuli
    from fastenc.study.store import StudyStore
    Y = load_neural(data, "NH2015comp").Y
    X = open_model(data, "DemoCNN").load_layer("conv3")
    s = fastenc.score_layer(X, Y, return_predictions=True)
    stored = StudyStore(out).read("NH2015comp", "DemoCNN", False, "conv3")
    np.testing.assert_array_equal(stored["predictions"], s.predictions)
    np.testing.assert_array_equal(stored["r2_test"], s.r2_test)
    assert "predictions" not in StudyStore(out).read("NH2015", "DemoCNN", False, "conv3")
    pred = pd.read_csv(out / "component-predictions_NH2015comp.csv")
    pd.testing.assert_frame_equal(pred, results.components["NH2015comp"].predictions, check_exact=False, rtol=1e-15)
    comp = results.components["NH2015comp"].across_models
    stim = load_stimuli(data)
    names = list(load_neural(data, "NH2015comp").target_names)
    for (m, rn, c), g in pred.groupby(["source_model", "randnetw", "component"]):
        layer = comp[(comp.source_model == m) & (comp.randnetw == rn) & (comp.component == c)]["best_layer"].item()
        assert (g["layer"] == layer).all() and len(g) == 165
        assert list(g["stim_id"]) == list(stim["stim_id"]) and list(g["category"]) == list(stim["category"])
        P = StudyStore(out).read("NH2015comp", m, rn, layer, names=["predictions"])["predictions"][names.index(c)]
        tested = np.isfinite(P)
        np.testing.assert_array_equal(g["n_test_splits"], tested.sum(axis=0))
        mean = np.array([P[tested[:, i], i].mean() if tested[:, i].any() else np.nan for i in range(165)])
        np.testing.assert_allclose(g["predicted"], mean, rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(g["measured"], Y[:, names.index(c)])
    r = {k: np.corrcoef(g["measured"], g["predicted"])[0, 1]
         for k, g in pred.dropna().groupby(["source_model", "randnetw", "component"])}
    for m in ("DemoCNN", "DemoTransformer"):
        assert min(r[(m, False, c)] for c in names) > 0.6, m  # trained networks predict every component
        for c in ("speech", "music"):  # the category-driven components need trained features
            assert r[(m, False, c)] > r[(m, True, c)] + 0.4, (m, c)
    png = out / "figures" / "component-predictions_NH2015comp.png"
    assert png in set(results.figures)


def test_stored_unit_matches_score_layer(study):
    data, out, _ = study
    from fastenc.io import load_neural, open_model
    from fastenc.study.store import ResultStore
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


# --------------------------------------------------------------------------------------
# voxel maps (issue #10, paper Fig. 6)
# --------------------------------------------------------------------------------------
VOXEL_COLUMNS = ["source_model", "randnetw", "voxel_id", "subj_idx", "hemi", "x_ras", "y_ras", "pos", "rel_pos",
                 "best_median_r2_test_c"]


def _r2c(out, target, model, randnetw, layers):
    from fastenc.study.store import StudyStore
    return np.stack([StudyStore(out).read(target, model, randnetw, layer, names=["r2_test_c"])["r2_test_c"]
                     for layer in layers])


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
def test_voxel_best_layer_is_argmax_of_clipped_medians(study, target):
    """First principles for one model: per voxel the median over splits per layer, clipped at 1,
    argmax over layers (1-based pos); explicit loop over voxels and layers."""
    from fastenc.io import load_neural
    from fastenc.registry import load_registry
    data, out, results = study
    t = pd.read_csv(out / f"voxel-best-layer_{target}.csv")
    assert list(t.columns[:10]) == VOXEL_COLUMNS
    nd = load_neural(data, target)
    layers = load_registry(data).layers("DemoCNN")
    vals = _r2c(out, target, "DemoCNN", False, layers)
    got = t[(t.source_model == "DemoCNN") & ~t.randnetw].reset_index(drop=True)
    assert len(got) == vals.shape[1] == len(nd.roi_meta)
    n_ties = 0
    np.random.seed(0)  # the study's tie rule (METHOD §5): seed 0, a draw per tied voxel in order
    for v in range(vals.shape[1]):
        med = [min(float(np.median(vals[li, v, :])), 1.0) for li in range(len(layers))]
        best = max(med)
        tied = [li for li, m in enumerate(med) if m == best]
        if len(tied) > 1:
            n_ties += 1
            assert got.loc[v, "pos"] - 1 == np.random.choice(tied), v
        else:
            assert got.loc[v, "pos"] - 1 == tied[0], v
        assert got.loc[v, "best_median_r2_test_c"] == best
        assert got.loc[v, "rel_pos"] == pytest.approx((got.loc[v, "pos"] - 1) / (len(layers) - 1))
        assert got.loc[v, "layer"] == layers[got.loc[v, "pos"] - 1]
    assert n_ties < vals.shape[1] // 10  # a few voxels tie at the clip (r2_c >= 1 in two layers)
    meta = nd.roi_meta
    np.testing.assert_array_equal(got["voxel_id"], meta["voxel_id"])
    np.testing.assert_array_equal(got["x_ras"], meta["x_ras"])
    assert (got["hemi"] == meta["hemi"].astype(str)).all()
    # every model version, once per voxel
    assert len(t) == len(meta) * 5 and set(t.source_model) == {"DemoCNN", "DemoTransformer", "spectemp"}


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
def test_voxel_maps_non_primary_prefer_deeper_layers(study, target):
    """Planted truth in the maps: non-primary voxels prefer deeper layers than primary voxels
    (trained networks), per voxel and in the median-over-models surface."""
    from fastenc.io import load_neural
    data, out, results = study
    t = pd.read_csv(out / f"voxel-best-layer_{target}.csv")
    roi = load_neural(data, target).roi_meta.set_index("voxel_id")["roi_label_general"]
    t["roi"] = roi.reindex(t["voxel_id"]).to_numpy()
    for m in ("DemoCNN", "DemoTransformer"):
        d = t[(t.source_model == m) & ~t.randnetw]
        prim = d.loc[d.roi == "Primary", "rel_pos"].mean()
        non = d.loc[d.roi.isin(["Anterior", "Lateral", "Posterior"]), "rel_pos"].mean()
        assert non > prim + 0.2, (m, prim, non)
    # the median over models per coordinate: coordinates of primary voxels are shallower
    med = results.voxels[target].model_surface
    med = med[~med.randnetw]
    vox = t[(t.source_model == "DemoCNN") & ~t.randnetw].copy()
    vox["coord_id"] = [f"{int(x)}_{int(y)}" for x, y in zip(vox.x_ras, vox.y_ras)]
    prim_coords = set(zip(vox.loc[vox.roi == "Primary", "hemi"], vox.loc[vox.roi == "Primary", "coord_id"]))
    is_prim = np.array([(h, c) in prim_coords for h, c in zip(med.hemi, med.coord_id)])
    assert med.loc[~is_prim, "rel_pos"].mean() > med.loc[is_prim, "rel_pos"].mean() + 0.2


def test_voxel_surfaces_are_medians_over_subjects_then_models(study):
    """voxel-median-subject: per (hemi, integer x, y) the median over the voxels there;
    voxel-median-model: the median over the pooled models of those (explicit loops)."""
    _, out, results = study
    t = pd.read_csv(out / "voxel-best-layer_NH2015.csv")
    subj = pd.read_csv(out / "voxel-median-subject_NH2015.csv")
    med = pd.read_csv(out / "voxel-median-model_NH2015.csv")
    per_model = {}
    for m in ("DemoCNN", "DemoTransformer"):
        d = t[(t.source_model == m) & ~t.randnetw]
        s = subj[(subj.source_model == m) & ~subj.randnetw].set_index(["hemi", "coord_id"])
        groups = {}
        for h, x, y, p, r in zip(d.hemi, d.x_ras, d.y_ras, d.pos, d.rel_pos):
            groups.setdefault((h, f"{int(x)}_{int(y)}"), []).append((p, r))
        assert len(groups) == len(s)
        for key, vs in groups.items():
            assert s.loc[key, "pos"] == np.median([p for p, _ in vs])
            assert s.loc[key, "rel_pos"] == pytest.approx(np.median([r for _, r in vs]))
            assert s.loc[key, "n_voxels"] == len(vs)
        per_model[m] = s["rel_pos"]
    mm = med[~med.randnetw].set_index(["hemi", "coord_id"])
    assert (mm["pooled_models"] == DEMO_POOL).all() and (mm["n_models"] == 2).all()
    for key in list(mm.index)[:50]:
        assert mm.loc[key, "rel_pos"] == pytest.approx(np.median([per_model[m][key] for m in per_model]))


def test_version_voxel_maps_are_drawn_early_from_the_voxel_tables_numbers(study, tmp_path):
    """Each model version's voxel maps are drawn while the study computes (a figure helper, as
    soon as the version's units are stored: before the analysis tables exist), from the numbers
    of voxel-median-subject / voxel-layer-counts; the same figure drawn from those tables is
    pixel-identical."""
    import matplotlib.pyplot as plt
    from fastenc.study.figures import (_cores, _version_page, version_label, version_map_job,
                                       version_map_name)
    from fastenc.study.plan import build_plan
    from fastenc.study.voxels import version_surfaces
    data, out, results = study
    for m, rn in DEMO_VERSIONS:
        assert out / "figures" / f"{version_map_name(m, rn)}.png" in set(results.figures)
    if _cores() >= 2:  # with a helper: the first version's maps were written during the regression
        first = (out / "figures" / f"{version_map_name('DemoCNN', False)}.png").stat().st_mtime
        assert first < (out / "across-models_NH2015.csv").stat().st_mtime
    plan = build_plan(data, out, progress=False)
    targets = [(t, plan.bundles[t].voxel_meta, plan.bundles[t].kept) for t in ("NH2015", "B2021")]
    names = {"DemoCNN": "DemoCNN", "spectemp": "SpectroTemporal"}
    for m, rn in (("DemoCNN", True), ("spectemp", False)):
        layers = plan.registry.layers(m)
        surfs, limit = version_surfaces(out, m, rn, layers, targets)
        cnt = pd.read_csv(out / "voxel-layer-counts_NH2015.csv")
        assert limit == cnt.loc[(cnt.source_model == m) & (cnt.randnetw == rn), "colour_scale_max_pos"].iloc[0]
        tables = {}
        for t in ("NH2015", "B2021"):
            subj = pd.read_csv(out / f"voxel-median-subject_{t}.csv")
            tab = subj[(subj.source_model == m) & (subj.randnetw == rn)].reset_index(drop=True)
            tables[t] = tab
            mine = surfs[t].sort_values(["hemi", "coord_id"]).reset_index(drop=True)
            ref = tab.sort_values(["hemi", "coord_id"]).reset_index(drop=True)
            for c in ("coord_id", "hemi", "n_voxels", "pos", "rel_pos", "best_median_r2_test_c"):
                np.testing.assert_array_equal(mine[c].to_numpy(), ref[c].to_numpy(), err_msg=c)
        fn, args, kw = version_map_job(plan, m, rn)
        early = tmp_path / f"early_{m}.png"
        fn(*args[:-1], path=early)
        late = tmp_path / f"late_{m}.png"
        _version_page(tables, layers, limit, version_label(m, rn, names), late)
        a, b = plt.imread(early), plt.imread(late)
        assert a.shape == b.shape and np.array_equal(a, b)
        assert a[..., :3].std() > 0.05  # not blank


def test_a_rerun_removes_figures_it_did_not_draw(study, tmp_path):
    """Figures of an earlier run that this run does not draw (e.g. a model no longer present)
    are removed, and so are not in report.html."""
    import shutil
    data, out, _ = study
    run = tmp_path / "out"
    shutil.copytree(out, run)
    (run / "figures" / "voxel-maps_OldModel.png").write_bytes((run / "figures" / "voxel-maps_DemoCNN.png").read_bytes())
    (run / "figures" / "voxel-maps_OldModel.pdf").write_text("%PDF")
    res = run_all(data, run, models=["DemoCNN", "spectemp"], progress=False, rsa=False)
    left = {p.name for p in (run / "figures").iterdir()}
    assert "voxel-maps_OldModel.png" not in left and "voxel-maps_OldModel.pdf" not in left
    assert "voxel-maps_DemoTransformer.png" not in left  # not in this run
    assert {p.name for p in res.figures} == {n for n in left if n.endswith(".png")}
    assert "OldModel" not in (run / "report.html").read_text()


def test_export_surface_mat(study, tmp_path):
    """--export-surface-mat: the study's .mat files per participant x hemisphere (vals, x_ras, y_ras)."""
    import scipy.io

    from fastenc.study.plan import build_plan
    from fastenc.study.store import StudyStore
    from fastenc.study.voxels import run_voxel_stage
    data, out, _ = study
    plan = build_plan(data, tmp_path, models=["DemoCNN"], targets=["NH2015"], progress=False)
    vox = run_voxel_stage(plan, StudyStore(out), export_mat=True)["NH2015"]
    folder = tmp_path / "surface-mat" / "DemoCNN" / "TYPE=subj-argmax_METRIC=median_r2_test_c_PLOTVAL=pos_NH2015"
    t = pd.read_csv(tmp_path / "voxel-best-layer_NH2015.csv")
    t = t[~t.randnetw]
    f = scipy.io.loadmat(folder / "DemoCNN_1_lh.mat")
    d = t[(t.subj_idx == 1) & (t.hemi == "lh")]
    np.testing.assert_array_equal(f["vals"].ravel(), d["pos"])
    np.testing.assert_array_equal(f["x_ras"].ravel(), d["x_ras"].astype(int))
    n_subj = t.subj_idx.nunique()
    assert len(list(folder.glob("*.mat"))) == n_subj * 2
    assert any(p.name == "all-good-models_subj-avg_lh.mat" for p in vox.mat_files)
    from fastenc.cli import _parser
    assert _parser().parse_args(["run-all", "--export-surface-mat"]).export_surface_mat


def test_dimensionality_table_is_ed_of_the_loaded_layers(study):
    """dimensionality.csv: effective_dimensionality of each loaded layer (one model version), joined
    with the layer's across-layer score; a rerun reuses the stored ED (same activations hash)."""
    from fastenc.dimensionality import effective_dimensionality
    from fastenc.io import open_model
    data, out, results = study
    d = pd.read_csv(out / "dimensionality.csv")
    assert list(d.columns[:7]) == ["source_model", "randnetw", "layer", "pos", "rel_pos", "n_units", "ed"]
    assert {"score_NH2015", "score_B2021"} <= set(d.columns)
    assert len(d) == 1 + 2 * 6 + 2 * 5  # every layer of every version
    got = d[(d.source_model == "DemoCNN") & d.randnetw].set_index("layer")
    with open_model(data, "DemoCNN", randnetw=True) as acts:
        for layer, X in acts.iter_layers():
            assert got.loc[layer, "ed"] == pytest.approx(effective_dimensionality(X), rel=1e-12)
            assert got.loc[layer, "n_units"] == X.shape[1]
    curve = pd.read_csv(out / "across-layers_B2021.csv").set_index(["source_model", "randnetw", "layer"])
    assert got.loc["conv3", "score_B2021"] == curve.loc[("DemoCNN", True, "conv3"), "median_r2_test_c_mean"]
    assert (out / "figures" / "dimensionality-vs-score_NH2015.png").is_file()  # trained | permuted


def test_across_layers_per_roi_is_the_curve_of_the_roi_voxels(study):
    """across-layers-roi: per participant the median over the ROI's voxels of the clipped median
    r2_c per layer, then mean over participants ± within-subject SEM (explicit loop, one ROI)."""
    from fastenc.io import load_neural
    from fastenc.registry import load_registry
    from fastenc.stats import within_subject_sem
    data, out, _ = study
    got = pd.read_csv(out / "across-layers-roi_NH2015.csv")
    nd = load_neural(data, "NH2015")
    layers = load_registry(data).layers("DemoTransformer")
    vals = _r2c(out, "NH2015", "DemoTransformer", False, layers)
    subj = nd.roi_meta["subj_idx"].to_numpy()
    lab = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
    per = []
    for s in np.unique(subj):
        m = (subj == s) & (lab == "Lateral")
        per.append([np.median([min(np.median(vals[li, v]), 1.0) for v in np.flatnonzero(m)])
                    for li in range(len(layers))])
    per = np.array(per)
    g = got[(got.source_model == "DemoTransformer") & ~got.randnetw & (got.roi == "Lateral")].sort_values("layer_pos")
    assert list(g["layer"]) == layers and (g["n_participants"] == len(per)).all()
    np.testing.assert_allclose(g["median_r2_test_c_mean"], per.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(g["median_r2_test_c_yerr"], within_subject_sem(per), rtol=1e-12)
    assert set(got.roi) == {"Primary", "Anterior", "Lateral", "Posterior"}


def test_report_page_holds_the_run(study):
    """run-all writes report.html: the headline numbers of the CSV, every figure, the provenance."""
    import re
    _, out, tables = study
    page = (out / "report.html").read_text()
    head = pd.read_csv(out / "across-models_NH2015.csv")
    for v in head["median_r2_test_c_mean"]:
        assert f"{v:.3f}" in page
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', page)) == len(list((out / "figures").glob("*.png")))
    assert "method version" in page and "RandomState(0)" in page
    assert tables.report == out / "report.html"


# --------------------------------------------------------------------------------------
# consistency (issue #10, the study's CONSISTENCY_plot_main.py)
# --------------------------------------------------------------------------------------
def test_consistency_equals_explicit_pairing_of_the_tables(study):
    """consistency.csv pairs each model's headline scores read from the CSVs; each panel's r is
    scipy's Pearson r over its models (undefined below 3 models)."""
    from scipy import stats
    _, out, results = study
    cons = pd.read_csv(out / "consistency.csv")
    corr = pd.read_csv(out / "consistency-correlations.csv")
    reg = {t: pd.read_csv(out / f"across-models_{t}.csv").set_index(["source_model", "randnetw"])
           ["median_r2_test_c_mean"] for t in ("NH2015", "B2021")}
    rsa = {}
    for t in ("NH2015", "B2021"):
        r = pd.read_csv(out / f"rsa_across-models_{t}.csv")
        rsa[t] = r[r.roi == "All"].set_index(["source_model", "randnetw"])["rsa_mean"]
    score = {("regression", t): reg[t] for t in reg} | {("RSA", t): rsa[t] for t in rsa}
    expected = {}
    for method in ("regression", "RSA"):
        for rn, net in ((False, "trained"), (True, "permuted")):
            expected[f"NH2015 vs B2021: {method}, {net}"] = (score[(method, "NH2015")], score[(method, "B2021")], rn, rn)
    for t in ("NH2015", "B2021"):
        for rn, net in ((False, "trained"), (True, "permuted")):
            expected[f"regression vs RSA: {t}, {net}"] = (score[("regression", t)], score[("RSA", t)], rn, rn)
        for method in ("regression", "RSA"):
            expected[f"trained vs permuted: {t}, {method}"] = (score[(method, t)], score[(method, t)], False, True)
    assert set(cons["panel"]) == set(expected)
    for panel, (a, b, rn_a, rn_b) in expected.items():
        models = sorted(m for m in ("DemoCNN", "DemoTransformer", "spectemp")
                        if (m, rn_a) in a.index and (m, rn_b) in b.index)
        d = cons[cons.panel == panel].set_index("source_model").loc[models]
        np.testing.assert_array_equal(d["x"], [a[(m, rn_a)] for m in models])
        np.testing.assert_array_equal(d["y"], [b[(m, rn_b)] for m in models])
        c = corr[(corr.panel == panel)].squeeze()
        assert c["n"] == len(models) and c["scope"] == "across models"
        if len(models) >= 3:
            assert c["pearson_r"] == pytest.approx(stats.pearsonr(d["x"], d["y"])[0], rel=1e-12)
        else:
            assert np.isnan(c["pearson_r"])
    assert "spectemp" not in set(cons.loc[cons.networks != "trained", "source_model"])
    # layer-wise: each layer's across-layer score on both targets; r across each model's layers
    lay = pd.read_csv(out / "consistency-layers.csv")
    curve = {t: pd.read_csv(out / f"across-layers_{t}.csv").set_index(["source_model", "randnetw", "layer"])
             ["median_r2_test_c_mean"] for t in ("NH2015", "B2021")}
    for t in ("NH2015", "B2021"):
        np.testing.assert_array_equal(lay[t], [curve[t][k] for k in zip(lay.source_model, lay.randnetw, lay.layer)])
    per = corr[corr.scope == "across the model's layers"]
    for (m, net), row in per.set_index(["source_model", "networks"]).iterrows():
        g = lay[(lay.source_model == m) & (lay.randnetw == (net == "permuted"))]
        assert row["pearson_r"] == pytest.approx(stats.pearsonr(g["NH2015"], g["B2021"])[0], rel=1e-12)
    assert set(results.consistency.named()) == {"consistency", "consistency-correlations", "consistency-layers"}


def test_consistency_planted_truth(study):
    """Planted truth: trained networks rank alike on both datasets and both methods (r > 0.9 over
    DemoCNN, DemoTransformer and spectemp); permuted networks sit near the floor, far under their
    trained versions; layer-wise, each trained model's depth profile agrees between NH2015 and
    B2021 (r > 0.9), a permuted network's much less."""
    _, out, _ = study
    cons = pd.read_csv(out / "consistency.csv")
    corr = pd.read_csv(out / "consistency-correlations.csv")
    for panel in ("NH2015 vs B2021: regression, trained", "NH2015 vs B2021: RSA, trained",
                  "regression vs RSA: NH2015, trained", "regression vs RSA: B2021, trained"):
        assert corr.loc[corr.panel == panel, "pearson_r"].item() > 0.9, panel
    tvp = cons[cons.comparison == "trained vs permuted"]
    assert len(tvp) == 8 and (tvp["y"] < 0.5 * tvp["x"]).all()
    reg = cons[cons.panel == "NH2015 vs B2021: regression, permuted"]
    assert (reg[["x", "y"]] < 0.15).all().all()
    lay = corr[corr.scope == "across the model's layers"].set_index(["source_model", "networks"])["pearson_r"]
    for m in ("DemoCNN", "DemoTransformer"):
        assert lay[(m, "trained")] > 0.9 and lay[(m, "permuted")] < lay[(m, "trained")] - 0.2, m
    for f in ("consistency_across-models", "consistency_across-layers"):
        assert (out / "figures" / f"{f}.png").is_file()
