"""The whole study, end to end: ``run_all`` = plan → regression → analysis → voxel maps →
dimensionality → RSA → consistency → figures.

Work is organised in units (target dataset × model × trained/permuted × layer, and target ×
model version for the RSA), each stored atomically by :class:`fastenc.study.store.StudyStore`
with a record of its inputs; a killed run, started again, reuses the finished units whose inputs
are unchanged and redoes the rest. A finished unit whose inputs changed (its activations, the
stimulus order or names, the target's neural data, the splits, the alpha grid or
:data:`fastenc.study.store.METHOD_VERSION`) is recomputed and replaced, and logged
(:class:`fastenc.study.store.RecomputeLog`, ``<out>/fastenc.log``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from ..progress import Progress, say
from .analysis import run_analysis_stage
from .executors import make_executor
from .figures import FigureHelpers, draw_figures, remove_stale_figures, version_map_job
from .plan import StudyPlan, build_plan, check_data_root, default_demo_dir
from .regression import run_regression_stage
from .results import StudyResults
from .rsa import run_rsa_stage
from .consistency import run_consistency_stage, run_seed_stage
from .dimensionality import run_dimensionality_stage
from .store import RecomputeLog, StudyStore
from .voxels import run_voxel_stage
from .datasets import (dataset_provenance, plan_datasets, regression_progress, run_dataset_regression,
                       run_dataset_stage)

__all__ = ["run_all", "run_regression", "kernels_cached"]


def kernels_cached() -> bool:
    """True when Numba's on-disk cache already holds fastenc's compiled kernels."""
    root = Path(__file__).resolve().parents[1]
    where = [Path(os.environ["NUMBA_CACHE_DIR"])] if os.environ.get("NUMBA_CACHE_DIR") else \
        [root / "_core" / "__pycache__", root / "__pycache__"]
    return any(next(p.rglob("*.nbi"), None) is not None for p in where if p.is_dir())


def _regression(plan: StudyPlan, store, executor, log, on_version=None) -> pd.DataFrame:
    total = sum(len(plan.layers(m)) for m, _ in plan.work) * len(plan.bundles)
    if plan.progress and not kernels_cached():
        say("compiling kernels, first run only (about half a minute)")
    bar = Progress(total, "regression", enabled=plan.progress)
    return run_regression_stage(plan, store, executor, log, progress=bar, on_version=on_version)


def run_regression(data_dir, out, models=None, targets=None, n_threads=None, overwrite=False,
                   progress=True, client=None, registry=None, alphas=None, log=None, nan_policy="raise",
                   datasets=None, manifest=None):
    """Regression stage over all (target, model, version, layer) units: the units
    :func:`run_all` computes first and reuses (e.g. run this on a cluster, then ``run_all``).

    ``datasets``: dataset manifests (:mod:`fastenc.dataset`) whose model units are computed too,
    as :func:`run_all` does; with ``datasets`` and neither ``data_dir`` nor ``targets``, only the
    datasets' units (no study; ``models`` then selects the models of a manifest without a
    ``models`` key). ``data_dir`` None otherwise means the demo. ``manifest``: extra model
    manifest (JSON) merged over the shipped registry, for the study (unless ``registry`` is
    given) and the datasets.

    Returns a DataFrame, one row per unit: ``target, model, randnetw, layer, status, reason``
    (``target`` is ``dataset-<name>`` for a dataset's units; status ``skipped`` (reused),
    ``done`` or ``recomputed`` (finished from other inputs; the reason says which changed)).
    Recomputed units are logged to ``log`` (a :class:`fastenc.study.store.RecomputeLog`;
    default: a new one whose summary is printed to stderr at the end, one line when
    ``progress`` is False).
    """
    if datasets is not None and (isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "stimulus_ids")):
        datasets = [datasets]
    only_datasets = bool(datasets) and data_dir is None and targets is None
    Path(out).mkdir(parents=True, exist_ok=True)
    own_log = log is None
    log = RecomputeLog(out) if own_log else log
    executor = make_executor(client, n_threads)
    frames = []
    if not only_datasets:
        if data_dir is None:
            from ..datasets import make_demo
            data_dir = make_demo(default_demo_dir())
        plan = build_plan(data_dir, out, models=models, targets=targets, registry=registry, manifest=manifest,
                          alphas=alphas, nan_policy=nan_policy, n_threads=n_threads, overwrite=overwrite,
                          progress=progress)
        frames.append(_regression(plan, StudyStore(plan.out), executor, log))
    if datasets:
        plans = plan_datasets(datasets, out, models=models if only_datasets else None, manifest=manifest,
                              alphas=alphas, n_threads=n_threads, overwrite=overwrite, progress=progress)
        store = StudyStore(plans[0].out)
        for dplan in plans:
            frames.append(run_dataset_regression(dplan, store, executor, log,
                                                 progress=regression_progress(dplan, progress)))
    if own_log:
        log.summary(verbose=progress)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _write_report(results, plan, t0, dataset_plans=()) -> Path:
    """``<out>/report.html`` with the run's provenance (docs/outputs.md); ``plan`` is None in a
    run of datasets only."""
    import platform
    import sys
    from datetime import datetime, timezone

    from .. import __version__
    from ..report import write_report
    from ..store import method_version
    prov = {
        "fastenc version": __version__,
        "method version (results reused only when equal)": method_version(),
        "command line": " ".join(sys.argv) if sys.argv and sys.argv[0] else "(Python API)",
    }
    study = {} if plan is None else {
        "data root": plan.data_dir,
        "data fingerprints": "; ".join(f"{b.name}: {b.fingerprint}" for b in plan.bundles.values()),
        "models": ", ".join(f"{m}{' (permuted)' if r else ''}" for m, r in plan.work),
        "registry": f"{len(plan.registry.model_names())} models (the study's 36 and any from a manifest)",
        "seeds": "splits: numpy RandomState(0) (10 splits, 83/82); best layer on independent splits: "
                 "legacy global stream seeded 0..9, ties re-seeded 0; subject bootstrap and component "
                 "permutations: seed 0, 10,000 resamples",
        "RSA": "corrected (Spearman ceiling, SEM over participants)" if plan.rsa_corrected
               else "study's quirks (Pearson ceiling, SEM over models)",
    }
    prov.update(study)
    prov.update(dataset_provenance(dataset_plans))
    prov.update({
        "run time": f"{time.perf_counter() - t0:.1f} s, finished "
                    f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    })
    return write_report(results.out, provenance=prov)  # skipped figures: from figures/SKIPPED.txt


def run_all(data_dir=None, out="fastenc_out", models=None, targets=None, n_threads=None,
            overwrite=False, progress=True, client=None, rsa=True, figures=True, alphas=None,
            rsa_corrected=False, manifest=None, nan_policy="raise", export_surface_mat=False,
            datasets=None, pdf=False) -> StudyResults:
    """Run the whole study: regression, analysis, RSA and figures; and/or score models against
    your own datasets (``datasets``).

    Parameters
    ----------
    data_dir : path, optional
        Data root holding ``data/`` and ``model_actv/`` (the study's layout). Default: the
        embedded demo, built in :func:`fastenc.study.plan.default_demo_dir` if missing.
    out : path
        Output folder (created). Finished units there are reused when everything they were
        computed from is unchanged, else recomputed (see ``<out>/fastenc.log``).
    models : list of str, optional
        Model names or registry model sets (e.g. ``"FIG_2_5_MODEL_LIST"``); default every
        registry model whose activations are present.
    targets : list of str, optional
        Any of ``NH2015``, ``B2021``, ``NH2015comp`` (default: those present under
        ``data/neural``).
    n_threads : int, optional
        Numba threads (default all cores).
    overwrite : bool
        Recompute finished units (by default a finished unit is reused only when everything it
        was computed from is unchanged, and recomputed otherwise).
    client : dask.distributed.Client, optional
        Run the regression and RSA units on a Dask cluster.
    rsa, figures : bool
        Run the RSA stage / draw the figures (PNG, ``<out>/figures/<name>.png``).
    pdf : bool
        Also write every figure as a PDF (``<name>.pdf``); drawing takes about twice as long.
    alphas : 1-D array, optional
        Ridge alpha grid (default: the study's ``10**49 ... 10**-50``).
    rsa_corrected : bool
        False (default) reproduces the study's RSA quirks (Pearson noise ceiling while models
        use Spearman; SEM divided by √(models − 1)); True uses the corrected forms.
    manifest : path, optional
        Extra model manifest (JSON) merged over the shipped registry and
        ``<data_dir>/fastenc_models.json``.
    nan_policy : {"raise", "omit"}
        NaN/inf in a voxel's responses: an error naming it (default), or leave the voxel out of
        the regression (its scores are NaN), of the analyses and of the RSA.
    export_surface_mat : bool
        Also write the study's ``.mat`` files of the voxel maps (``vals``, ``x_ras``, ``y_ras``; per
        participant x hemisphere, median subject, median over models) under ``<out>/surface-mat/``,
        for the FreeSurfer route of the study.
    datasets : list of paths or :class:`fastenc.dataset.Dataset`, optional
        Dataset manifests (:mod:`fastenc.dataset`) whose models are scored too: every layer of
        every model under the manifest's ``activations`` folder (or its ``models``), stored and
        reused like the study's units, with the tables ``<out>/dataset-<name>_*.csv`` and the
        figures ``<out>/figures/dataset-<name>_*`` (docs/outputs.md). With ``datasets`` and
        neither ``data_dir`` nor ``targets``, only the datasets run (no study, no demo); then
        ``models`` selects the models of a dataset whose manifest has no ``models`` key (in a
        run with the study, ``models`` is the study's).

    Returns
    -------
    :class:`fastenc.study.results.StudyResults` (the tables are also written under ``out``;
    ``results.tables`` maps each file name to its DataFrame).

    Examples
    --------
    >>> results = run_all(out="fastenc_out")  # doctest: +SKIP
    >>> results.regression["NH2015"].across_models  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if datasets is not None and not isinstance(datasets, (list, tuple)):
        one = isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "stimulus_ids")
        datasets = [datasets] if one else list(datasets)
    if datasets and data_dir is None and targets is None:
        return _run_datasets_only(datasets, out, models=models, n_threads=n_threads, overwrite=overwrite,
                                  progress=progress, client=client, figures=figures, alphas=alphas,
                                  manifest=manifest, t0=t0, pdf=pdf)
    if data_dir is None:
        where = default_demo_dir()
        from ..datasets import make_demo
        built = not (where / "data").is_dir()
        data_dir = make_demo(where)
        say(f"demo data {'built in' if built else 'from'} {data_dir}", enabled=progress)
    data_dir = check_data_root(data_dir)
    Path(out).mkdir(parents=True, exist_ok=True)
    plan = build_plan(data_dir, out, models=models, targets=targets, manifest=manifest, alphas=alphas,
                      nan_policy=nan_policy, n_threads=n_threads, overwrite=overwrite, progress=progress,
                      rsa_corrected=rsa_corrected)
    dplans = plan_datasets(datasets, plan.out, manifest=manifest, alphas=alphas, n_threads=n_threads,
                           overwrite=overwrite, progress=progress) if datasets else []
    # figure helpers start now: their imports run while the study computes
    helpers = FigureHelpers() if figures else None
    try:
        store = StudyStore(plan.out)
        log = RecomputeLog(plan.out)
        executor = make_executor(client, n_threads)
        early = set()  # model versions whose voxel maps the helpers draw while the study goes on

        def version_done(model, randnetw):
            job = version_map_job(plan, model, randnetw, pdf=pdf)
            if job is not None:
                helpers.submit(job)
                early.add((model, randnetw))
        units = _regression(plan, store, executor, log, on_version=version_done if figures else None)
        bar = Progress(len(plan.work) * len(plan.bundles), "analysis  ", enabled=progress)
        regression, components = run_analysis_stage(plan, store, progress=bar)
        results = StudyResults(out=Path(out), regression_units=units, regression=regression, components=components)
        n_vox = len(plan.work) * len(plan.neural_targets)
        vox_bar = Progress(n_vox, "voxel maps", enabled=progress) if n_vox else None
        results.voxels = run_voxel_stage(plan, store, export_mat=export_surface_mat, progress=vox_bar)
        results.dimensionality = run_dimensionality_stage(plan, store, regression)
        if rsa:
            results.rsa = run_rsa_stage(plan, store, executor, log,
                                        progress=lambda n: Progress(n, "rsa       ", enabled=progress),
                                        say=lambda msg: say(msg, enabled=progress))
        results.consistency = run_consistency_stage(plan.out, results.regression, results.rsa)
        results.seeds = run_seed_stage(plan.out, results.regression, results.rsa, plan.registry)
        if figures:
            say(f"drawing figures into {Path(out) / 'figures'}", enabled=progress)
            results.figures = draw_figures(results, plan.registry, pdf=pdf, helpers=helpers, early=early)
            helpers.close(wait=False)  # their exit (a few tenths of a second) need not hold up the report
        if dplans:
            _add_datasets(results, dplans, store, executor, log, progress, figures, pdf)
        if figures:
            remove_stale_figures(Path(out) / "figures", results.figures)
        results.elapsed_s = time.perf_counter() - t0
        if figures:
            results.report = _write_report(results, plan, t0, dplans)
        if progress:
            _say_finished(results, "run-all", out)
        log.summary(verbose=progress)
        return results
    finally:
        if helpers is not None:
            helpers.close()


def _say_finished(results, what, out) -> None:
    n = results.counts()
    say(f"{what} finished in {results.elapsed_s:.1f} s ({n['done'] + n['recomputed']} units computed, "
        f"of which {n['recomputed']} recomputed because inputs changed, {n['skipped']} reused) -> {out}")


def _add_datasets(results, plans, store, executor, log, progress, figures, pdf=False) -> None:
    """The datasets' stage (:mod:`fastenc.study.datasets`) into ``results``."""
    results.datasets = run_dataset_stage(plans, store, executor, log, progress=progress, figures=figures,
                                         pdf=pdf)
    units = [t.units for t in results.datasets.values() if t.units is not None and len(t.units)]
    if units:
        results.regression_units = pd.concat([results.regression_units, *units], ignore_index=True)
    for tabs in results.datasets.values():
        results.figures += tabs.figures


def _run_datasets_only(datasets, out, models, n_threads, overwrite, progress, client, figures, alphas,
                       manifest, t0, pdf=False) -> StudyResults:
    """``run_all(datasets=...)`` without the study: the datasets' regression, tables, figures and
    ``report.html``."""
    Path(out).mkdir(parents=True, exist_ok=True)
    plans = plan_datasets(datasets, out, models=models, manifest=manifest, alphas=alphas, n_threads=n_threads,
                          overwrite=overwrite, progress=progress)
    out = plans[0].out
    log = RecomputeLog(out)
    if progress and not kernels_cached():
        say("compiling kernels, first run only (about half a minute)")
    results = StudyResults(out=Path(out), regression_units=pd.DataFrame(), regression={})
    _add_datasets(results, plans, StudyStore(out), make_executor(client, n_threads), log, progress, figures, pdf)
    results.elapsed_s = time.perf_counter() - t0
    if figures:
        results.report = _write_report(results, None, t0, plans)
    if progress:
        _say_finished(results, f"run-all (datasets {', '.join(p.name for p in plans)})", out)
    log.summary(verbose=progress)
    return results
