"""Seeds (FIG2_SEED_PAIRS) and clean- vs noisy-trained speech models (paper Fig. 8) on a small
synthetic setup: the demo's activations copied under registry names of the study's models (h5,
via a manifest), seed 2 = seed 1 plus a little noise (planted truth: the seeds agree)."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from fastenc import run_all
from fastenc.datasets import make_demo
from fastenc.io import open_model

#: registry name -> (demo model, randnetw, noise sd relative to the activations' sd)
COPIES = {
    "Kell2018word": ("DemoCNN", False, 0.0), "Kell2018wordSeed2": ("DemoCNN", False, 0.15),
    "Kell2018speaker": ("DemoTransformer", False, 0.0), "Kell2018speakerSeed2": ("DemoTransformer", False, 0.15),
    "Kell2018audioset": ("DemoCNN", True, 0.0), "Kell2018audiosetSeed2": ("DemoCNN", True, 0.15),
    "Kell2018wordClean": ("DemoCNN", False, 0.6),
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = make_demo(tmp_path_factory.mktemp("seeds") / "demo")
    manifest = json.loads((root / "fastenc_models.json").read_text())
    rng = np.random.default_rng(0)
    for i, (name, (src, rn, noise)) in enumerate(COPIES.items()):
        with open_model(root, src, randnetw=rn) as acts:
            layers = list(acts.iter_layers())
        folder = root / "model_actv" / name
        folder.mkdir(parents=True)
        with h5py.File(folder / "natsound_activations.h5", "w") as f:
            for layer, X in layers:
                X = np.asarray(X, dtype=np.float32)
                f.create_dataset(layer, data=X + noise * X.std() * rng.standard_normal(X.shape).astype(np.float32))
            f.create_dataset("layer_list", data=np.array([lay for lay, _ in layers], dtype="S"))
        manifest["models"][name] = {"display_name": name, "layers": [lay for lay, _ in layers], "storage": "h5",
                                    "has_randnetw": False}
    (root / "fastenc_models.json").write_text(json.dumps(manifest))
    out = root.parent / "out"
    results = run_all(root, out, models=list(COPIES), targets=["NH2015", "NH2015comp"], progress=False)
    return root, out, results


def test_seed_pairs_correlate_highly(seeded):
    _, out, results = seeded
    seeds = pd.read_csv(out / "seeds.csv")
    corr = pd.read_csv(out / "seeds-correlations.csv")
    assert set(seeds["source_model"]) == {"Kell2018word", "Kell2018speaker", "Kell2018audioset"}
    assert set(zip(seeds.source_model, seeds.seed2_model)) == {
        ("Kell2018word", "Kell2018wordSeed2"), ("Kell2018speaker", "Kell2018speakerSeed2"),
        ("Kell2018audioset", "Kell2018audiosetSeed2")}
    assert set(seeds["panel"]) == {"seed 1 vs seed 2: NH2015, regression, trained",
                                   "seed 1 vs seed 2: NH2015, RSA, trained"}
    # the values are the headline scores of the two models
    reg = pd.read_csv(out / "across-models_NH2015.csv").set_index("source_model")["median_r2_test_c_mean"]
    d = seeds[seeds.method == "regression"]
    np.testing.assert_array_equal(d["x"], reg.loc[d["source_model"]].to_numpy())
    np.testing.assert_array_equal(d["y"], reg.loc[d["seed2_model"]].to_numpy())
    # planted truth: seed 2 = seed 1 + a little noise -> the seeds agree across model pairs
    assert (corr["n"] == 3).all() and (corr["pearson_r"] > 0.95).all()
    assert (np.abs(seeds["x"] - seeds["y"]) < 0.1).all()
    assert (out / "figures" / "seeds_across-models.png").is_file()
    assert "seeds" in results.tables and "seeds-correlations" in results.tables


def test_clean_vs_noisy_bars_and_comparisons(seeded):
    _, out, results = seeded
    comp = pd.read_csv(out / "model-comparisons_NH2015.csv")
    cvn = comp[comp.comparison == "clean vs noisy"]
    assert set(zip(cvn.model_1, cvn.model_2)) == {("Kell2018word", "Kell2018wordClean"),
                                                  ("Kell2018wordClean", "Kell2018word")}
    # the clean model is the noisier copy: the noisy-trained (original) one scores higher
    row = cvn[cvn.model_1 == "Kell2018word"].squeeze()
    assert row["mean_1"] > row["mean_2"] and row["p_value"] < 0.05
    ccomp = pd.read_csv(out / "model-comparisons_NH2015comp.csv")
    assert (ccomp.comparison == "clean vs noisy").sum() == 2 * 6
    for t in ("NH2015", "NH2015comp"):
        assert (out / "figures" / f"clean-vs-noisy_{t}.png").is_file()
    skipped = (out / "figures" / "SKIPPED.txt")
    assert not skipped.exists() or "clean-vs-noisy" not in skipped.read_text()


def test_demo_skips_seed_and_clean_figures(tmp_path):
    """Without the models, one SKIPPED line each, with why (the demo's own models)."""
    from fastenc.study.figures import draw_figures
    from fastenc.study.results import StudyResults
    from fastenc.registry import load_registry
    res = StudyResults(out=tmp_path, regression_units=pd.DataFrame(), regression={})
    draw_figures(res, load_registry(), workers=1)
    text = (tmp_path / "figures" / "SKIPPED.txt").read_text()
    assert "seeds_across-models: no model pair of FIG2_SEED_PAIRS has both seeds present" in text
