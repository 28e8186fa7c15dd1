"""Your own datasets in ``run-all`` (issue #12): every layer of every model scored against a
dataset manifest (:mod:`fastenc.dataset`), stored and reused like the study's units, then the
METHOD §5 summaries and figures of that dataset.

Stages are plain functions, as the study's: :func:`plan_dataset` (the manifest, the models whose
activations are present, the input record) → :func:`run_dataset_regression` (one executor task
per model version; each layer is one unit of :class:`~fastenc.study.store.StudyStore` under
``<out>/regression/dataset-<name>/``, reused only while its input record — activations, stimulus
ids, responses, splits, alpha grid, METHOD_VERSION — is unchanged, else recomputed and logged
to ``<out>/fastenc.log``) → :func:`run_dataset_analysis` (tables ``<out>/dataset-<name>_*.csv``)
→ :func:`draw_dataset_figures` (``<out>/figures/dataset-<name>_*.png``).
:func:`plan_datasets` plans (and checks) a list of datasets, :func:`run_dataset_stage` runs them.

Activations live under the dataset's ``activations`` folder (default: the manifest's folder) in
the study's layout: ``model_actv/<model>/natsound_activations[_randnetw].h5`` ((stimuli, units)
per layer, rows in the manifest's stimulus order) or one pickle per stimulus,
``model_actv/<model>/<stimulus_id>_activations[_randnetw].pkl``; models that are not in the
study's registry are described in ``<activations>/fastenc_models.json``.

The summaries (docs/outputs.md, "Your own datasets"): the unit of replication is the participant
(``participant`` column of the targets table) or, without that column, the target. Per layer
the median over targets of each target's median over splits (``r2_test_c`` clipped at 1 after
the median, as METHOD §5); per model version the best layer on independent splits
(:func:`fastenc.analysis.best_layer_any_splits`, which is the study's procedure on 10 splits)
and across models the mean over units ± within-unit SEM (:func:`fastenc.analysis.across_models_summary`).
With one repetition there is no noise correction and ``r2_test`` is used instead (``metric``
column). RSA is not run for datasets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis as an
from ..constants import SPECTEMP
from ..dataset import Dataset, load_dataset
from ..io import activation_paths, open_model
from ..registry import MANIFEST_FILENAME, Registry, load_registry, resolve_models
from ..ridge import check_alphas
from .analysis import baseline
from .results import DatasetTables
from .regression import UnitTally, version_tag
from .store import RecomputeLog, StudyStore, fingerprint, method_version

__all__ = ["DatasetPlan", "plan_dataset", "dataset_key", "dataset_models", "run_dataset_regression",
           "run_dataset_analysis", "draw_dataset_figures", "plan_datasets", "run_dataset_stage", "dataset_provenance",
           "RSA_NOTE"]

ALL = "all"
#: the note written to ``figures/SKIPPED.txt`` for each dataset
RSA_NOTE = "RSA is not run for manifest datasets (regression only; docs/outputs.md)"


def dataset_key(name: str) -> str:
    """``dataset-<name>``: the prefix of a dataset's output files and its folder in the store."""
    return "dataset-" + re.sub(r"[^A-Za-z0-9_.+-]", "_", str(name))


@dataclass
class DatasetPlan:
    """One dataset of a run: the loaded :class:`~fastenc.dataset.Dataset`, where its activations
    are, the registry, the model versions ``(model, randnetw)`` to score, and the input record
    of its units (all but the activations hash)."""

    dataset: Dataset
    key: str
    root: Path
    registry: Registry
    work: list
    alphas: np.ndarray
    inputs: dict
    out: Path
    n_threads: int | None = None
    overwrite: bool = False
    progress: bool = True

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def models(self) -> list:
        return list(dict.fromkeys(m for m, _ in self.work))

    def layers(self, model) -> list:
        return self.registry.layers(model)


def _where(ds: Dataset) -> str:
    return f"dataset {ds.name!r}" + (f" ({ds.manifest})" if ds.manifest is not None else "")


def dataset_models(ds: Dataset, root: Path, registry: Registry, models=None) -> list:
    """The model versions ``(model, randnetw)`` to score for ``ds``: ``models`` (names or
    registry model sets) or every model with a folder under ``<root>/model_actv``, each with the
    versions whose files are all present (read by ``ds.stimulus_ids`` for per-stimulus pickles).

    Raises ``ValueError`` for an unknown model and ``FileNotFoundError`` for a requested model
    without activations or an incomplete set of pickles (naming the files)."""
    where = _where(ds)
    folder = Path(root) / "model_actv"
    hint = f"models outside the study's registry are described in {Path(root) / MANIFEST_FILENAME}"
    if models is not None:
        try:
            names = resolve_models(list(models), registry)
        except ValueError as e:
            raise ValueError(f"{where}: {e}; {hint}") from e
    else:
        found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []
        unknown = [m for m in found if m not in registry]
        if unknown:
            raise ValueError(f"{where}: {folder} holds activations of unknown model(s) {unknown}; {hint}, "
                             "or list the models to score with models = [...] in the manifest")
        names = [m for m in registry if m in found]
    work = []
    for m in names:
        spec = registry.spec(m)
        versions = []
        for randnetw in ((False, True) if spec.has_randnetw else (False,)):
            paths = activation_paths(root, spec, randnetw, ds.stimulus_ids)
            present = [p.is_file() for p in paths]
            label = f"model {m!r}{' (randnetw)' if randnetw else ''}"
            if all(present):
                versions.append(randnetw)
            elif any(present):
                missing = [p for p, ok in zip(paths, present) if not ok]
                raise FileNotFoundError(f"{where}: activations of {label} are incomplete: {len(missing)} of "
                                        f"{len(paths)} per-stimulus file(s) missing, e.g. "
                                        f"{', '.join(str(p) for p in missing[:3])}")
            elif spec.storage == "per_sound_pickle":
                suffix = "_randnetw" if randnetw else ""
                other = sorted((folder / m).glob(f"*_activations{suffix}.pkl"))
                if other:
                    raise FileNotFoundError(f"{where}: {len(other)} activation pickle(s) of {label} in {folder / m} "
                                            f"(e.g. {other[0].name}) but none named by the dataset's stimulus ids "
                                            f"(expected e.g. {paths[0].name})")
        if versions:
            work += [(m, r) for r in versions]
        else:  # asked for, or a folder of its own under model_actv/: an error, not a silent skip
            expected = activation_paths(root, spec, False, ds.stimulus_ids)[0]
            raise FileNotFoundError(f"{where}: no activations of model {m!r} (expected e.g. {expected})")
    if not work:
        raise FileNotFoundError(f"{where}: no model activations under {folder} (model_actv/<model>/"
                                f"natsound_activations.h5 or one pickle per stimulus); {hint}")
    return work


def dataset_inputs(ds: Dataset, alphas) -> dict:
    """Input record of a dataset's units, all but the activations hash (see
    :data:`fastenc.study.store.INPUT_KINDS`)."""
    return {"method": method_version(),
            "stimuli": fingerprint(np.array(ds.stimulus_ids, dtype=str)),
            "neural": fingerprint(ds.responses, ds.kept, np.array([ds.nan_policy]),
                                  np.array([str(t) for t in ds.targets["target_id"]])),
            "splits": fingerprint(ds.splits),
            "alphas": fingerprint(alphas)}


def plan_dataset(dataset, out, models=None, manifest=None, alphas=None, n_threads=None, overwrite=False,
                 progress=True) -> DatasetPlan:
    """Load ``dataset`` (a manifest path or a :class:`~fastenc.dataset.Dataset`) and plan its run.

    The models are the manifest's ``models``, else ``models``, else every model present under
    the dataset's ``activations`` folder. ``manifest``: an extra model manifest (JSON) merged over
    the shipped registry and ``<activations>/fastenc_models.json``.
    """
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    root = ds.activations if ds.activations is not None else (
        Path(ds.manifest).parent if ds.manifest is not None else None)
    if root is None:
        raise ValueError(f"dataset {ds.name!r} has no manifest: set Dataset.activations to the folder holding "
                         "model_actv/")
    root = Path(root)
    if not (root / "model_actv").is_dir():
        raise FileNotFoundError(f"{_where(ds)}: no model_actv/ folder under {root} (set activations = "
                                "\"<folder holding model_actv/>\" in the manifest)")
    registry = load_registry(root, manifest=manifest)
    alphas = check_alphas(alphas)
    work = dataset_models(ds, root, registry, ds.models if ds.models is not None else models)
    return DatasetPlan(dataset=ds, key=dataset_key(ds.name), root=root.resolve(), registry=registry, work=work,
                       alphas=alphas, inputs=dataset_inputs(ds, alphas), out=Path(out).resolve(),
                       n_threads=n_threads, overwrite=overwrite, progress=progress)


# ---------------------------------------------------------------------------------------------
# regression: one task per model version
# ---------------------------------------------------------------------------------------------
@dataclass
class DatasetShared:
    """What every task of one dataset reads (scattered once per Dask worker)."""

    root: str
    out: str
    key: str
    dataset: Dataset
    registry: Registry
    alphas: np.ndarray
    inputs: dict
    overwrite: bool = False


def regress_dataset_model(shared: DatasetShared, model, randnetw, n_threads=None, on_unit=None) -> list:
    """Score every layer of one model version against the dataset; reuse units computed from the
    same inputs. Returns ``[(layer, status, reason)]`` (status ``skipped``, ``done`` or
    ``recomputed``)."""
    ds = shared.dataset
    store = StudyStore(shared.out)
    where = f"{_where(ds)}, {ds.n_stimuli} stimuli"
    names = [str(t) for t in ds.targets["target_id"]]
    report = []
    try:
        acts = open_model(shared.root, model, randnetw=randnetw, registry=shared.registry, stim_ids=ds.stimulus_ids)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"{where}: {e}") from e
    with acts:
        for layer in acts.layers:
            try:
                X = acts.load_layer(layer)
            except (ValueError, OSError) as e:
                raise type(e)(f"{where}: {e}") from e
            inputs = {**shared.inputs, "activations": fingerprint(X)}
            state, reason = ("overwrite", "overwrite") if shared.overwrite else \
                store.check(shared.key, model, randnetw, layer, inputs)
            if state == "current":
                status, reason = "skipped", ""
            else:
                try:
                    s = ds.score_layer(X, alphas=shared.alphas, n_threads=n_threads)
                except ValueError as e:
                    raise ValueError(f"scoring {model}{' (randnetw)' if randnetw else ''} layer {layer} "
                                     f"against {where}: {e}") from e
                store.write(shared.key, model, randnetw, layer, s.arrays(), s.summary(), names, inputs,
                            attrs={"n_units": X.shape[1], "dataset": ds.name})
                status, reason = ("recomputed" if state == "stale" else "done"), (reason or "")
            report.append((layer, status, reason))
            if on_unit:
                on_unit(layer, status, reason)
    return report


def dataset_task(item, shared: DatasetShared, ctx):
    """One model version of a dataset (an executor task): ``item = (model, randnetw)``."""
    model, randnetw = item

    def on_unit(layer, status, reason):
        ctx.emit([shared.key, model, bool(randnetw), layer, status, reason])

    return regress_dataset_model(shared, model, randnetw, n_threads=ctx.n_threads, on_unit=on_unit)


def regression_progress(plan: DatasetPlan, enabled: bool = True):
    """The progress bar of a dataset's regression units (one step per model version x layer)."""
    from ..progress import Progress
    return Progress(sum(len(plan.layers(m)) for m, _ in plan.work), f"{plan.name[:10]:<10}", enabled=enabled)


def run_dataset_regression(plan: DatasetPlan, store: StudyStore, executor, log: RecomputeLog,
                           progress=None) -> pd.DataFrame:
    """Every (model version, layer) unit of ``plan``; one row per unit (``target`` is the
    dataset's key ``dataset-<name>``), as :func:`fastenc.study.regression.run_regression_stage`."""
    store.cleanup_partial()
    report = UnitTally(store, log, progress)

    def on_result(item, value):
        model, randnetw = item
        for layer, status, reason in value:
            report(plan.key, model, randnetw, layer, status, reason)

    shared = DatasetShared(root=str(plan.root), out=str(plan.out), key=plan.key, dataset=plan.dataset,
                           registry=plan.registry, alphas=plan.alphas, inputs=plan.inputs,
                           overwrite=plan.overwrite)
    executor.run(dataset_task, [(m, bool(r)) for m, r in plan.work], shared, on_result,
                 on_event=lambda ev: report(*ev), label="fastenc-dataset", name=version_tag)
    return report.frame()


# ---------------------------------------------------------------------------------------------
# analysis: METHOD §5 on the stored units
# ---------------------------------------------------------------------------------------------
def _labels(ds: Dataset, column: str):
    if column not in ds.targets:
        return None
    v = ds.targets[column]
    return None if v.isna().all() else v.astype(str).to_numpy(dtype=object)


def _mode(best: np.ndarray) -> tuple:
    """Most often chosen layer index in ``best`` (ignoring -1) and its share; (-1, nan) if none."""
    b = best[best >= 0]
    if not b.size:
        return -1, float("nan")
    counts = np.bincount(b)
    k = int(counts.argmax())
    return k, float(counts[k] / b.size)


def run_dataset_analysis(plan: DatasetPlan, store: StudyStore) -> DatasetTables:
    """The dataset's summaries from the stored units; writes ``<out>/<key>_*.csv`` (docs/outputs.md)."""
    ds, key, reg = plan.dataset, plan.key, plan.registry
    kept = ds.kept
    metric = "r2_test_c" if ds.n_repetitions > 1 else "r2_test"
    ids = ds.targets["target_id"].to_numpy()[kept]
    subj = _labels(ds, "participant")
    roi = _labels(ds, "roi")
    subj = None if subj is None else subj[kept]
    roi = None if roi is None else roi[kept]
    units = subj if subj is not None else np.array([str(t) for t in ids], dtype=object)
    unit_kind = "participants" if subj is not None else "targets"
    rois = [ALL] + ([] if roi is None else list(dict.fromkeys(roi)))
    parts = [ALL] + ([] if subj is None else list(dict.fromkeys(subj)))

    def sel(p, r):
        m = np.ones(len(ids), dtype=bool)
        if p != ALL:
            m &= subj == p
        if r != ALL:
            m &= roi == r
        return m

    groups = [(p, r, sel(p, r)) for r in rois for p in parts]
    groups = [(p, r, m) for p, r, m in groups if m.any()]
    layer_rows, curve_rows, target_rows, subj_rows, long_rows = [], [], [], [], []
    curves = {}
    for model, randnetw in plan.work:
        layers = reg.layers(model)
        vals = store.layer_values(key, model, randnetw, layers, metric)[:, kept, :]
        med = np.median(vals, axis=2)
        if metric == "r2_test_c":
            med = np.minimum(med, 1.0)  # METHOD §5: clip the median r2_c at 1
        med_r2 = np.median(store.layer_values(key, model, randnetw, layers, "r2_test")[:, kept, :], axis=2)
        med_r = np.median(store.layer_values(key, model, randnetw, layers, "r_test")[:, kept, :], axis=2)
        # per layer: the median over targets of each target's median over splits
        for li, layer in enumerate(layers):
            for p, r, m in groups:
                row = {"source_model": model, "randnetw": bool(randnetw), "layer": layer, "layer_pos": li,
                       "participant": p, "roi": r, "n_targets": int(m.sum())}
                if metric == "r2_test_c":
                    row["median_r2_test_c"] = float(np.median(med[li, m]))
                row["median_r2_test"] = float(np.median(med_r2[li, m]))
                row["median_r_test"] = float(np.median(med_r[li, m]))
                layer_rows.append(row)
        # across-layer curves: mean over units of the median over each unit's targets, within-unit SEM
        for r in rois:
            m = sel(ALL, r)
            c = _curve(med[:, m], None if subj is None else subj[m], layers)
            if r == ALL:
                curves[(model, bool(randnetw))] = c
            for li, layer in enumerate(layers):
                curve_rows.append({"source_model": model, "randnetw": bool(randnetw), "roi": r, "layer": layer,
                                   "layer_pos": li, "score_mean": float(c.mean[li]), "score_sem": float(c.sem[li]),
                                   "n_units": int(c.per_subject.shape[0]), "unit": unit_kind, "metric": metric})
        # headline: best layer on independent splits (the study's procedure on 10 splits)
        res = an.best_layer_any_splits(vals, subj, clip=metric == "r2_test_c")
        per_target = np.mean(res.voxel_scores, axis=0)
        counts = (res.best_layer[:, :, None] == np.arange(len(layers))).sum(axis=0)  # (targets, layers)
        k = counts.argmax(axis=1)  # the most often chosen layer (the first of equals), as _mode
        n_chosen = counts.sum(axis=1)
        t = {"source_model": model, "randnetw": bool(randnetw), "target_id": ids}
        if subj is not None:
            t["participant"] = subj
        if roi is not None:
            t["roi"] = roi
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts[np.arange(len(ids)), k] / n_chosen
        t.update({"score": per_target, "best_layer": np.where(n_chosen > 0, np.array(layers, dtype=object)[k], None),
                  "best_layer_share": share})
        target_rows.append(pd.DataFrame(t))
        for r in rois:
            m = sel(ALL, r)
            if subj is not None:
                scores = an.subject_medians(res.voxel_scores[:, m], subj[m]).mean(axis=0, skipna=False)
                for p, v in scores.items():
                    mp = m & (subj == p)
                    k, share = _mode(res.best_layer[:, mp])
                    subj_rows.append({"source_model": model, "randnetw": bool(randnetw), "roi": r, "participant": p,
                                      "score": float(v), "best_layer": layers[k] if k >= 0 else None,
                                      "best_layer_pos": k, "best_layer_share": share, "n_targets": int(mp.sum())})
            else:
                scores = pd.Series(per_target[m], index=units[m])
            k, share = _mode(res.best_layer[:, m])
            long_rows += [{"model": model, "randnetw": bool(randnetw), "roi": r, "subj_idx": u, "score": float(v),
                           "_best": layers[k] if k >= 0 else None, "_pos": k, "_share": share,
                           "_n": int(m.sum())} for u, v in scores.items()]
    layers_df = pd.DataFrame(layer_rows)
    across_layers = pd.DataFrame(curve_rows)
    target_scores = pd.concat(target_rows, ignore_index=True)
    subject_scores = pd.DataFrame(subj_rows) if subj is not None else None
    across_models = _across_models(pd.DataFrame(long_rows), rois, reg, unit_kind, metric)
    tabs = DatasetTables(name=ds.name, key=key, metric=metric, layers=layers_df, across_layers=across_layers,
                         across_models=across_models, target_scores=target_scores, subject_scores=subject_scores,
                         curves=curves, rois=[r for r in rois if r != ALL])
    for stem, df in tabs.named().items():
        df.to_csv(plan.out / f"{stem}.csv", index=False)
    return tabs


def _curve(med, subj, layers) -> an.LayerCurve:
    """:func:`fastenc.analysis.across_layer_curve`; with no participants every target is a unit."""
    if subj is not None:
        return an.across_layer_curve(med, subj, layer_names=layers)
    per = pd.DataFrame(med.T, columns=pd.Index(list(layers), name="layer"))
    m = per.to_numpy()
    sem = an.within_subject_sem(m) if m.shape[0] >= 2 else np.full(m.shape[1], np.nan)
    return an.LayerCurve(per_subject=per, mean=m.mean(axis=0), sem=sem)


def _across_models(long: pd.DataFrame, rois, reg, unit_kind, metric) -> pd.DataFrame:
    """Mean over units ± within-unit SEM across the model versions, per ROI (``all`` first)."""
    out = []
    for r in rois:
        d = long[long["roi"] == r]
        if not len(d):
            continue
        summ = an.across_models_summary(d[["model", "randnetw", "subj_idx", "score"]],
                                        spectemp=baseline(d["model"]))
        # spectemp has no permuted version: its row in the permuted panel only anchors the SEM
        summ = summ[~((summ["model"] == SPECTEMP) & summ["randnetw"])]
        best = d.drop_duplicates(["model", "randnetw"]).set_index(["model", "randnetw"])
        idx = list(zip(summ["model"], summ["randnetw"]))
        # the plain SEM across units too: the within-unit SEM is pooled over the panel's model
        # versions (METHOD §5) and is 0 when a panel has one
        by = {k: g["score"].to_numpy() for k, g in d.groupby(["model", "randnetw"])}
        between = [float(np.std(by[i]) / np.sqrt(len(by[i]) - 1)) if len(by[i]) >= 2 else float("nan")
                   for i in idx]
        out.append(pd.DataFrame({
            "source_model": summ["model"].to_numpy(), "display_name": [reg.display_name(m) for m in summ["model"]],
            "randnetw": summ["randnetw"].to_numpy(), "roi": r, "score_mean": summ["mean"].to_numpy(),
            "score_sem": summ["sem"].to_numpy(), "score_sem_between": between,
            "n_units": summ["n_subjects"].to_numpy(), "unit": unit_kind,
            "metric": metric, "best_layer": [best.loc[i, "_best"] for i in idx],
            "best_layer_pos": [int(best.loc[i, "_pos"]) for i in idx],
            "best_layer_share": [float(best.loc[i, "_share"]) for i in idx],
            "n_targets": [int(best.loc[i, "_n"]) for i in idx], "pooled_models": summ["pooled_models"].to_numpy()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def draw_dataset_figures(plan: DatasetPlan, tabs: DatasetTables, pdf: bool = False) -> tuple:
    """Across-model bars, across-layer curves per model, and (with an ``roi`` column) the curves
    per ROI, into ``<out>/figures/<key>_*.png`` (and ``.pdf`` with ``pdf``), with the plots of
    :mod:`fastenc.figures`. Returns ``(png paths, [(figure, why not drawn)])``."""
    from .. import figures as F
    from .figures import figure_path

    fig_dir = plan.out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = {m: plan.registry.display_name(m) for m in plan.models}
    corrected = tabs.metric == "r2_test_c"
    ylabel = "Median noise-corrected R²" if corrected else "Median R² (not noise-corrected)"
    unit = "participants" if tabs.subject_scores is not None else "targets"
    drawn, skipped = [], [(f"{tabs.key}_rsa", RSA_NOTE)]

    def path(stem):
        return figure_path(fig_dir, f"{tabs.key}_{stem}", pdf, drawn)

    long = tabs.long_scores()
    F.plot_across_models(long, spectemp=baseline(long["model"]), display_names=names,
                         ylabel=ylabel, title=f"{plan.name}: best layer on independent splits ({unit})",
                         path=path("across-models"))
    trained = {m: c for (m, rn), c in tabs.curves.items() if not rn}
    permuted = {m: c for (m, rn), c in tabs.curves.items() if rn}
    st = trained.pop(SPECTEMP, None) if len(trained) > 1 else None
    if trained:
        F.plot_across_layers(trained, permuted=permuted, display_names=names, ylabel=ylabel,
                             ncols=max(2, min(len(trained), 4)),  # room for the two-line title
                             spectemp=(float(st.mean[0]), float(st.sem[0])) if st is not None else None,
                             title=f"{plan.name}: prediction across model stages", path=path("across-layers"))
    else:
        skipped.append((f"{tabs.key}_across-layers", "no trained model version"))
    if tabs.rois:
        al = tabs.across_layers
        al = al[al["roi"] != ALL].rename(columns={"score_mean": "median_r2_test_c_mean",
                                                  "score_sem": "median_r2_test_c_yerr",
                                                  "n_units": "n_participants"})
        if (al.groupby(["source_model", "randnetw"])["layer"].transform("nunique") >= 2).any():
            F.plot_across_layers_roi(al, rois=tabs.rois, display_names=names,
                                     title=f"{plan.name}: prediction across model stages per ROI"
                                           f"{'' if corrected else ' (R², not noise-corrected)'}",
                                     path=path("across-layers-roi"))
        else:
            skipped.append((f"{tabs.key}_across-layers-roi", "every model has one layer"))
    return drawn, skipped


def note_skipped(fig_dir: Path, skipped) -> None:
    """Add ``figure: why`` lines to ``figures/SKIPPED.txt`` (kept beside the study's lines)."""
    if not skipped:
        return
    p = Path(fig_dir) / "SKIPPED.txt"
    lines = p.read_text(encoding="utf-8").splitlines() if p.is_file() else \
        ["Figures not drawn in this run, and why (they need models that are not present).", ""]
    lines += [f"{name}: {why}" for name, why in skipped if f"{name}: {why}" not in lines]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------------------------
def plan_datasets(datasets, out, models=None, manifest=None, alphas=None, n_threads=None, overwrite=False,
                  progress=True) -> list:
    """:func:`plan_dataset` of each of ``datasets`` (manifest paths or
    :class:`~fastenc.dataset.Dataset` objects): every input is checked before anything is
    scored. Two datasets with one output prefix are an error."""
    if isinstance(datasets, (str, Path, Dataset)):
        datasets = [datasets]
    plans = [plan_dataset(d, out, models=models, manifest=manifest, alphas=alphas, n_threads=n_threads,
                          overwrite=overwrite, progress=progress) for d in datasets]
    keys = [p.key for p in plans]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"two datasets of this run have the name {dup[0][len('dataset-'):]!r} (output prefix "
                         f"{dup[0]}); give each a different name")
    return plans


def run_dataset_stage(plans, store: StudyStore, executor, log: RecomputeLog, progress=True, figures=True,
                      pdf=False) -> dict:
    """Score, summarise and draw every planned dataset (:func:`plan_datasets`). Returns
    ``{name: DatasetTables}``; each one's ``units`` lists its regression units and ``figures``
    its PNGs; ``figures/SKIPPED.txt`` says that RSA is not run for datasets."""
    from ..progress import say
    results = {}
    for plan in plans:
        units = run_dataset_regression(plan, store, executor, log, progress=regression_progress(plan, progress))
        tabs = run_dataset_analysis(plan, store)
        tabs.units = units
        if figures:
            say(f"drawing the figures of dataset {plan.name!r} into {plan.out / 'figures'}", enabled=progress)
            tabs.figures, skipped = draw_dataset_figures(plan, tabs, pdf=pdf)
            note_skipped(plan.out / "figures", skipped)
        results[plan.name] = tabs
    return results


def dataset_provenance(plans) -> dict:
    """Rows of the report's provenance table for the datasets of a run."""
    out = {}
    for p in plans:
        ds = p.dataset
        out[f"dataset {p.name}"] = (
            f"{ds.manifest or '(Python object)'}; {ds.n_stimuli} stimuli, {ds.n_targets} targets, "
            f"{ds.n_repetitions} repetition(s), {ds.splits.shape[0]} splits; activations {p.root}; models "
            + ", ".join(f"{m}{' (permuted)' if r else ''}" for m, r in p.work)
            + f"; fingerprint {fingerprint(np.array(sorted(p.inputs.items()), dtype=str))}")
    if plans:
        out["datasets: best layer"] = ("on independent splits: the study's masks with 10 splits; with other split "
                                       "counts a random half per layer x target from RandomState(iteration), "
                                       "iterations 0..9, ties re-seeded 0")
    return out
