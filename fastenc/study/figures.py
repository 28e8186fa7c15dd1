"""Figure stage: draw every figure of the study from the tables of a run.

The plotting functions live in :mod:`fastenc.figures`; this module only picks the tables of
:class:`~fastenc.study.results.StudyResults` and names the files ``<out>/figures/<name>.png``
(and ``.pdf``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import analysis as an
from ..constants import SPECTEMP
from .analysis import baseline
from .results import StudyResults

__all__ = ["draw_figures"]


def draw_figures(results: StudyResults, registry) -> list:
    """Draw the figures of ``results`` into ``<out>/figures``; returns the PNG paths."""
    from .. import figures  # matplotlib: imported only when drawing

    fig_dir = Path(results.out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = {m: registry.display_name(m) for m in registry.model_names()}
    drawn = []

    def path(name):
        drawn.append(fig_dir / f"{name}.png")
        return fig_dir / name

    for t, reg in results.regression.items():
        long = reg.subject_scores.rename(columns={"source_model": "model"})
        if len(long):
            summ = reg.across_models
            pool = list(summ.loc[summ["in_pool"], "source_model"]) if "in_pool" in summ else None
            figures.plot_across_models(long, spectemp=baseline(long["model"]), pool=pool,
                                       display_names=names, title=f"{t}: best layer on independent splits",
                                       path=path(f"across-models_{t}"))
        if len(reg.across_layers):
            _plot_curves(figures, reg.across_layers, names, t, path)
    for t in dict.fromkeys([*results.regression, *results.rsa]):
        for prefix, tabs, what in (
                ("", results.regression.get(t), "best model stage per anatomical ROI (regression)"),
                ("rsa_", results.rsa.get(t), "best model stage per anatomical ROI (RSA, all sounds)")):
            roi = None if tabs is None else tabs.best_layer_roi
            if roi is None or not len(roi):
                continue
            for rn in (False, True):
                if (roi["randnetw"] == rn).any():
                    figures.plot_roi_best_layer(roi, pvalues=tabs.best_layer_roi_wilcoxon, randnetw=rn,
                                                display_names=names, title=f"{t}: {what}",
                                                path=path(f"{prefix}best-layer-roi{'_randnetw' if rn else ''}_{t}"))
        r = results.rsa.get(t)
        if r is None:
            continue
        if len(r.across_models):
            figures.plot_rsa_across_models(r.across_models, display_names=names, title=f"{t}: human–model RSA",
                                           spectemp=baseline(r.across_models["source_model"]),
                                           path=path(f"rsa_across-models_{t}"))
        if r.roi_matrices:
            cats = r.category_order
            bounds = [0] + [i for i in range(1, len(cats)) if cats[i] != cats[i - 1]] + [len(cats)]
            figures.plot_roi_matrices(r.roi_matrices, r.roi_vs_roi, category_bounds=bounds,
                                      category_names=[cats[b] for b in bounds[:-1]],
                                      title=f"{t}: human representational similarity per ROI",
                                      path=path(f"rsa_roi-matrices_{t}"))
    for comp in results.components.values():
        if len(comp.across_models):
            trained = comp.across_models[~comp.across_models["randnetw"]]
            scores = trained.pivot(index="source_model", columns="component", values="median_r2_test_mean")
            errors = trained.pivot(index="source_model", columns="component", values="median_r2_test_yerr")
            figures.plot_components(scores, errors, display_names=names,
                                    spectemp=SPECTEMP if SPECTEMP in scores.index else None,
                                    path=path("components_NH2015comp"))
    return drawn


def _plot_curves(figures, curves, names, target, path):
    def as_curves(df):
        out = {}
        for m, g in df.groupby("source_model", sort=False):
            g = g.sort_values("layer_pos")
            out[m] = an.LayerCurve(per_subject=pd.DataFrame(columns=g["layer"].tolist()),
                                   mean=g["median_r2_test_c_mean"].to_numpy(),
                                   sem=g["median_r2_test_c_yerr"].to_numpy())
        return out
    trained = as_curves(curves[~curves["randnetw"]])
    permuted = as_curves(curves[curves["randnetw"]])
    st = trained.pop(SPECTEMP, None)
    if trained:
        figures.plot_across_layers(trained, permuted=permuted, display_names=names,
                                   spectemp=(float(st.mean[0]), float(st.sem[0])) if st is not None else None,
                                   title=f"{target}: prediction across model stages",
                                   path=path(f"across-layers_{target}"))
