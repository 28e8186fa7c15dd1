"""Voxel stage: per-voxel outputs from the stored regression units (the paper's Fig. 6 voxel maps,
METHOD §9, and the across-layer curves per anatomical ROI).

Model versions are read one at a time (``r2_test_c`` of every layer of one version against one
target); their per-voxel arrays are dropped before the next version is read, so the whole study
never holds all models' per-voxel arrays. Per version and neural target:

* the best layer of every voxel (:func:`fastenc.voxelmaps.voxel_best_layer`: argmax over layers of
  the clipped median r2_c, the study's tie rule), appended to ``<out>/voxel-best-layer_<t>.csv``
  (written under a temporary name and renamed when complete; not held in memory);
* the median subject per flattened-surface coordinate
  (:func:`fastenc.voxelmaps.average_subject_surface`; ``pos``, ``rel_pos`` and the best r2_c) ->
  ``voxel-median-subject_<t>.csv`` (small: one row per coordinate and version);
* the preferred-layer counts and the study's colour-scale limit (the most preferred layer + 1,
  pooled over NH2015 and B2021, :func:`fastenc.voxelmaps.colour_scale_limit`) ->
  ``voxel-layer-counts_<t>.csv``;
* per anatomical ROI the across-layer curve (:func:`fastenc.analysis.across_layer_curve` on the
  ROI's voxels: per participant the median over the ROI's voxels of the clipped median r2_c per
  layer; mean over participants ± within-subject SEM) -> ``across-layers-roi_<t>.csv``.

Then the median over models (:func:`fastenc.voxelmaps.average_model_surface`) of the per-version
coordinate tables, trained and permuted apart, over FIG_7_MODEL_LIST (or the models present; the
``pooled_models`` and ``model_set`` columns say which) -> ``voxel-median-model_<t>.csv``.

These tables are derived from the stored units and are cheap (one read of one metric per
version), so every run recomputes them: they are never stale. With ``export_mat`` the study's
``.mat`` files (:func:`fastenc.voxelmaps.export_surface_mat`) are written under
``<out>/surface-mat/`` in the study's folder layout (:func:`fastenc.voxelmaps.study_surface_folder`).
"""
from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis as an
from .. import voxelmaps as vm
from ..constants import ROI_ORDER
from .analysis import FIG_ROI, model_pool
from .results import VoxelTables
from .store import StudyStore

__all__ = ["run_voxel_stage", "version_best_layers", "version_surfaces", "VOXEL_TABLE_COLUMNS",
           "ROI_CURVE_COLUMNS"]

VOXEL_TABLE_COLUMNS = ["source_model", "randnetw", "voxel_id", "subj_idx", "hemi", "x_ras", "y_ras", "pos",
                       "rel_pos", "best_median_r2_test_c", "layer"]
ROI_CURVE_COLUMNS = ["source_model", "randnetw", "roi", "layer", "layer_pos", "median_r2_test_c_mean",
                     "median_r2_test_c_yerr", "n_participants"]
SURFACE_VALUES = ("pos", "rel_pos", "best_median_r2_test_c")


def voxel_targets(plan) -> list:
    """The neural targets of ``plan`` whose voxel metadata has coordinates (the voxel maps' targets)."""
    return [t for t in plan.neural_targets if plan.bundles[t].voxel_meta is not None]


def run_voxel_stage(plan, store: StudyStore, export_mat: bool = False, progress=None) -> dict:
    """The voxel maps and per-ROI across-layer curves of ``plan`` (see the module docstring).

    Returns ``{target: VoxelTables}`` for the neural targets whose voxel metadata has
    ``hemi, x_ras, y_ras``.
    """
    targets = voxel_targets(plan)
    if not targets:
        return {}
    out, registry = plan.out, plan.registry
    tmp = {t: out / f".voxel-best-layer_{t}.csv.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}" for t in targets}
    subj_tabs = {t: [] for t in targets}
    counts = {t: [] for t in targets}
    curves = {t: [] for t in targets}
    surfaces = {t: {} for t in targets}  # (model, randnetw) -> per-coordinate table (small)
    mats = {t: [] for t in targets}
    first = {t: True for t in targets}
    try:
        for model, randnetw in plan.work:
            layers = registry.layers(model)
            per_target = {}
            for t in targets:
                b = plan.bundles[t]
                kept = b.kept
                subj, roi = b.subj_idx, b.roi_labels
                if not kept.all():
                    subj, roi = subj[kept], roi[kept]
                med, table = version_best_layers(store, t, model, randnetw, layers, b.voxel_meta, kept)
                n_meta = int(kept.sum())
                if len(table) < n_meta:
                    warnings.warn(f"{t} {model}{' (permuted)' if randnetw else ''}: {n_meta - len(table)} "
                                  "voxel(s) with NaN scores left out of the voxel maps", stacklevel=2)
                table.insert(0, "randnetw", bool(randnetw))
                table.insert(0, "source_model", model)
                table.to_csv(tmp[t], mode="w" if first[t] else "a", header=first[t], index=False)
                first[t] = False
                per_target[t] = table[["pos"]]
                surf = _subject_surface(table)
                surfaces[t][(model, bool(randnetw))] = surf
                subj_tabs[t].append(surf.assign(source_model=model, randnetw=bool(randnetw)))
                if export_mat:
                    mats[t] += _export(out, t, model, randnetw, table, surf)
                curves[t] += _roi_curves(med, subj, roi, layers, model, randnetw)
                del table, med
                if progress is not None:
                    progress.update(1, note=f"{t} {model}")
            lim = vm.colour_scale_limit(per_target.values(), len(layers))
            for t, tab in per_target.items():
                n = vm.layer_histogram(tab, len(layers))
                counts[t].append(pd.DataFrame({
                    "source_model": model, "randnetw": bool(randnetw), "layer": layers,
                    "pos": np.arange(1, len(layers) + 1), "n_voxels": n,
                    "colour_scale_max_pos": lim["argmax_pos_plus1"]}))
        for t in targets:
            os.replace(tmp[t], out / f"voxel-best-layer_{t}.csv")
    finally:
        for p in tmp.values():
            if p.exists():
                p.unlink()
    results = {}
    present = [m for m in plan.models if len(registry.layers(m)) >= 2]
    pool, label = model_pool(present, registry, FIG_ROI)
    for t in targets:
        cols = ["source_model", "randnetw", "hemi", "coord_id", "x_ras", "y_ras", "shared_by", "n_voxels",
                *SURFACE_VALUES]
        subj_df = pd.concat(subj_tabs[t], ignore_index=True)[cols]
        subj_df.to_csv(out / f"voxel-median-subject_{t}.csv", index=False)
        model_df = _model_surface(surfaces[t], pool, label)
        if model_df is not None:
            model_df.to_csv(out / f"voxel-median-model_{t}.csv", index=False)
            if export_mat:
                for rn, g in model_df.groupby("randnetw"):
                    folder = out / "surface-mat" / vm.study_surface_folder(
                        "all-good-models", t, "rel_pos*10+1", bool(rn), kind="subj-median-argmax-model-median")
                    mats[t] += vm.export_surface_mat(g.assign(vals=vm.study_plot_values(g["rel_pos"])), folder,
                                                     value="vals", model="all-good-models")
        cnt = pd.concat(counts[t], ignore_index=True)
        cnt.to_csv(out / f"voxel-layer-counts_{t}.csv", index=False)
        roi_df = pd.DataFrame(curves[t], columns=ROI_CURVE_COLUMNS)
        roi_df.to_csv(out / f"across-layers-roi_{t}.csv", index=False)
        results[t] = VoxelTables(best_layer_path=out / f"voxel-best-layer_{t}.csv", subject_surface=subj_df,
                                 model_surface=model_df, layer_counts=cnt, across_layers_roi=roi_df,
                                 mat_files=mats[t])
    return results


def version_best_layers(store: StudyStore, target: str, model: str, randnetw: bool, layers, voxel_meta: pd.DataFrame,
                        kept: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """One model version against one neural target, from its stored units: ``(med, table)``, the
    clipped median r2_c over splits (layers x scored voxels) and the best layer of every scored
    voxel (:func:`fastenc.voxelmaps.voxel_best_layer`, voxels with NaN scores left out).
    ``voxel_meta`` holds every voxel of the target, ``kept`` marks the scored ones."""
    vals = store.layer_values(target, model, randnetw, layers, "r2_test_c")
    meta = voxel_meta
    if not kept.all():
        vals, meta = vals[:, kept], meta[kept].reset_index(drop=True)
    med = np.minimum(np.median(vals, axis=2), 1.0)  # clipped median r2_c, layer x voxel
    del vals
    return med, vm.voxel_best_layer(med, meta, layers, clip=False, nan_policy="omit")


def version_surfaces(out, model: str, randnetw: bool, layers, targets) -> tuple[dict, int]:
    """The per-coordinate tables of one model version (the median subject per flattened-surface
    coordinate of ``pos``, ``rel_pos`` and the best r2_c, as ``voxel-median-subject_<t>.csv``
    holds them) and its colour-scale limit (pooled over the targets, as the voxel stage's
    ``voxel-layer-counts``), from the stored units under ``out``. ``targets``: ``(name,
    voxel_meta, kept)`` per neural target. What a version's voxel maps are drawn from while the
    next version is computed (:func:`fastenc.study.figures.draw_version_maps`)."""
    store = StudyStore(out)
    surfs, tabs = {}, []
    for t, meta, kept in targets:
        _, table = version_best_layers(store, t, model, randnetw, layers, meta, np.asarray(kept, bool))
        tabs.append(table[["pos"]])
        surfs[t] = _subject_surface(table)
    return surfs, int(vm.colour_scale_limit(tabs, len(layers))["argmax_pos_plus1"])


def _subject_surface(table: pd.DataFrame) -> pd.DataFrame:
    """Median subject per coordinate of ``pos``, ``rel_pos`` and the best r2_c (study: pooled voxels)."""
    return vm.average_subject_surface(table, value=list(SURFACE_VALUES))


def _model_surface(surfaces: dict, pool: list, label: str) -> pd.DataFrame | None:
    """Median over the pooled models, trained and permuted apart, from the per-version coordinate
    tables (one small table per version)."""
    parts = []
    for rn in (False, True):
        models = [m for m in pool if (m, rn) in surfaces]
        if not models:
            continue
        tabs = [surfaces[(m, rn)] for m in models]
        df = vm.average_model_surface(tabs, value=["rel_pos", "best_median_r2_test_c"], models=models)
        df.insert(0, "randnetw", rn)
        df["pooled_models"] = an.joined(models)
        df["model_set"] = label
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else None


def _roi_curves(med, subj, roi, layers, model, randnetw) -> list:
    rows = []
    if roi is None:
        return rows
    for r in ROI_ORDER:
        m = roi == r
        if not m.any():
            continue
        c = an.across_layer_curve(med[:, m], subj[m], layer_names=layers)
        n = int(c.per_subject.shape[0])
        for li, layer in enumerate(layers):
            rows.append((model, bool(randnetw), r, layer, li, float(c.mean[li]), float(c.sem[li]), n))
    return rows


def _export(out: Path, target, model, randnetw, table, surf) -> list:
    """The study's .mat files of one version: per participant x hemisphere (``pos``) and the
    median subject per hemisphere."""
    base = Path(out) / "surface-mat"
    files = vm.export_surface_mat(table, base / vm.study_surface_folder(model, target, "pos", bool(randnetw)),
                                  value="pos", model=model)
    files += vm.export_surface_mat(surf, base / vm.study_surface_folder(model, target, "pos", bool(randnetw),
                                                                        kind="subj-median-argmax"),
                                   value="pos", model=model)
    return files
