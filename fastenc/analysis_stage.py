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
    """METHOD §5 on the stored regression results; writes CSVs under ``out``."""
    out = Path(out)
    store = ResultStore(out)
    tables = {}
    bar = Progress(len(work) * len(targets), "analysis  ", enabled=progress)
    for target in targets:
        if target == "NH2015comp":
            tables.update(_components(store, out, target, work, registry, bar))
            continue
        subj, roi = _roi_meta(data_dir, target)
        scores, curves, roi_tables = [], [], {}
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
            if not randnetw and len(layers) >= 2:
                roi_tables[model] = an.best_layer_per_roi(vals, subj, roi)
            bar.update(1, note=f"{target} {model}")
        long = pd.DataFrame(scores)
        long.rename(columns={"model": "source_model"}).to_csv(out / f"subject-scores_{target}.csv", index=False)
        summ = an.across_models_summary(long, spectemp=_baseline(long["model"]))
        summ = summ.rename(columns={"model": "source_model", "mean": "median_r2_test_c_mean",
                                    "sem": "median_r2_test_c_yerr"})
        # spectemp has no permuted version: its row in the permuted panel only anchors the SEM
        summ = summ[~((summ["source_model"] == SPECTEMP) & summ["randnetw"])].reset_index(drop=True)
        summ["display_name"] = [registry.display_name(m) for m in summ["source_model"]]
        summ.to_csv(out / f"across-models_{target}.csv", index=False)
        tables[f"across-models_{target}"] = summ
        tables[f"subject-scores_{target}"] = long
        cdf = pd.DataFrame(curves)
        cdf.to_csv(out / f"across-layers_{target}.csv", index=False)
        tables[f"across-layers_{target}"] = cdf
        if roi_tables:
            present = set(pd.Series(roi).dropna())
            empty = [r for r in an.ROI_ORDER if r not in present]
            if empty:
                warnings.warn(f"{target}: no voxel in ROI(s) {empty}; their best-layer columns are NaN",
                              stacklevel=2)
            per_model = an.roi_model_table(roi_tables)
            per_model.to_csv(out / f"best-layer-roi_{target}.csv")
            tables[f"best-layer-roi_{target}"] = per_model
            if len(per_model) >= 2:
                wil = an.roi_wilcoxon(per_model)
                wil.to_csv(out / f"best-layer-roi-wilcoxon_{target}.csv")
                tables[f"best-layer-roi-wilcoxon_{target}"] = wil
        comp = _comparisons(long)
        if len(comp):
            comp.to_csv(out / f"model-comparisons_{target}.csv", index=False)
            tables[f"model-comparisons_{target}"] = comp
    return tables


def _baseline(models: pd.Series):
    """``SPECTEMP`` when it is present beside other models (then drawn as the baseline band);
    None when it is absent or alone (then it is an ordinary bar)."""
    return SPECTEMP if (models == SPECTEMP).any() and (models != SPECTEMP).any() else None


def _comparisons(long: pd.DataFrame) -> pd.DataFrame:
    """Each trained model vs its permuted version and vs spectemp: subject bootstrap (METHOD §5)."""
    rows = []
    trained = long[~long["randnetw"]]
    by = {(m, r): g.sort_values("subj_idx")["score"].to_numpy() for (m, r), g in long.groupby(["model", "randnetw"])}
    for model in trained["model"].unique():
        if model == SPECTEMP:
            continue
        for other in ((model, True), (SPECTEMP, False)):
            if other not in by:
                continue
            res = an.bootstrap_model_comparison(by[(model, False)], by[other], n_boot=10000, seed=0)
            rows.append({"model_1": model, "model_2": other[0], "model_2_randnetw": other[1],
                         "mean_1": float(np.mean(by[(model, False)])), "mean_2": float(np.mean(by[other])),
                         "p_value": res.p_value})
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
        iters[(model, randnetw)] = dict(zip(df.index, it))
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
    for (model, randnetw), per in iters.items():
        if randnetw or model == SPECTEMP:
            continue
        for other in ((model, True), (SPECTEMP, False)):
            if other not in iters:
                continue
            for comp, v1 in per.items():
                r = an.permutation_component_comparison(v1, iters[other][comp], n_perm=10000, seed=0)
                comp_rows.append({"model_1": model, "model_2": other[0], "model_2_randnetw": other[1],
                                  "component": comp, "difference": r.observed, "p_value": r.p_value,
                                  "p_greater": r.p_greater})
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
            # relative position of the best layer, median over splits (undefined splits: NaN)
            rel = np.where(res.best_layer >= 0, res.best_layer / max(n_layers - 1, 1), np.nan)
            with np.errstate(all="ignore"):
                rel_med = np.median(rel, axis=1)
            for s, sc, nc, bl in zip(ids, res.score, res.noise_ceiling, rel_med):
                recs.append({"source_model": model, "randnetw": randnetw, "roi": roi, "subj_idx": s,
                             "rsa": sc, "noise_ceiling": nc, "best_layer_rel": bl})
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
    tables = {}
    for t in targets:
        long = pd.concat([pd.read_csv(cache_root / t / (f"{m}_randnetw" if r else m).__add__(".csv"))
                          for m, r in work], ignore_index=True)
        long.to_csv(out / f"rsa_subject-scores_{t}.csv", index=False)
        summ = []
        for roi, g in long.groupby("roi", sort=False):
            ceiling = float(g.groupby("subj_idx")["noise_ceiling"].first().mean())
            for rn in (False, True):
                panel = g[(g["randnetw"] == rn) | ((g["source_model"] == SPECTEMP) & ~g["randnetw"])]
                if rn and not (g["randnetw"]).any():
                    continue
                wide = panel.pivot_table(index="subj_idx", columns="source_model", values="rsa")
                sem = (rsa.within_subject_sem(wide.to_numpy(), quirk=not corrected) if wide.shape[1] >= 2
                       else np.full(wide.shape[1], np.nan))
                for j, m in enumerate(wide.columns):
                    if rn and m == SPECTEMP:
                        continue
                    summ.append({"source_model": m, "randnetw": rn and m != SPECTEMP, "roi": roi,
                                 "rsa_mean": float(wide[m].mean()), "rsa_yerr": float(sem[j]),
                                 "noise_ceiling": ceiling, "display_name": registry.display_name(m)})
        sdf = pd.DataFrame(summ).drop_duplicates(["source_model", "randnetw", "roi"])
        sdf.to_csv(out / f"rsa_across-models_{t}.csv", index=False)
        tables[f"rsa_across-models_{t}"] = sdf
        tables.update(_rsa_roi_tables(out, t, long, registry))
        tables.update(_rsa_roi_matrices(data_dir, out, t, categories, registry))
    return tables


def _rsa_roi_tables(out, target, long, registry) -> dict:
    """RSA best layer per ROI: per trained model, mean over participants of the relative best-layer
    position (median over splits); Primary vs Anterior/Lateral/Posterior by Wilcoxon across models."""
    d = long[~long["randnetw"].astype(bool) & (long["roi"].isin(an.ROI_ORDER))]
    d = d[d["source_model"].map(lambda m: len(registry.layers(m)) >= 2)]
    if d.empty or "best_layer_rel" not in d:
        return {}
    table = (d.groupby(["source_model", "roi"])["best_layer_rel"].mean().unstack("roi")
             .reindex(columns=list(an.ROI_ORDER)))
    table.index.name = "model"
    table.to_csv(Path(out) / f"rsa_best-layer-roi_{target}.csv")
    res = {f"rsa_best-layer-roi_{target}": table}
    complete = table.dropna()
    if len(complete) >= 2:
        wil = an.roi_wilcoxon(complete)
        wil.to_csv(Path(out) / f"rsa_best-layer-roi-wilcoxon_{target}.csv")
        res[f"rsa_best-layer-roi-wilcoxon_{target}"] = wil
    return res


def _rsa_roi_matrices(data_dir, out, target, categories, registry) -> dict:
    """Mean participant RSM per ROI (all sounds, category order) and the ROI-vs-ROI Spearman matrix."""
    from . import rsa

    order = rsa.category_order(categories)
    mats = {}
    for roi, (_, parts) in _rsa_participants(data_dir, target, prepare=False)[0].items():
        mats[roi] = np.mean([rsa.similarity_matrix(p[order]) for p in parts], axis=0)
    names = list(mats)
    C = np.array([[rsa.compare(mats[a], mats[b]) for b in names] for a in names])
    roi_corr = pd.DataFrame(C, index=names, columns=names)
    roi_corr.to_csv(Path(out) / f"rsa_roi-vs-roi_{target}.csv")
    return {f"rsa_roi-matrices_{target}": mats, f"rsa_roi-vs-roi_{target}": roi_corr,
            f"rsa_category-order_{target}": [categories[i] for i in order]}


def draw_figures(out, tables, registry):
    """Draw every figure of the study from the tables into ``<out>/figures`` (PNG and PDF)."""
    from . import figures

    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = {m: registry.display_name(m) for m in registry.model_names()}
    for t in NEURAL:
        long = tables.get(f"subject-scores_{t}")
        if long is not None and len(long):
            figures.plot_across_models(long, spectemp=_baseline(long["model"]),
                                       display_names=names, title=f"{t}: best layer on independent splits",
                                       path=fig_dir / f"across-models_{t}")
        roi = tables.get(f"best-layer-roi_{t}")
        if roi is not None and len(roi) >= 1:
            wil = tables.get(f"best-layer-roi-wilcoxon_{t}")
            figures.plot_roi_best_layer(roi, pvalues=wil, display_names=names,
                                        title=f"{t}: best model stage per anatomical ROI",
                                        path=fig_dir / f"best-layer-roi_{t}")
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
        rroi = tables.get(f"rsa_best-layer-roi_{t}")
        if rroi is not None and len(rroi.dropna()) >= 1:
            figures.plot_roi_best_layer(rroi.dropna(), pvalues=tables.get(f"rsa_best-layer-roi-wilcoxon_{t}"),
                                        display_names=names, title=f"{t}: RSA best model stage per ROI",
                                        path=fig_dir / f"rsa_best-layer-roi_{t}")
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
