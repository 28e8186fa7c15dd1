"""Consistency stage (METHOD §9, the study's ``CONSISTENCY_plot_main.py``): does the ranking of
models hold across datasets, methods and trained/permuted weights?

Built from the tables of the analysis and RSA stages (no stored units of its own; cheap, redone
every run). Per model version, the headline score of the regression (``across-models_<t>``:
best layer on independent splits, mean over participants) and of the RSA (``rsa_across-models_<t>``,
all voxels: ``roi == "All"``) is paired up in panels:

- ``NH2015 vs B2021``: per method (regression, RSA) and per trained / permuted networks;
- ``regression vs RSA``: per target and per trained / permuted networks;
- ``trained vs permuted``: per method and target (models with both versions; spectemp has none).

Each panel's Pearson r across models (:func:`fastenc.analysis.correlation_across`, undefined
below 3 models) is one row of ``consistency-correlations.csv``. The layer-wise comparison pairs
every layer's across-layer score (``across-layers_<t>``, mean over participants of the median
clipped r2_c) on NH2015 and B2021 (``consistency-layers.csv``), correlated across all layers of a
panel and across the layers of each model.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import analysis as an
from ..constants import SPECTEMP
from .results import ConsistencyTables, SeedTables

__all__ = ["run_consistency_stage", "run_seed_stage", "seed_pairs", "headline_scores", "PANEL_COLUMNS",
           "SEED_PAIRS"]

#: registry model set of the seed-1 / seed-2 model pairs (paper Fig. 2 insets)
SEED_PAIRS = "FIG2_SEED_PAIRS"

TARGET_PAIR = ("NH2015", "B2021")
METHODS = ("regression", "RSA")
PANEL_COLUMNS = ["panel", "comparison", "method", "target", "networks", "x_label", "y_label",
                 "source_model", "x", "y"]
CORR_COLUMNS = ["panel", "comparison", "method", "target", "networks", "x_label", "y_label", "scope",
                "source_model", "n", "pearson_r", "p_value", "models"]


def _networks(rn: bool) -> str:
    return "permuted" if rn else "trained"


def headline_scores(regression: dict, rsa: dict) -> pd.DataFrame:
    """One headline score per (method, target, source_model, randnetw): the regression's
    ``median_r2_test_c_mean`` and the RSA's ``rsa_mean`` over all voxels (``roi == "All"``)."""
    rows = []
    for t, tabs in regression.items():
        d = tabs.across_models
        rows.append(pd.DataFrame({"method": "regression", "target": t, "source_model": d["source_model"],
                                  "randnetw": d["randnetw"].astype(bool), "score": d["median_r2_test_c_mean"]}))
    for t, tabs in rsa.items():
        d = tabs.across_models
        d = d[d["roi"] == "All"]
        rows.append(pd.DataFrame({"method": "RSA", "target": t, "source_model": d["source_model"],
                                  "randnetw": d["randnetw"].astype(bool), "score": d["rsa_mean"]}))
    if not rows:
        return pd.DataFrame(columns=["method", "target", "source_model", "randnetw", "score"])
    return pd.concat(rows, ignore_index=True)


def _pair(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """Models scored on both sides, in ``a``'s order: columns ``source_model, x, y``."""
    models = [m for m in a.index if m in b.index]
    return pd.DataFrame({"source_model": models, "x": a.loc[models].to_numpy(float),
                         "y": b.loc[models].to_numpy(float)})


def _panels(scores: pd.DataFrame):
    """Yield ``(meta, pairs)``: the panel's description and its (source_model, x, y) rows."""
    def series(method, target, rn):
        d = scores[(scores["method"] == method) & (scores["target"] == target) & (scores["randnetw"] == rn)]
        if rn:
            d = d[d["source_model"] != SPECTEMP]
        return d.set_index("source_model")["score"]

    have = set(zip(scores["method"], scores["target"]))
    t1, t2 = TARGET_PAIR
    for method in METHODS:
        if (method, t1) in have and (method, t2) in have:
            for rn in (False, True):
                yield ({"comparison": f"{t1} vs {t2}", "method": method, "target": f"{t1} vs {t2}",
                        "networks": _networks(rn), "x_label": f"{t1} ({method})", "y_label": f"{t2} ({method})"},
                       _pair(series(method, t1, rn), series(method, t2, rn)))
    for t in TARGET_PAIR:
        if ("regression", t) in have and ("RSA", t) in have:
            for rn in (False, True):
                yield ({"comparison": "regression vs RSA", "method": "regression vs RSA", "target": t,
                        "networks": _networks(rn), "x_label": f"{t}: regression", "y_label": f"{t}: RSA"},
                       _pair(series("regression", t, rn), series("RSA", t, rn)))
    for method in METHODS:
        for t in TARGET_PAIR:
            if (method, t) in have:
                yield ({"comparison": "trained vs permuted", "method": method, "target": t,
                        "networks": "trained vs permuted", "x_label": f"{t} ({method}): trained",
                        "y_label": f"{t} ({method}): permuted"},
                       _pair(series(method, t, False).drop(SPECTEMP, errors="ignore"), series(method, t, True)))


def _panel_name(meta) -> str:
    if meta["comparison"] == "trained vs permuted":
        return f"trained vs permuted: {meta['target']}, {meta['method']}"
    if meta["comparison"] == "regression vs RSA":
        return f"regression vs RSA: {meta['target']}, {meta['networks']}"
    return f"{meta['comparison']}: {meta['method']}, {meta['networks']}"


def _corr_row(meta, scope, model, x, y, models) -> dict:
    r, p, n = an.correlation_across(x, y)
    return {**meta, "scope": scope, "source_model": model, "n": n, "pearson_r": r, "p_value": p,
            "models": an.joined(models)}


def run_consistency_stage(out, regression: dict, rsa: dict) -> ConsistencyTables | None:
    """Write ``consistency.csv`` (one row per panel and model: ``x``, ``y``),
    ``consistency-correlations.csv`` (one row per panel, and per model for the layer-wise
    panels: Pearson r, p, n) and ``consistency-layers.csv`` (one row per layer: its across-layer
    score on NH2015 and B2021). Returns None when no panel has a model scored on both sides."""
    scores = headline_scores(regression, rsa)
    rows, corr = [], []
    for meta, pairs in _panels(scores):
        if not len(pairs):
            continue
        meta = {"panel": _panel_name(meta), **meta}
        rows.append(pairs.assign(**meta))
        corr.append(_corr_row(meta, "across models", "", pairs["x"], pairs["y"], pairs["source_model"]))
    layers = _layers(regression)
    for rn, g in layers.groupby("randnetw", sort=True) if len(layers) else ():
        g = g[g["source_model"] != SPECTEMP]  # one layer: no curve
        t1, t2 = TARGET_PAIR
        meta = {"panel": f"{t1} vs {t2} per layer: regression, {_networks(rn)}",
                "comparison": f"{t1} vs {t2} per layer", "method": "regression", "target": f"{t1} vs {t2}",
                "networks": _networks(rn), "x_label": f"{t1} (regression)", "y_label": f"{t2} (regression)"}
        if not len(g):
            continue
        corr.append(_corr_row(meta, "across all layers", "", g[t1], g[t2], pd.unique(g["source_model"])))
        for m, gm in g.groupby("source_model", sort=False):
            corr.append(_corr_row(meta, "across the model's layers", m, gm[t1], gm[t2], [m]))
    if not rows and not len(layers):
        return None
    table = (pd.concat(rows, ignore_index=True)[PANEL_COLUMNS] if rows
             else pd.DataFrame(columns=PANEL_COLUMNS))
    correlations = pd.DataFrame(corr, columns=CORR_COLUMNS)
    out = Path(out)
    table.to_csv(out / "consistency.csv", index=False)
    correlations.to_csv(out / "consistency-correlations.csv", index=False)
    res = ConsistencyTables(scores=table, correlations=correlations)
    if len(layers):
        layers.to_csv(out / "consistency-layers.csv", index=False)
        res.layers = layers
    return res


def _layers(regression: dict) -> pd.DataFrame:
    """Per (source_model, randnetw, layer): the across-layer score on NH2015 and on B2021."""
    t1, t2 = TARGET_PAIR
    if t1 not in regression or t2 not in regression:
        return pd.DataFrame()
    key = ["source_model", "randnetw", "layer", "layer_pos"]
    a = regression[t1].across_layers
    b = regression[t2].across_layers
    if not len(a) or not len(b):
        return pd.DataFrame()
    a = a[key + ["median_r2_test_c_mean"]].rename(columns={"median_r2_test_c_mean": t1})
    b = b[key + ["median_r2_test_c_mean"]].rename(columns={"median_r2_test_c_mean": t2})
    m = a.merge(b, on=key, how="inner")
    m["randnetw"] = m["randnetw"].astype(bool)
    return m.reset_index(drop=True)


def seed_pairs(present, registry) -> list:
    """The (seed 1, seed 2) model pairs of FIG2_SEED_PAIRS with both models in ``present``."""
    if SEED_PAIRS not in registry.model_sets:
        return []
    have = set(present)
    return [(a, b) for a, b in registry.model_set(SEED_PAIRS) if a in have and b in have]


def run_seed_stage(out, regression: dict, rsa: dict, registry) -> SeedTables | None:
    """Seed 1 vs seed 2 of the model pairs of FIG2_SEED_PAIRS (METHOD §5, §9; the study's
    ``scatter_across_models``): per method (regression, RSA over all voxels), target and
    trained / permuted networks, one row per pair present (``source_model`` = the seed-1 model,
    ``seed2_model``, ``x`` = seed 1's headline score, ``y`` = seed 2's) in ``seeds.csv``; the
    Pearson r across pairs per panel in ``seeds-correlations.csv``. None when no pair has both
    seeds present."""
    scores = headline_scores(regression, rsa)
    pairs = seed_pairs(scores["source_model"], registry)
    if not pairs:
        return None
    by = scores.set_index(["method", "target", "randnetw", "source_model"])["score"]
    rows, corr = [], []
    for method in METHODS:
        for t in dict.fromkeys(scores.loc[scores["method"] == method, "target"]):
            for rn in (False, True):
                got = [(a, b, by.get((method, t, rn, a)), by.get((method, t, rn, b))) for a, b in pairs]
                got = [g for g in got if g[2] is not None and g[3] is not None]
                if not got:
                    continue
                meta = {"panel": f"seed 1 vs seed 2: {t}, {method}, {_networks(rn)}", "comparison": "seed 1 vs seed 2",
                        "method": method, "target": t, "networks": _networks(rn),
                        "x_label": f"{t} ({method}): seed 1", "y_label": f"{t} ({method}): seed 2"}
                d = pd.DataFrame({"source_model": [g[0] for g in got], "seed2_model": [g[1] for g in got],
                                  "x": [float(g[2]) for g in got], "y": [float(g[3]) for g in got]})
                rows.append(d.assign(**meta))
                corr.append(_corr_row(meta, "across model pairs", "", d["x"], d["y"], d["source_model"]))
    table = pd.concat(rows, ignore_index=True)[PANEL_COLUMNS[:-3] + ["source_model", "seed2_model", "x", "y"]]
    correlations = pd.DataFrame(corr, columns=CORR_COLUMNS)
    table.to_csv(Path(out) / "seeds.csv", index=False)
    correlations.to_csv(Path(out) / "seeds-correlations.csv", index=False)
    return SeedTables(scores=table, correlations=correlations)
