"""RSA stage (METHOD §6): human–model RSA per ROI, stored per (target, model version).

Participants' split RSMs and noise ceilings are prepared once per target from the plan's
bundles (:func:`fastenc.rsa.prepare_participants`). Each model version is one executor task: its
activations are read and hashed once, and a target's RSA unit (``<out>/rsa/<target>/<model>
[_randnetw].csv``, ``rsa-corrected/`` with ``corrected``) is reused only when its input record
(:meth:`fastenc.study.store.StudyStore.rsa_check`) is unchanged. Voxels omitted for NaN
(``nan_policy="omit"``) are left out of every participant's RSMs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import analysis as an
from .. import rsa
from ..constants import ROI_ORDER, RSA_ROIS, SPECTEMP
from ..io import open_model
from .._threads import thread_limits
from ..stats import within_subject_sem
from .analysis import FIG_ACROSS_MODELS, FIG_ROI, baseline, model_pool, roi_tables
from .regression import version_tag
from .results import RSATables
from .store import StudyStore, combine, fingerprint, method_version

__all__ = ["run_rsa_stage", "rsa_model", "rsa_across_models", "rsa_participants", "ALL_SOUNDS_COL"]

ALL_SOUNDS_COL = "best_layer_rel_all_sounds"
#: ROIs of the ROI-vs-ROI matrix, in the study's order (``rsa_comparison_neural_roi``).
RSA_ROI_VS_ROI = ("Primary", "Lateral", "Posterior", "Anterior")


def rsa_participants(bundle, categories=None, prepare=True, corrected=False, raw=None):
    """Per ROI: ``(subject ids, participants)`` with each participant's (stimuli, voxels)
    mean-over-repetitions array, or, with ``prepare``, their split RSMs and noise ceiling
    (:func:`fastenc.rsa.prepare_participants`, computed once and reused for every model).
    Returns ``(per_roi, fingerprint)``.

    Voxels omitted for NaN are left out. Participants with fewer than 2 voxels in an ROI are left
    out of that ROI (a similarity matrix needs >= 2 features); an ROI with fewer than 2 such
    participants is skipped. ``raw``: the unprepared ``per_roi`` of this bundle, if at hand.
    """
    kept = bundle.kept
    Ym, subj, labels = bundle.mean_responses, bundle.subj_idx, bundle.roi_labels
    if not kept.all():
        Ym, subj, labels = Ym[:, kept], subj[kept], labels[kept]
    if raw is None:
        raw = {}
        for roi in RSA_ROIS:
            in_roi = np.ones(len(subj), bool) if roi == "All" else (labels == roi)
            ids = [s for s in np.unique(subj) if ((subj == s) & in_roi).sum() >= 2]
            if len(ids) >= 2:
                raw[roi] = (ids, [Ym[:, (subj == s) & in_roi] for s in ids])
    per_roi = raw if not prepare else {
        roi: (ids, rsa.prepare_participants(parts, categories=categories, corrected=corrected))
        for roi, (ids, parts) in raw.items()}
    return per_roi, fingerprint(Ym, subj, labels.astype(str), np.array(categories or [], dtype=str),
                                np.array([corrected]))


def rsa_model(data_dir, store: StudyStore, model, randnetw, targets, participants, categories, registry,
              inputs=None, overwrite=False, corrected=False) -> dict:
    """RSA of one model version against ``targets``; stores one RSA unit per target.

    The activations are loaded and hashed; a target's unit is reused only when its input record
    equals ``inputs[target]`` plus that hash, else it is recomputed and written atomically.
    Returns ``{target: (status, reason)}`` with status ``skipped``, ``done`` or ``recomputed``.
    """
    with open_model(data_dir, model, randnetw=randnetw, registry=registry) as acts:
        loaded = list(acts.iter_layers())
    x_hash = combine({f"{i}:{layer}": fingerprint(X) for i, (layer, X) in enumerate(loaded)})
    status, records = {}, {}
    for t in targets:
        records[t] = {**((inputs or {}).get(t) or {}), "activations": x_hash}
        state, reason = (("overwrite", "overwrite") if overwrite
                         else store.rsa_check(t, model, randnetw, records[t], corrected=corrected))
        status[t] = (("skipped", "") if state == "current"
                     else ("recomputed" if state == "stale" else "done", reason or ""))
    if all(st == "skipped" for st, _ in status.values()):
        return status
    layers = rsa.prepare_layers([X for _, X in loaded], categories=categories)
    del loaded
    n_layers = layers.n_items
    for t in targets:
        if status[t][0] == "skipped":
            continue
        recs = []
        for roi, (ids, prepared) in participants[t].items():
            res = rsa.cv_best_layer(layers, prepared)
            alls = rsa.best_layer_all_sounds(layers, prepared)  # the ROI analysis (METHOD §6)
            # relative position of the best layer, median over splits (undefined splits: NaN)
            rel = np.where(res.best_layer >= 0, res.best_layer / max(n_layers - 1, 1), np.nan)
            with np.errstate(all="ignore"):
                rel_med = np.median(rel, axis=1)
            for s, sc, nc, bl, ba in zip(ids, res.score, res.noise_ceiling, rel_med, alls.rel_pos):
                recs.append({"source_model": model, "randnetw": randnetw, "roi": roi, "subj_idx": s,
                             "rsa": sc, "noise_ceiling": nc, "best_layer_rel": bl,
                             "best_layer_rel_all_sounds": ba})
        store.rsa_write(t, model, randnetw, pd.DataFrame(recs), records[t], corrected=corrected)
    return status


@dataclass
class RSAShared:
    """Inputs every RSA task reads (scattered once per Dask worker)."""

    data_dir: str
    out: str
    targets: list
    participants: dict
    categories: list
    registry: object
    inputs: dict
    overwrite: bool = False
    corrected: bool = False


def rsa_task(item, shared: RSAShared, ctx):
    """One model version (an executor task): ``item = (model, randnetw)``."""
    model, randnetw = item
    with thread_limits(ctx.n_threads):
        return rsa_model(shared.data_dir, StudyStore(shared.out), model, randnetw, shared.targets,
                         shared.participants, shared.categories, shared.registry, inputs=shared.inputs,
                         overwrite=shared.overwrite, corrected=shared.corrected)


def run_rsa_stage(plan, store: StudyStore, executor, log, progress=None, say=None) -> dict:
    """METHOD §6 for the plan's neural targets; writes the ``rsa_*`` tables under ``plan.out``.

    ``plan.rsa_corrected=False`` reproduces the study's quirks (Pearson noise ceiling; SEM over
    √(models − 1)); True uses Spearman for the ceiling and √(participants − 1).
    ``progress(n_versions)`` makes the progress bar; ``say(message)`` reports a phase.
    Returns ``{target: RSATables}``.
    """
    targets = plan.neural_targets
    if not targets:
        return {}
    corrected = plan.rsa_corrected
    categories = plan.categories
    stimuli_fp = fingerprint(plan.stimuli["stim_id"].to_numpy(str), np.array(categories, dtype=str))
    cache = store.rsa_cache(corrected)
    raw, participants, inputs = {}, {}, {}
    if say:
        say(f"preparing RSA: participants' RSMs and noise ceilings of {', '.join(targets)}")
    for t in targets:
        raw[t] = rsa_participants(plan.bundles[t], prepare=False)[0]
        participants[t], fp = rsa_participants(plan.bundles[t], categories, corrected=corrected, raw=raw[t])
        inputs[t] = {"method": method_version(), "neural": fp, "splits": fingerprint(plan.splits),
                     "stimuli": stimuli_fp}
        (cache.root / t / ".fingerprint").unlink(missing_ok=True)  # guard of fastenc <= 0.1.0
    bar = progress(len(plan.work)) if progress else None

    def on_result(item, status):
        model, randnetw = item
        skipped = all(st == "skipped" for st, _ in status.values())
        if bar is not None:
            bar.update(1, note=f"{model} (cached)" if skipped else model, skipped=skipped)
        for t, (st, reason) in status.items():
            if st == "recomputed":
                log.add(f"{cache.root.name}/{store.rsa_name(t, model, randnetw)}", reason)

    shared = RSAShared(data_dir=str(plan.data_dir), out=str(plan.out), targets=list(targets),
                       participants=participants, categories=list(categories), registry=plan.registry,
                       inputs=inputs, overwrite=plan.overwrite, corrected=corrected)
    executor.run(rsa_task, [(m, bool(r)) for m, r in plan.work], shared, on_result,
                 label="fastenc-rsa", name=version_tag)
    return {t: _rsa_tables(plan, store, t, participants[t], raw[t]) for t in targets}


def _rsa_tables(plan, store, t, participants, raw) -> RSATables:
    """The tables of METHOD §6 for target ``t`` from its stored RSA units."""
    out, registry, corrected = plan.out, plan.registry, plan.rsa_corrected
    present = plan.models
    bar_pool, bar_label = model_pool(present, registry, FIG_ACROSS_MODELS, with_baseline=True)
    roi_pool, roi_label = model_pool([m for m in present if len(registry.layers(m)) >= 2], registry, FIG_ROI)
    frames = []
    for m, r in plan.work:
        df = store.rsa_read(t, m, r, corrected=corrected)
        if ALL_SOUNDS_COL not in df.columns:  # a table stored by an older fastenc
            df = _add_all_sounds_best_layer(df, plan, m, r, participants)
        frames.append(df)
    long = pd.concat(frames, ignore_index=True)
    long["randnetw"] = long["randnetw"].astype(bool)
    long.to_csv(out / f"rsa_subject-scores_{t}.csv", index=False)
    sdf = rsa_across_models(long, registry, bar_pool, bar_label, corrected)
    sdf.to_csv(out / f"rsa_across-models_{t}.csv", index=False)
    tabs = RSATables(subject_scores=long, across_models=sdf)
    # best layer per ROI: not cross-validated, RSMs of all sounds (METHOD §6)
    d = long[long["roi"].isin(ROI_ORDER) & long["source_model"].isin(roi_pool)]
    if len(d):
        per_subj = d.rename(columns={ALL_SOUNDS_COL: "rel_pos"})[
            ["source_model", "randnetw", "subj_idx", "roi", "rel_pos"]].reset_index(drop=True)
        # the study's RSA error bar divides by sqrt(models - 1) (quirk); corrected: participants
        tabs.best_layer_roi, tabs.best_layer_roi_wilcoxon = roi_tables(
            out, t, per_subj, roi_pool, roi_label, registry, sem="subjects" if corrected else "models",
            prefix="rsa_")
        tabs.best_layer_roi_subjects = per_subj
    _roi_matrices(tabs, out, t, plan.categories, raw, plan.splits)
    return tabs


def rsa_across_models(long, registry, pool, label, corrected) -> pd.DataFrame:
    """RSA bars per ROI: :func:`fastenc.analysis.across_models_summary` of the participants'
    scores (mean, pooling of the within-subject SEM over the figure's set), the noise ceiling
    (mean over participants) and its band ± std / sqrt(participants - 1).

    ``corrected=False`` divides the SEM by √(models pooled − 1), as the study's RSA figure did
    (METHOD §6); True by √(participants − 1), as :func:`across_models_summary` does. Rows are in
    ROI order, trained then permuted, models alphabetical.
    """
    parts = []
    for roi, g in long.groupby("roi", sort=False):
        nc = g.groupby("subj_idx")["noise_ceiling"].first().to_numpy(float)
        d = g.rename(columns={"source_model": "model", "rsa": "score"})[["model", "randnetw", "subj_idx", "score"]]
        summ = an.across_models_summary(d, spectemp=baseline(d["model"]), pool=pool)
        # spectemp has no permuted version: its row in the permuted panel only anchors the SEM
        summ = summ[~((summ["model"] == SPECTEMP) & summ["randnetw"])]
        summ = summ.sort_values(["randnetw", "model"], kind="stable").reset_index(drop=True)
        if not corrected:
            summ["sem"] = _study_rsa_sem(d, summ)
        parts.append(pd.DataFrame({
            "source_model": summ["model"], "randnetw": summ["randnetw"], "roi": roi,
            "rsa_mean": summ["mean"], "rsa_yerr": summ["sem"], "n_participants": summ["n_subjects"],
            "noise_ceiling": float(np.mean(nc)),
            "noise_ceiling_yerr": float(np.std(nc) / np.sqrt(nc.size - 1)) if nc.size >= 2 else np.nan,
            "in_pool": summ["in_pool"], "pooled_models": summ["pooled_models"],
            "model_set": np.where(summ["in_pool"], label, "all models of the panel (not in the set)"),
            "display_name": [registry.display_name(m) for m in summ["model"]]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _study_rsa_sem(d, summ) -> np.ndarray:
    """The study's RSA error bar of each row of ``summ``: the within-subject SEM over the models
    the row pooled (``pooled_models``), divided by √(models − 1) (NaN under 2 models or
    participants)."""
    out = np.full(len(summ), np.nan)
    for i, (model, rn, pooled) in enumerate(zip(summ["model"], summ["randnetw"], summ["pooled_models"])):
        cols = pooled.split(";")
        panel = d[d["model"].isin(cols) & ((d["randnetw"] == rn) | ((d["model"] == SPECTEMP) & ~d["randnetw"]))]
        wide = panel.pivot(index="subj_idx", columns="model", values="score")[cols].to_numpy(float)
        if wide.shape[0] >= 2 and wide.shape[1] >= 2:
            out[i] = within_subject_sem(wide, n=wide.shape[1])[cols.index(model)]
    return out


def _add_all_sounds_best_layer(df, plan, model, randnetw, parts) -> pd.DataFrame:
    """Add the all-sound best layer (:func:`fastenc.rsa.best_layer_all_sounds`) to a stored
    per-model RSA table that predates it (reads the activations again; the store is not changed)."""
    with open_model(plan.data_dir, model, randnetw=randnetw, registry=plan.registry) as acts:
        layers = [X for _, X in acts.iter_layers()]
    df = df.copy()
    df[ALL_SOUNDS_COL] = np.nan
    for roi, (ids, prepared) in parts.items():
        res = rsa.best_layer_all_sounds(layers, prepared)
        for s, v in zip(ids, res.rel_pos):
            df.loc[(df["roi"] == roi) & (df["subj_idx"] == s), ALL_SOUNDS_COL] = v
    return df


def _roi_matrices(tabs: RSATables, out, target, categories, per_roi, splits) -> None:
    """Mean participant RSM per ROI (all sounds, category order) and the ROI-vs-ROI matrix
    (:func:`fastenc.rsa.roi_vs_roi`: per participant and split the Spearman between two ROIs'
    train RSMs, then the mean over participants and splits, docs/method.md §6; the study's
    ``rsa_comparison_neural_roi`` ran the same with one split whose train set is all sounds)."""
    order = rsa.category_order(categories)
    tabs.roi_matrices = {roi: np.mean([rsa.similarity_matrix(p[order]) for p in parts], axis=0)
                         for roi, (_, parts) in per_roi.items()}
    tabs.category_order = [categories[i] for i in order]
    anat = {roi: dict(zip(*per_roi[roi])) for roi in RSA_ROI_VS_ROI if roi in per_roi}
    if anat:
        sim = rsa.roi_vs_roi(anat, splits=splits, categories=categories)
        sim.matrix.to_csv(out / f"rsa_roi-vs-roi_{target}.csv")
        tabs.roi_vs_roi, tabs.roi_vs_roi_n = sim.matrix, sim.n_participants
