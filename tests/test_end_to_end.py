"""run_all on the embedded demo recovers the planted truth (fastenc.datasets.DEMO_TRUTH)."""
import numpy as np
import pandas as pd
import pytest

import fastenc
from fastenc.datasets import make_demo
from fastenc.pipeline import run_all


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_demo(root / "demo")
    out = root / "out"
    tables = run_all(data, out, progress=False)
    return data, out, tables


def test_outputs_written(study):
    _, out, _ = study
    for t in ("NH2015", "B2021"):
        df = pd.read_csv(out / f"across-models_{t}.csv")
        assert {"source_model", "randnetw", "median_r2_test_c_mean", "median_r2_test_c_yerr"} <= set(df.columns)
        rsa = pd.read_csv(out / f"rsa_across-models_{t}.csv")
        assert {"source_model", "randnetw", "roi", "rsa_mean", "rsa_yerr", "noise_ceiling"} <= set(rsa.columns)
        assert set(rsa["roi"]) == {"All", "Primary", "Lateral", "Posterior", "Anterior"}
        roi = pd.read_csv(out / f"rsa_roi-vs-roi_{t}.csv", index_col=0)
        np.testing.assert_allclose(np.diag(roi.to_numpy()), 1.0)
        assert (out / f"rsa_best-layer-roi_{t}.csv").exists()
        for fig in ("across-models", "across-layers", "best-layer-roi", "rsa_across-models", "rsa_roi-matrices"):
            assert (out / "figures" / f"{fig}_{t}.png").stat().st_size > 10_000
    comp = pd.read_csv(out / "across-models_NH2015comp.csv")
    assert {"median_r2_test_mean", "median_r2_test_yerr"} <= set(comp.columns)


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
def test_trained_beat_spectemp_beat_permuted(study, target):
    _, _, tables = study
    df = tables[f"across-models_{target}"].set_index(["source_model", "randnetw"])["median_r2_test_c_mean"]
    st = df[("spectemp", False)]
    for m in ("DemoCNN", "DemoTransformer"):
        assert df[(m, False)] > st > df[(m, True)]


@pytest.mark.parametrize("target", ["NH2015", "B2021"])
def test_non_primary_rois_prefer_deeper_layers(study, target):
    _, _, tables = study
    roi = tables[f"best-layer-roi_{target}"]
    for m in ("DemoCNN", "DemoTransformer"):
        for r in ("Anterior", "Lateral", "Posterior"):
            assert roi.loc[m, r] > roi.loc[m, "Primary"], (m, r)


def test_rsa_trained_beats_permuted_and_stays_below_ceiling(study):
    _, _, tables = study
    df = tables["rsa_across-models_NH2015"]
    allv = df[df["roi"] == "All"].set_index(["source_model", "randnetw"])
    for m in ("DemoCNN", "DemoTransformer"):
        assert allv.loc[(m, False), "rsa_mean"] > allv.loc[(m, True), "rsa_mean"]
        assert allv.loc[(m, False), "rsa_mean"] < allv.loc[(m, False), "noise_ceiling"] + 0.05


def test_component_scores_follow_planted_depth(study):
    _, _, tables = study
    comp = tables["across-models_NH2015comp"]
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
    assert (tables["regression_units"]["status"] == "skipped").all()


def test_rsa_corrected_option(study):
    data, out, tables = study
    corr = run_all(data, out, progress=False, figures=False, rsa_corrected=True)
    quirk = tables["rsa_across-models_NH2015"].set_index(["source_model", "randnetw", "roi"])
    fixed = corr["rsa_across-models_NH2015"].set_index(["source_model", "randnetw", "roi"])
    # same model scores; Spearman ceiling instead of Pearson; SEM over participants, not models
    np.testing.assert_allclose(fixed["rsa_mean"], quirk.loc[fixed.index, "rsa_mean"])
    assert not np.allclose(fixed["noise_ceiling"], quirk.loc[fixed.index, "noise_ceiling"])
    assert (out / "rsa-corrected").is_dir()


def test_component_model_comparisons(study):
    _, out, _ = study
    df = pd.read_csv(out / "model-comparisons_NH2015comp.csv")
    assert set(df["component"]) == {"lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"}
    assert df["p_value"].between(0, 1).all()


def test_missing_target_folder_and_single_model(tmp_path):
    import shutil
    root = make_demo(tmp_path / "demo")
    shutil.rmtree(root / "data" / "neural" / "B2021")
    tables = run_all(root, tmp_path / "out", models=["spectemp"], progress=False, figures=False)
    assert "across-models_B2021" not in tables  # default targets: those present
    df = tables["across-models_NH2015"]
    assert df["source_model"].tolist() == ["spectemp"] and df["median_r2_test_c_mean"].iloc[0] > 0
    with pytest.raises(FileNotFoundError, match="B2021"):
        run_all(root, tmp_path / "out", models=["spectemp"], targets=["B2021"], progress=False)
