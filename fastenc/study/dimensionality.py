"""Dimensionality stage (METHOD §9): the effective dimensionality of every layer of every model
version, with the layer's score.

The ED itself is computed by the regression task while each layer is loaded
(:func:`fastenc.study.regression.regress_model`; stored per version under
``<out>/dimensionality/`` with each layer's activation hash, and reused while that is unchanged),
so this stage never reads activations. It joins the layers' scores, the across-layer curve value
(mean over participants of the median clipped r2_c, ``across-layers_<t>``) of each neural target,
and writes ``<out>/dimensionality.csv``: ``source_model, randnetw, layer, pos, rel_pos, n_units,
ed, score_<target>...``.
"""
from __future__ import annotations

import pandas as pd

from .store import StudyStore

__all__ = ["run_dimensionality_stage", "DIMENSIONALITY_COLUMNS"]

DIMENSIONALITY_COLUMNS = ["source_model", "randnetw", "layer", "pos", "rel_pos", "n_units", "ed"]


def run_dimensionality_stage(plan, store: StudyStore, regression: dict) -> pd.DataFrame | None:
    """``dimensionality.csv`` of ``plan`` (see the module docstring); None without ED tables."""
    parts = []
    for model, randnetw in plan.work:
        layers = plan.layers(model)
        ed = store.ed_read(model, randnetw)
        if ed is None:
            raise FileNotFoundError(f"no effective dimensionality stored for {model}"
                                    f"{' (randnetw)' if randnetw else ''}; run the regression stage first")
        ed = ed.set_index("layer").reindex(layers)
        L = len(layers)
        parts.append(pd.DataFrame({
            "source_model": model, "randnetw": bool(randnetw), "layer": layers,
            "pos": range(1, L + 1), "rel_pos": [i / (L - 1) if L > 1 else 0.0 for i in range(L)],
            "n_units": ed["n_units"].to_numpy(), "ed": ed["ed"].to_numpy()}))
    if not parts:
        return None
    df = pd.concat(parts, ignore_index=True)
    for t, reg in regression.items():
        c = reg.across_layers
        if c is None or not len(c):
            continue
        score = c.set_index(["source_model", "randnetw", "layer"])["median_r2_test_c_mean"]
        key = pd.MultiIndex.from_arrays([df["source_model"], df["randnetw"], df["layer"]])
        df[f"score_{t}"] = score.reindex(key).to_numpy()
    df.to_csv(plan.out / "dimensionality.csv", index=False)
    return df
