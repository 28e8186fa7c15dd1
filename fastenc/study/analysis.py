"""Analysis stage (METHOD §5): the regression analyses, computed from the store.

Reads the stored units of every model version, runs :mod:`fastenc.analysis` and writes the tidy
tables (``<out>/*.csv``). Targets omitted for NaN (``nan_policy="omit"``) are left out: the
scores of a voxel that was not fitted are NaN in the store and never enter a median, a best
layer or an ROI.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis as an
from ..constants import COMPONENT_TARGET, N_RESAMPLES, ROI_ORDER, SPECTEMP
from ..registry import resolve_models
from .results import ComponentTables, RegressionTables
from .store import StudyStore

__all__ = ["run_analysis_stage", "model_pool", "comparison_pairs", "roi_tables", "baseline",
           "FIG_ACROSS_MODELS", "FIG_ROI"]


def _kept(bundle, vals, subj=None, roi=None):
    """Drop the targets omitted for NaN from (layers, targets, splits) ``vals`` and their labels."""
    kept = bundle.kept
    if kept.all():
        return vals, subj, roi
    return (vals[:, kept, :], None if subj is None else subj[kept], None if roi is None else roi[kept])


def run_analysis_stage(plan, store: StudyStore, progress=None) -> tuple:
    """METHOD §5 on the stored regression results of ``plan``; writes CSVs under ``plan.out``.

    Statistics that pool models use the paper's model sets (:func:`model_pool`): the across-model
    error bars FIG_2_5_MODEL_LIST (+ spectemp), the ROI best-layer analysis FIG_7_MODEL_LIST;
    each output records the models pooled (``pooled_models``, ``model_set``).
    Returns ``({target: RegressionTables}, {"NH2015comp": ComponentTables})``.
    """
    out, registry, work = plan.out, plan.registry, plan.work
    regression, components = {}, {}
    present = plan.models
    bar_pool, bar_label = model_pool(present, registry, FIG_ACROSS_MODELS, with_baseline=True)
    roi_pool, roi_label = model_pool([m for m in present if len(registry.layers(m)) >= 2], registry, FIG_ROI)
    for target, bundle in plan.bundles.items():
        if target == COMPONENT_TARGET:
            components[target] = _components(store, out, bundle, work, registry, progress, plan.stimuli)
            continue
        scores, curves, roi_rows = [], [], []
        roi = None
        for model, randnetw in work:
            layers = registry.layers(model)
            vals, subj, roi = _kept(bundle, store.layer_values(target, model, randnetw, layers, "r2_test_c"),
                                    bundle.subj_idx, bundle.roi_labels)
            res = an.best_layer_independent_splits(vals, subj, clip=True)
            for s, v in res.subject_scores.items():
                scores.append({"model": model, "randnetw": randnetw, "subj_idx": s, "score": v})
            med = np.minimum(np.median(vals, axis=2), 1.0)  # clipped median r2_c per layer x voxel
            curve = an.across_layer_curve(med, subj, layer_names=layers)
            for li, layer in enumerate(layers):
                curves.append({"source_model": model, "randnetw": randnetw, "layer": layer,
                               "layer_pos": li, "median_r2_test_c_mean": curve.mean[li],
                               "median_r2_test_c_yerr": curve.sem[li]})
            if len(layers) >= 2:  # trained and permuted networks (METHOD §5)
                t = an.best_layer_per_roi(vals, subj, roi)
                t.insert(0, "randnetw", bool(randnetw))
                t.insert(0, "source_model", model)
                roi_rows.append(t)
            if progress is not None:
                progress.update(1, note=f"{target} {model}")
        long = pd.DataFrame(scores)
        subject_scores = long.rename(columns={"model": "source_model"})
        subject_scores.to_csv(out / f"subject-scores_{target}.csv", index=False)
        summ = an.across_models_summary(long, spectemp=baseline(long["model"]), pool=bar_pool)
        summ = summ.rename(columns={"model": "source_model", "mean": "median_r2_test_c_mean",
                                    "sem": "median_r2_test_c_yerr"})
        # spectemp has no permuted version: its row in the permuted panel only anchors the SEM
        summ = summ[~((summ["source_model"] == SPECTEMP) & summ["randnetw"])].reset_index(drop=True)
        summ["model_set"] = np.where(summ["in_pool"], bar_label, "all models of the panel (not in the set)")
        summ["display_name"] = [registry.display_name(m) for m in summ["source_model"]]
        summ.to_csv(out / f"across-models_{target}.csv", index=False)
        cdf = pd.DataFrame(curves)
        cdf.to_csv(out / f"across-layers_{target}.csv", index=False)
        tabs = RegressionTables(subject_scores=subject_scores, across_models=summ, across_layers=cdf)
        if roi_rows:
            present_rois = set(pd.Series(roi).dropna())
            empty = [r for r in ROI_ORDER if r not in present_rois]
            if empty:
                warnings.warn(f"{target}: no voxel in ROI(s) {empty}; their best-layer rows are NaN",
                              stacklevel=2)
            per_subj = pd.concat(roi_rows, ignore_index=True)
            tabs.best_layer_roi, tabs.best_layer_roi_wilcoxon = roi_tables(
                out, target, per_subj, roi_pool, roi_label, registry, sem="subjects", prefix="")
            tabs.best_layer_roi_subjects = per_subj
        comp = _comparisons(long, registry)
        if len(comp):
            comp.to_csv(out / f"model-comparisons_{target}.csv", index=False)
            tabs.model_comparisons = comp
        regression[target] = tabs
    return regression, components


FIG_ACROSS_MODELS = "FIG_2_5_MODEL_LIST"
FIG_ROI = "FIG_7_MODEL_LIST"
CLEAN_PAIRS = "CLEAN_SPEECH_LIST_PAIRS"
ROI_TABLE_COLUMNS = ["source_model", "randnetw", "roi", "rel_pos_mean", "rel_pos_yerr", "n_participants"]


def model_pool(present, registry, set_name, with_baseline=False):
    """The models a pooled statistic runs over (METHOD §5, "model sets") and a label for it.

    The members of the registry set ``set_name`` (spectemp aside) that are ``present``, in the
    set's order. When none is present (e.g. the demo, whose models are its own), every present
    model except spectemp, and the label says so. ``with_baseline`` adds spectemp when present
    (the across-model bars pool FIG_2_5_MODEL_LIST + spectemp). Returns ``(models, label)``.
    """
    present = list(dict.fromkeys(present))
    members = []
    if set_name in registry.model_sets:
        members = [m for m in resolve_models([set_name], registry) if m != SPECTEMP]
    chosen = [m for m in members if m in present]
    if chosen:
        label = set_name if len(chosen) == len(members) else f"{set_name} ({len(chosen)} of {len(members)} present)"
    else:
        chosen = [m for m in present if m != SPECTEMP]
        label = f"all present models (none of {set_name} present)"
    if with_baseline and SPECTEMP in present:
        chosen = chosen + [SPECTEMP]
        label = f"{label} + {SPECTEMP}"
    return chosen, label


def roi_tables(out, target, per_subj, pool, label, registry, sem, prefix) -> tuple:
    """Best layer per ROI across the pooled models (METHOD §5 regression / §6 RSA), trained and
    permuted: ``<prefix>best-layer-roi_<target>.csv`` (long form) and the Wilcoxon tests
    ``<prefix>best-layer-roi-wilcoxon_<target>.csv`` (Primary vs each ROI, the non-primary ROIs
    against each other, across models). Returns ``(summary, wilcoxon or None)``."""
    summ = an.roi_summary(per_subj, models=pool, sem=sem)
    summ = summ[ROI_TABLE_COLUMNS + ["n_models", "pooled_models"]]
    summ["model_set"] = label
    summ["display_name"] = [registry.display_name(m) for m in summ["source_model"]]
    summ.to_csv(Path(out) / f"{prefix}best-layer-roi_{target}.csv", index=False)
    wdf = None
    wil = []
    for rn, g in summ.groupby("randnetw", sort=True):
        wide = g.pivot(index="source_model", columns="roi", values="rel_pos_mean")
        if len(wide) < 2:
            continue
        w = an.roi_wilcoxon(wide)
        w.insert(0, "randnetw", bool(rn))
        w["test"] = "Wilcoxon signed-rank across models, two-sided, normal approximation"
        w["pooled_models"] = an.joined(wide.index)
        w["model_set"] = label
        wil.append(w)
    if wil:
        wdf = pd.concat(wil, ignore_index=True)
        wdf.to_csv(Path(out) / f"{prefix}best-layer-roi-wilcoxon_{target}.csv", index=False)
    return summ, wdf


def baseline(models: pd.Series):
    """``SPECTEMP`` when it is present beside other models (then drawn as the baseline band);
    None when it is absent or alone (then it is an ordinary bar)."""
    return SPECTEMP if (models == SPECTEMP).any() and (models != SPECTEMP).any() else None


def comparison_pairs(versions, registry):
    """The paper's model comparisons (METHOD §5), as far as the model versions are present.

    ``versions``: (model, randnetw) pairs. Returns ``(comparison, (model_1, randnetw_1),
    (model_2, randnetw_2))`` tuples: each trained model vs its permuted version; every model
    version vs spectemp; ResNet50multitask vs each in-house model (Kell2018* / ResNet50* of
    FIG_2_5_MODEL_LIST), trained and permuted; clean- vs noisy-trained speech models
    (CLEAN_SPEECH_LIST_PAIRS, both directions), trained and permuted.
    """
    have = set((m, bool(r)) for m, r in versions)
    order = list(dict.fromkeys((m, bool(r)) for m, r in versions))
    pairs = []
    for m, r in order:
        if not r and m != SPECTEMP and (m, True) in have:
            pairs.append(("trained vs permuted", (m, False), (m, True)))
    if (SPECTEMP, False) in have:
        for m, r in order:
            if m != SPECTEMP:
                pairs.append(("vs spectemp", (m, r), (SPECTEMP, False)))
    if FIG_ACROSS_MODELS in registry.model_sets:
        inhouse = [m for m in resolve_models([FIG_ACROSS_MODELS], registry)
                   if m.startswith(("Kell2018", "ResNet50")) and m != "ResNet50multitask"]
        for r in (False, True):
            if ("ResNet50multitask", r) in have:
                pairs += [("ResNet50multitask vs in-house", ("ResNet50multitask", r), (m, r))
                          for m in inhouse if (m, r) in have]
    if CLEAN_PAIRS in registry.model_sets:
        for r in (False, True):
            for noisy, clean in registry.model_set(CLEAN_PAIRS):
                if (noisy, r) in have and (clean, r) in have:
                    pairs.append(("clean vs noisy", (clean, r), (noisy, r)))
                    pairs.append(("clean vs noisy", (noisy, r), (clean, r)))
    return pairs


def _comparisons(long: pd.DataFrame, registry) -> pd.DataFrame:
    """The paper's model comparisons (:func:`comparison_pairs`) by subject bootstrap (METHOD §5):
    small ``p_value`` = model 1 above model 2."""
    rows = []
    by = {(m, bool(r)): g.sort_values("subj_idx")["score"].to_numpy()
          for (m, r), g in long.groupby(["model", "randnetw"])}
    for family, a, b in comparison_pairs(list(by), registry):
        res = an.bootstrap_model_comparison(by[a], by[b], n_boot=N_RESAMPLES, seed=0)
        rows.append({"comparison": family, "model_1": a[0], "model_1_randnetw": a[1],
                     "model_2": b[0], "model_2_randnetw": b[1],
                     "mean_1": res.reference, "mean_2": res.statistic, "p_value": res.p_value,
                     "p_value_study": res.p_value_study, "n_resamples": res.n_resamples,
                     "test": "subject bootstrap of model 2, one-sided"})
    return pd.DataFrame(rows)


def _components(store, out, bundle, work, registry, progress, stimuli=None) -> ComponentTables:
    """The six NH2015 components (METHOD §5): best layer on independent splits per component, the
    model comparisons by permutation of the pooled iteration scores, and (with ``stimuli``) each
    component's predicted vs measured response per sound at its most frequent best layer."""
    target = bundle.name
    names = [n for n, k in zip(bundle.target_names, bundle.kept) if k]
    rows = []
    iters = {}
    pred_rows = []
    for model, randnetw in work:
        layers = registry.layers(model)
        vals = _kept(bundle, store.layer_values(target, model, randnetw, layers, "r2_test"))[0]
        df = an.components_independent_splits(vals, component_names=names, clip=False, layer_names=layers)
        if stimuli is not None:
            pred_rows += _component_predictions(store, bundle, model, randnetw, layers, df["best_layer_mode"],
                                                stimuli)
        it = df[[c for c in df.columns if c.startswith("iter_")]].to_numpy()
        iters[(model, bool(randnetw))] = dict(zip(df.index, it))
        n_it = it.shape[1]
        for comp, score, sd in zip(df.index, df["score"], it.std(axis=1)):
            rows.append({"source_model": model, "randnetw": randnetw, "component": comp,
                         "median_r2_test_mean": score,
                         # no participants: spread over the 10 independent-split iterations
                         "median_r2_test_yerr": sd / np.sqrt(max(n_it - 1, 1)),
                         "best_layer": (layers[int(df.loc[comp, "best_layer_mode"])]
                                        if df.loc[comp, "best_layer_mode"] >= 0 else None)})
        if progress is not None:
            progress.update(1, note=f"{target} {model}")
    cdf = pd.DataFrame(rows)
    cdf.to_csv(Path(out) / f"across-models_{target}.csv", index=False)
    res = ComponentTables(across_models=cdf)
    if stimuli is not None:
        res.predictions = pd.DataFrame(pred_rows, columns=PREDICTION_COLUMNS)
        res.predictions.to_csv(Path(out) / f"component-predictions_{target}.csv", index=False)
    # model comparisons per component: permutation of the pooled per-iteration scores (METHOD §5)
    comp_rows = []
    for family, a, b in comparison_pairs(list(iters), registry):
        for comp, v1 in iters[a].items():
            r = an.permutation_component_comparison(v1, iters[b][comp], n_permutations=N_RESAMPLES, seed=0)
            comp_rows.append({"comparison": family, "model_1": a[0], "model_1_randnetw": a[1],
                              "model_2": b[0], "model_2_randnetw": b[1], "component": comp,
                              "difference": r.statistic, "p_value": r.p_value,
                              "p_value_study": r.p_value_study, "n_resamples": r.n_resamples,
                              "test": "permutation of the pooled iteration scores, one-sided"})
    if comp_rows:
        comp_df = pd.DataFrame(comp_rows)
        comp_df.to_csv(Path(out) / f"model-comparisons_{target}.csv", index=False)
        res.model_comparisons = comp_df
    return res


PREDICTION_COLUMNS = ["source_model", "randnetw", "component", "layer", "stim_id", "category", "measured",
                      "predicted", "n_test_splits"]


def _component_predictions(store, bundle, model, randnetw, layers, best_layer, stimuli) -> list:
    """Rows of ``component-predictions_<t>``: per component of one model version and per sound, the
    measured response and the prediction at the component's most frequent best layer, the mean
    over the splits that tested the sound (as the study plotted them, paper Fig. 4)."""
    kept = np.flatnonzero(bundle.kept)
    measured = bundle.targets.Yt  # plain targets: one row per kept component, stimuli in order
    stim_ids = stimuli["stim_id"].tolist()
    cats = stimuli["category"].tolist()
    by_layer = {}
    rows = []
    for k, (comp, b) in enumerate(best_layer.items()):
        if b < 0:
            continue
        layer = layers[int(b)]
        if layer not in by_layer:
            unit = store.read(bundle.name, model, randnetw, layer, names=["predictions"])
            by_layer[layer] = an.mean_test_prediction(unit["predictions"])
        mean, n = by_layer[layer]
        for i in range(len(stim_ids)):
            rows.append((model, bool(randnetw), comp, layer, stim_ids[i], cats[i], float(measured[k, i]),
                         float(mean[kept[k], i]), int(n[kept[k], i])))
    return rows
