"""Glue of ``run_all`` after the regression: read stored units, run METHOD §5/§6, write tidy CSVs.

The computations live in :mod:`fastenc.analysis` (§5) and :mod:`fastenc.rsa` (§6); this module
only reads the result store, calls them and writes tables (``<out>/*.csv``) and figures.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis as an
from .progress import Progress
from .registry import resolve_models
from .store import RecomputeLog, ResultStore, TableCache, combine, fingerprint, method_version

__all__ = ["run_analysis", "run_rsa", "draw_figures", "SPECTEMP"]

SPECTEMP = "spectemp"
NEURAL = ("NH2015", "B2021")


def _layer_values(store, target, model, randnetw, layers, name):
    """Stack one metric over layers: (n_layers, n_targets, n_splits)."""
    return np.stack([store.read(target, model, randnetw, layer, names=[name])[name] for layer in layers])


def _roi_meta(data_dir, target):
    from .io import load_neural
    nd = load_neural(data_dir, target)
    return nd.roi_meta["subj_idx"].to_numpy(), nd.roi_meta["roi_label_general"].to_numpy(dtype=object)


def run_analysis(data_dir, out, work, targets, registry, progress=True) -> dict:
    """METHOD §5 on the stored regression results; writes CSVs under ``out``.

    Statistics that pool models use the paper's model sets (:func:`model_pool`): the across-model
    error bars FIG_2_5_MODEL_LIST (+ spectemp), the ROI best-layer analysis FIG_7_MODEL_LIST;
    each output records the models pooled (``pooled_models``, ``model_set``).
    """
    out = Path(out)
    store = ResultStore(out)
    tables = {}
    bar = Progress(len(work) * len(targets), "analysis  ", enabled=progress)
    present = list(dict.fromkeys(m for m, _ in work))
    bar_pool, bar_label = model_pool(present, registry, FIG_ACROSS_MODELS, with_baseline=True)
    roi_pool, roi_label = model_pool([m for m in present if len(registry.layers(m)) >= 2], registry, FIG_ROI)
    for target in targets:
        if target == "NH2015comp":
            tables.update(_components(store, out, target, work, registry, bar))
            continue
        subj, roi = _roi_meta(data_dir, target)
        scores, curves, roi_rows = [], [], []
        for model, randnetw in work:
            layers = registry.layers(model)
            vals = _layer_values(store, target, model, randnetw, layers, "r2_test_c")
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
            bar.update(1, note=f"{target} {model}")
        long = pd.DataFrame(scores)
        long.rename(columns={"model": "source_model"}).to_csv(out / f"subject-scores_{target}.csv", index=False)
        summ = an.across_models_summary(long, spectemp=_baseline(long["model"]), pool=bar_pool)
        summ = summ.rename(columns={"model": "source_model", "mean": "median_r2_test_c_mean",
                                    "sem": "median_r2_test_c_yerr"})
        # spectemp has no permuted version: its row in the permuted panel only anchors the SEM
        summ = summ[~((summ["source_model"] == SPECTEMP) & summ["randnetw"])].reset_index(drop=True)
        summ["model_set"] = np.where(summ["in_pool"], bar_label, "all models of the panel (not in the set)")
        summ["display_name"] = [registry.display_name(m) for m in summ["source_model"]]
        summ.to_csv(out / f"across-models_{target}.csv", index=False)
        tables[f"across-models_{target}"] = summ
        tables[f"subject-scores_{target}"] = long
        cdf = pd.DataFrame(curves)
        cdf.to_csv(out / f"across-layers_{target}.csv", index=False)
        tables[f"across-layers_{target}"] = cdf
        if roi_rows:
            present_rois = set(pd.Series(roi).dropna())
            empty = [r for r in an.ROI_ORDER if r not in present_rois]
            if empty:
                warnings.warn(f"{target}: no voxel in ROI(s) {empty}; their best-layer rows are NaN",
                              stacklevel=2)
            per_subj = pd.concat(roi_rows, ignore_index=True)
            tables.update(_roi_tables(out, target, per_subj, roi_pool, roi_label, registry, sem="subjects",
                                      prefix=""))
        comp = _comparisons(long, registry)
        if len(comp):
            comp.to_csv(out / f"model-comparisons_{target}.csv", index=False)
            tables[f"model-comparisons_{target}"] = comp
    return tables


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


def _roi_tables(out, target, per_subj, pool, label, registry, sem, prefix) -> dict:
    """Best layer per ROI across the pooled models (METHOD §5 regression / §6 RSA), trained and
    permuted: ``<prefix>best-layer-roi_<target>.csv`` (long form) and the Wilcoxon tests
    ``<prefix>best-layer-roi-wilcoxon_<target>.csv`` (Primary vs each ROI, the non-primary ROIs
    against each other, across models)."""
    summ = an.roi_summary(per_subj, models=pool, sem=sem)
    summ = summ[ROI_TABLE_COLUMNS + ["n_models", "pooled_models"]]
    summ["model_set"] = label
    summ["display_name"] = [registry.display_name(m) for m in summ["source_model"]]
    summ.to_csv(Path(out) / f"{prefix}best-layer-roi_{target}.csv", index=False)
    res = {f"{prefix}best-layer-roi_{target}": summ,
           f"{prefix}best-layer-roi-subjects_{target}": per_subj}
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
        res[f"{prefix}best-layer-roi-wilcoxon_{target}"] = wdf
    return res


def _baseline(models: pd.Series):
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
        res = an.bootstrap_model_comparison(by[a], by[b], n_boot=10000, seed=0)
        rows.append({"comparison": family, "model_1": a[0], "model_1_randnetw": a[1],
                     "model_2": b[0], "model_2_randnetw": b[1],
                     "mean_1": res.mean_1, "mean_2": res.mean_2, "p_value": res.p_value,
                     "p_value_study": res.p_value_study, "n_resamples": res.n_resamples,
                     "test": "subject bootstrap of model 2, one-sided"})
    return pd.DataFrame(rows)


def _components(store, out, target, work, registry, bar) -> dict:
    rows = []
    iters = {}
    for model, randnetw in work:
        layers = registry.layers(model)
        vals = _layer_values(store, target, model, randnetw, layers, "r2_test")
        names = store_names(store, target, model, randnetw, layers[0])
        df = an.components_independent_splits(vals, component_names=names, clip=False)
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
        bar.update(1, note=f"{target} {model}")
    cdf = pd.DataFrame(rows)
    cdf.to_csv(Path(out) / f"across-models_{target}.csv", index=False)
    res = {f"across-models_{target}": cdf}
    # model comparisons per component: permutation of the pooled per-iteration scores (METHOD §5)
    comp_rows = []
    for family, a, b in comparison_pairs(list(iters), registry):
        for comp, v1 in iters[a].items():
            r = an.permutation_component_comparison(v1, iters[b][comp], n_perm=10000, seed=0)
            comp_rows.append({"comparison": family, "model_1": a[0], "model_1_randnetw": a[1],
                              "model_2": b[0], "model_2_randnetw": b[1], "component": comp,
                              "difference": r.observed, "p_value": r.p_value,
                              "p_value_study": r.p_value_study, "n_resamples": r.n_resamples,
                              "test": "permutation of the pooled iteration scores, one-sided"})
    if comp_rows:
        comp_df = pd.DataFrame(comp_rows)
        comp_df.to_csv(Path(out) / f"model-comparisons_{target}.csv", index=False)
        res[f"model-comparisons_{target}"] = comp_df
    return res


def store_names(store, target, model, randnetw, layer):
    import h5py
    with h5py.File(store.path(target, model, randnetw, layer), "r") as f:
        return [n.decode() for n in f["target_names"][()]]


RSA_ROIS = ("All", "Primary", "Lateral", "Posterior", "Anterior")


def _rsa_participants(data_dir, target, categories=None, prepare=True, corrected=False):
    """Per ROI: (subject ids, participants) with each participant's (165, voxels)
    mean-over-repetitions array, or, with ``prepare``, their split RSMs and noise ceiling
    (:func:`fastenc.rsa.prepare_participants`, computed once and reused for every model).

    Participants with fewer than 2 voxels in an ROI are left out of that ROI (a similarity
    matrix needs >= 2 features); an ROI with fewer than 2 such participants is skipped.
    """
    from . import rsa
    from .io import load_neural
    nd = load_neural(data_dir, target)
    Ym = nd.Y.mean(axis=2)
    subj = nd.roi_meta["subj_idx"].to_numpy()
    labels = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
    per_roi = {}
    for roi in RSA_ROIS:
        in_roi = np.ones(len(subj), bool) if roi == "All" else (labels == roi)
        ids = [s for s in np.unique(subj) if ((subj == s) & in_roi).sum() >= 2]
        if len(ids) >= 2:
            parts = [Ym[:, (subj == s) & in_roi] for s in ids]
            per_roi[roi] = (ids, rsa.prepare_participants(parts, categories=categories, corrected=corrected)
                                 if prepare else parts)
    return per_roi, fingerprint(Ym, subj, labels.astype(str), np.array(categories or [], dtype=str),
                                np.array([corrected]))


def rsa_model(data_dir, out, model, randnetw, targets, participants, categories, registry,
              cache_root=None, inputs=None, overwrite=False) -> dict:
    """RSA of one model version against ``targets``; caches ``<out>/rsa/<target>/<model>[_randnetw].csv``.

    Runs in the driver or on a Dask worker (``run_rsa(..., client=...)``). The activations are
    loaded and hashed; a target's cached table is reused only when its input record
    (:class:`fastenc.store.TableCache`) equals ``inputs[target]`` plus that hash, else it is
    recomputed and written atomically. Returns ``{target: (status, reason)}`` with status
    ``skipped``, ``done`` or ``recomputed`` (as :func:`fastenc.pipeline.regress_model`).
    """
    from . import rsa
    from .io import open_model

    out = Path(out)
    tag = f"{model}_randnetw" if randnetw else model
    cache = TableCache(cache_root or out / "rsa")
    with open_model(data_dir, model, randnetw=randnetw, registry=registry) as acts:
        loaded = list(acts.iter_layers())
    x_hash = combine({f"{i}:{layer}": fingerprint(X) for i, (layer, X) in enumerate(loaded)})
    status = {}
    for t in targets:
        record = {**((inputs or {}).get(t) or {}), "activations": x_hash}
        state, reason = ("overwrite", "overwrite") if overwrite else cache.check(f"{t}/{tag}", record)
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
        df = pd.DataFrame(recs)
        cache.write(f"{t}/{tag}", df, {**((inputs or {}).get(t) or {}), "activations": x_hash})
    return status


def run_rsa(data_dir, out, work, targets, registry, progress=True, n_threads=None, client=None,
            overwrite=False, corrected=False, log=None) -> dict:
    """METHOD §6 for the neural targets; writes ``rsa_across-models_<target>.csv``.

    Per (model, version) the result of every target × ROI is cached atomically in
    ``<out>/rsa/<target>/<model>[_randnetw].csv`` (``rsa-corrected/`` with ``corrected``) with a
    record of its inputs (:class:`fastenc.store.TableCache`): a cached table is reused only when
    the version's activations, the stimulus order, names and categories, the target's neural
    data, the splits and the method version are unchanged, and is recomputed otherwise (logged
    to ``log``, a :class:`fastenc.store.RecomputeLog`; default: a new one, summarized at the end).
    Activations are read once per model version for all targets and ROIs. With a Dask
    ``client`` the model versions run as tasks on the cluster
    (:func:`fastenc.distributed.run_rsa_dask`).

    ``corrected=False`` reproduces the study's quirks (Pearson noise ceiling; SEM over
    √(models − 1)); ``corrected=True`` uses Spearman for the ceiling and √(participants − 1).
    """
    from . import rsa
    from .io import load_stimuli
    from .splits import seed_splits

    out = Path(out)
    targets = [t for t in targets if t in NEURAL]
    if not targets:
        return {}
    stimuli = load_stimuli(data_dir)
    categories = stimuli["category"].tolist()
    cache_root = out / ("rsa-corrected" if corrected else "rsa")
    own_log = log is None
    log = RecomputeLog(out) if own_log else log
    participants, inputs = {}, {}
    for t in targets:
        participants[t], fp = _rsa_participants(data_dir, t, categories, corrected=corrected)
        inputs[t] = {"method": method_version(), "neural": fp, "splits": fingerprint(seed_splits()),
                     "stimuli": fingerprint(stimuli["stim_id"].to_numpy(str), np.array(categories, dtype=str))}
        (cache_root / t / ".fingerprint").unlink(missing_ok=True)  # guard of fastenc <= 0.1.0
    bar = Progress(len(work), "rsa       ", enabled=progress)

    def on_model(model, randnetw, status):
        skipped = all(st == "skipped" for st, _ in status.values())
        bar.update(1, note=f"{model} (cached)" if skipped else model, skipped=skipped)
        for t, (st, reason) in status.items():
            if st == "recomputed":
                log.add(f"{cache_root.name}/{t}/{model}{'_randnetw' if randnetw else ''}", reason)

    if client is None:
        from .ridge import thread_limits
        with thread_limits(n_threads):
            for model, randnetw in work:
                on_model(model, randnetw,
                         rsa_model(data_dir, out, model, randnetw, targets, participants, categories, registry,
                                   cache_root=cache_root, inputs=inputs, overwrite=overwrite))
    else:
        from .distributed import run_rsa_dask
        run_rsa_dask(client, data_dir, out, work, targets, participants, categories, registry,
                     n_threads=n_threads, on_model=on_model, cache_root=cache_root, inputs=inputs,
                     overwrite=overwrite)
    if own_log:
        log.summary(verbose=progress)
    return _rsa_tables(data_dir, out, work, targets, registry, cache_root, participants, categories,
                       corrected)

ALL_SOUNDS_COL = "best_layer_rel_all_sounds"
#: ROIs of the ROI-vs-ROI matrix, in the study's order (``rsa_comparison_neural_roi``).
RSA_ROI_VS_ROI = ("Primary", "Lateral", "Posterior", "Anterior")


def _rsa_tables(data_dir, out, work, targets, registry, cache_root, participants, categories,
                corrected) -> dict:
    """The tables of METHOD §6 from the per-model RSA results cached under ``cache_root``."""
    out = Path(out)
    present = list(dict.fromkeys(m for m, _ in work))
    bar_pool, bar_label = model_pool(present, registry, FIG_ACROSS_MODELS, with_baseline=True)
    roi_pool, roi_label = model_pool([m for m in present if len(registry.layers(m)) >= 2], registry, FIG_ROI)
    tables = {}
    for t in targets:
        frames = []
        for m, r in work:
            df = pd.read_csv(cache_root / t / f"{m}{'_randnetw' if r else ''}.csv")
            if ALL_SOUNDS_COL not in df.columns:  # a table cached by an older fastenc
                df = _add_all_sounds_best_layer(df, data_dir, m, r, participants[t], registry)
            frames.append(df)
        long = pd.concat(frames, ignore_index=True)
        long["randnetw"] = long["randnetw"].astype(bool)
        long.to_csv(out / f"rsa_subject-scores_{t}.csv", index=False)
        sdf = _rsa_across_models(long, registry, bar_pool, bar_label, corrected)
        sdf.to_csv(out / f"rsa_across-models_{t}.csv", index=False)
        tables[f"rsa_across-models_{t}"] = sdf
        # best layer per ROI: not cross-validated, RSMs of all sounds (METHOD §6)
        d = long[long["roi"].isin(an.ROI_ORDER) & long["source_model"].isin(roi_pool)]
        if len(d):
            per_subj = d.rename(columns={ALL_SOUNDS_COL: "rel_pos"})[
                ["source_model", "randnetw", "subj_idx", "roi", "rel_pos"]].reset_index(drop=True)
            # the study's RSA error bar divides by sqrt(models - 1) (quirk); corrected: participants
            tables.update(_roi_tables(out, t, per_subj, roi_pool, roi_label, registry,
                                      sem="subjects" if corrected else "models", prefix="rsa_"))
        tables.update(_rsa_roi_matrices(data_dir, out, t, categories))
    return tables


def _rsa_sem(M, corrected):
    from . import rsa
    if M.shape[1] < 2 or M.shape[0] < 2:
        return np.full(M.shape[1], np.nan)
    return rsa.within_subject_sem(M, quirk=not corrected)


def _rsa_across_models(long, registry, pool, label, corrected) -> pd.DataFrame:
    """RSA bars per ROI: mean over participants, within-subject SEM pooled over the figure's set
    (FIG_2_5_MODEL_LIST + spectemp, as far as present; other models: their whole panel), the noise
    ceiling (mean over participants) and its band ± std / sqrt(participants - 1)."""
    summ = []
    for roi, g in long.groupby("roi", sort=False):
        nc = g.groupby("subj_idx")["noise_ceiling"].first().to_numpy(float)
        ceiling = float(np.mean(nc))
        ceiling_err = float(np.std(nc) / np.sqrt(nc.size - 1)) if nc.size >= 2 else np.nan
        for rn in (False, True):
            if rn and not g["randnetw"].any():
                continue
            panel = g[(g["randnetw"] == rn) | ((g["source_model"] == SPECTEMP) & ~g["randnetw"])]
            wide = panel.pivot(index="subj_idx", columns="source_model", values="rsa")
            conds = list(wide.columns)
            in_pool = [m for m in conds if m in pool]
            groups = {m: (in_pool if m in in_pool else conds) for m in conds}
            sems = {}
            for grp in {tuple(v) for v in groups.values()}:
                sems[grp] = dict(zip(grp, _rsa_sem(wide[list(grp)].to_numpy(float), corrected)))
            for m in conds:
                if rn and m == SPECTEMP:
                    continue
                grp = tuple(groups[m])
                summ.append({"source_model": m, "randnetw": rn and m != SPECTEMP, "roi": roi,
                             "rsa_mean": float(np.mean(wide[m].to_numpy(float))),
                             "rsa_yerr": float(sems[grp][m]), "n_participants": int(wide.shape[0]),
                             "noise_ceiling": ceiling, "noise_ceiling_yerr": ceiling_err,
                             "in_pool": m in in_pool, "pooled_models": an.joined(grp),
                             "model_set": label if m in in_pool else "all models of the panel (not in the set)",
                             "display_name": registry.display_name(m)})
    return pd.DataFrame(summ).drop_duplicates(["source_model", "randnetw", "roi"]).reset_index(drop=True)


def _add_all_sounds_best_layer(df, data_dir, model, randnetw, parts, registry) -> pd.DataFrame:
    """Add the all-sound best layer (:func:`fastenc.rsa.best_layer_all_sounds`) to a cached
    per-model RSA table that predates it (reads the activations again; the cache is not changed)."""
    from . import rsa
    from .io import open_model
    with open_model(data_dir, model, randnetw=randnetw, registry=registry) as acts:
        layers = [X for _, X in acts.iter_layers()]
    df = df.copy()
    df[ALL_SOUNDS_COL] = np.nan
    for roi, (ids, prepared) in parts.items():
        res = rsa.best_layer_all_sounds(layers, prepared)
        for s, v in zip(ids, res.rel_pos):
            df.loc[(df["roi"] == roi) & (df["subj_idx"] == s), ALL_SOUNDS_COL] = v
    return df


def _rsa_roi_matrices(data_dir, out, target, categories) -> dict:
    """Mean participant RSM per ROI (all sounds, category order) and the ROI-vs-ROI matrix
    (:func:`fastenc.rsa.roi_vs_roi`: per participant and split the Spearman between two ROIs'
    train RSMs, then the mean over participants and splits, docs/method.md §6; the study's
    ``rsa_comparison_neural_roi`` ran the same with one split whose train set is all sounds)."""
    from . import rsa

    order = rsa.category_order(categories)
    per_roi = _rsa_participants(data_dir, target, prepare=False)[0]
    mats = {roi: np.mean([rsa.similarity_matrix(p[order]) for p in parts], axis=0)
            for roi, (_, parts) in per_roi.items()}
    res = {f"rsa_roi-matrices_{target}": mats,
           f"rsa_category-order_{target}": [categories[i] for i in order]}
    anat = {roi: dict(zip(ids, parts)) for roi in RSA_ROI_VS_ROI if roi in per_roi
            for ids, parts in [per_roi[roi]]}
    if anat:
        from .splits import seed_splits
        sim = rsa.roi_vs_roi(anat, splits=seed_splits(), categories=categories)
        sim.matrix.to_csv(Path(out) / f"rsa_roi-vs-roi_{target}.csv")
        res[f"rsa_roi-vs-roi_{target}"] = sim.matrix
        res[f"rsa_roi-vs-roi-n_{target}"] = sim.n_participants
    return res


def draw_figures(out, tables, registry):
    """Draw every figure of the study from the tables into ``<out>/figures`` (PNG and PDF)."""
    from . import figures

    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = {m: registry.display_name(m) for m in registry.model_names()}
    for t in NEURAL:
        long = tables.get(f"subject-scores_{t}")
        if long is not None and len(long):
            summ = tables.get(f"across-models_{t}")
            pool = (list(summ.loc[summ["in_pool"], "source_model"])
                    if summ is not None and "in_pool" in summ else None)
            figures.plot_across_models(long, spectemp=_baseline(long["model"]), pool=pool,
                                       display_names=names, title=f"{t}: best layer on independent splits",
                                       path=fig_dir / f"across-models_{t}")
        for prefix, what in (("", "best model stage per anatomical ROI (regression)"),
                             ("rsa_", "best model stage per anatomical ROI (RSA, all sounds)")):
            roi = tables.get(f"{prefix}best-layer-roi_{t}")
            if roi is None or not len(roi):
                continue
            for rn in (False, True):
                if (roi["randnetw"] == rn).any():
                    figures.plot_roi_best_layer(roi, pvalues=tables.get(f"{prefix}best-layer-roi-wilcoxon_{t}"),
                                                randnetw=rn, display_names=names, title=f"{t}: {what}",
                                                path=fig_dir / f"{prefix}best-layer-roi{'_randnetw' if rn else ''}_{t}")
        curves = tables.get(f"across-layers_{t}")
        if curves is not None and len(curves):
            _plot_curves(figures, curves, names, t, fig_dir)
        rsa_t = tables.get(f"rsa_across-models_{t}")
        if rsa_t is not None and len(rsa_t):
            figures.plot_rsa_across_models(rsa_t, display_names=names, title=f"{t}: human–model RSA",
                                           spectemp=_baseline(rsa_t["source_model"]),
                                           path=fig_dir / f"rsa_across-models_{t}")
        mats = tables.get(f"rsa_roi-matrices_{t}")
        if mats:
            cats = tables[f"rsa_category-order_{t}"]
            bounds = [0] + [i for i in range(1, len(cats)) if cats[i] != cats[i - 1]] + [len(cats)]
            figures.plot_roi_matrices(mats, tables.get(f"rsa_roi-vs-roi_{t}"), category_bounds=bounds,
                                      category_names=[cats[b] for b in bounds[:-1]],
                                      title=f"{t}: human representational similarity per ROI",
                                      path=fig_dir / f"rsa_roi-matrices_{t}")
    comp = tables.get("across-models_NH2015comp")
    if comp is not None and len(comp):
        trained = comp[~comp["randnetw"]]
        scores = trained.pivot(index="source_model", columns="component", values="median_r2_test_mean")
        errors = trained.pivot(index="source_model", columns="component", values="median_r2_test_yerr")
        figures.plot_components(scores, errors, display_names=names,
                                spectemp=SPECTEMP if SPECTEMP in scores.index else None,
                                path=fig_dir / "components_NH2015comp")


def _plot_curves(figures, curves, names, target, fig_dir):
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
                                   path=fig_dir / f"across-layers_{target}")
