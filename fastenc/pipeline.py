"""The whole study, end to end: ``run_all`` = regression → analysis → RSA → figures.

Work is organised in units (target dataset × model × trained/permuted × layer), each stored
atomically by :class:`fastenc.store.ResultStore` with a record of its inputs; a killed run,
started again, reuses the finished units whose inputs are unchanged and redoes the rest. A
finished unit whose inputs changed (its layer's activations, the stimulus order or names, the
target's neural data, the splits, the alpha grid or :data:`fastenc.store.METHOD_VERSION`) is
recomputed and replaced, and logged (:class:`fastenc.store.RecomputeLog`, ``<out>/fastenc.log``).
The regression stage runs one task per (model, trained/permuted): the activations of a model
are read once (per-sound pickles are read once per model, not once per layer) and every layer
is hashed (to check the stored units) and scored against every target dataset that needs it.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .io import available_models, load_neural, open_model
from .progress import Progress
from .registry import Registry, load_registry, resolve_models
from .ridge import check_alphas
from .scoring import Targets, prepare_targets, score_layer
from .splits import seed_splits
from .store import RecomputeLog, ResultStore, combine, fingerprint, method_version

__all__ = ["run_all", "run_regression", "TARGETS", "default_demo_dir", "TargetBundle", "load_target_bundle",
           "regress_model"]

TARGETS = ("NH2015", "B2021", "NH2015comp")


def default_demo_dir() -> Path:
    """Where ``run-all`` without ``--data-dir`` builds the demo: ``$FASTENC_CACHE`` or ``~/.cache/fastenc``."""
    base = os.environ.get("FASTENC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastenc")
    return Path(base) / "demo"


@dataclass
class TargetBundle:
    """A target dataset prepared once and shared by every layer (and every Dask worker)."""

    name: str
    targets: Targets
    target_names: list
    fingerprint: str
    repeated: bool
    subj_idx: np.ndarray | None
    roi_labels: np.ndarray | None
    #: input record of this target's units, all but the activations (see fastenc.store.INPUT_KINDS)
    inputs: dict | None = None


def load_target_bundle(data_dir, name, splits, alphas, nan_policy="raise") -> TargetBundle:
    """Load one target dataset (METHOD §1) and prepare its regression targets.

    ``nan_policy``: ``"raise"`` (NaN/inf in a voxel is an error naming the file, the voxel_id and the
    array index) or ``"omit"`` (such voxels are not fitted; their scores are NaN)."""
    nd = load_neural(data_dir, name)
    if nan_policy == "raise":
        nd.check_finite()
    tg = prepare_targets(nd.Y, nan_policy=nan_policy)
    inputs = {"method": method_version(),
              "stimuli": fingerprint(np.array(nd.stim_ids, dtype=str)),
              "neural": fingerprint(tg.Yt, tg.kept, np.array([tg.n_targets, tg.n_reps]),
                                    np.array(nd.target_names, dtype=str)),
              "splits": fingerprint(splits),
              "alphas": fingerprint(alphas)}
    fp = combine(inputs)
    subj = roi = None
    if nd.roi_meta is not None:
        subj = nd.roi_meta["subj_idx"].to_numpy()
        roi = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
    return TargetBundle(name=name, targets=tg, target_names=list(nd.target_names), fingerprint=fp,
                        repeated=nd.has_repetitions, subj_idx=subj, roi_labels=roi, inputs=inputs)


def regress_model(data_dir, out, model, randnetw, bundles, registry: Registry, splits, alphas,
                  n_threads=None, overwrite=False, on_unit=None):
    """Score every layer of one model version against every target; reuse finished units
    computed from the same inputs.

    Each layer's activations are loaded and hashed; a unit is reused when its stored input record
    equals the current one (activations hash + the bundle's ``inputs``), and is otherwise
    (re)computed and written atomically. Returns a list of ``(target, layer, status, reason)``:
    status ``"skipped"`` (reused), ``"done"`` (missing or unfinished, or ``overwrite``) or
    ``"recomputed"`` (finished from other inputs; ``reason`` says which changed).
    ``on_unit(target, model, randnetw, layer, status, reason)`` is called per unit.
    Safe to retry after a crash: each unit is written atomically under a unique temporary name.
    (Do not run two drivers on one output folder at once: each starts by removing leftover
    temporary files.)
    """
    store = ResultStore(out)
    spec = registry.spec(model)
    report = []
    acts = open_model(data_dir, model, randnetw=randnetw, registry=registry)
    with acts:
        for layer in spec.layers:
            try:
                X = acts.load_layer(layer)
            except (ValueError, OSError) as e:
                if f"model {model!r}" in str(e):  # already names the file, model and layer at fault
                    raise
                raise type(e)(f"{e} [model {model}{' (randnetw)' if randnetw else ''}, layer {layer}]") from e
            x_hash = fingerprint(X)
            for b in bundles:
                inputs = {**_bundle_inputs(b), "activations": x_hash}
                state, reason = ("overwrite", "overwrite") if overwrite else \
                    store.check(b.name, model, randnetw, layer, inputs)
                if state == "current":
                    status, reason = "skipped", ""
                else:
                    try:
                        s = score_layer(X, b.targets, splits=splits, alphas=alphas, n_threads=n_threads)
                    except ValueError as e:
                        raise ValueError(f"scoring {model}{' (randnetw)' if randnetw else ''} layer {layer} "
                                         f"against {b.name}: {e}") from e
                    store.write(b.name, model, randnetw, layer, s.arrays(), s.summary(), b.target_names,
                                inputs, attrs={"n_units": X.shape[1]})
                    status = "recomputed" if state == "stale" else "done"
                    reason = reason or ""
                report.append((b.name, layer, status, reason))
                if on_unit:
                    on_unit(b.name, model, randnetw, layer, status, reason)
    return report


def _bundle_inputs(b) -> dict:
    if b.inputs is None:
        raise ValueError(f"target bundle {b.name!r} has no input record; build it with load_target_bundle")
    return b.inputs


def _check_incomplete_versions(data_dir, registry, names, present):
    """A model version with some but not all of its per-sound files is an error, not silently skipped."""
    from .io import activation_paths, load_stimuli

    stim_ids = None
    for m in names:
        spec = registry.spec(m)
        folder = Path(data_dir) / "model_actv" / m
        if spec.storage != "per_sound_pickle" or not folder.is_dir():
            continue
        for randnetw in (False, True):
            if present.get(m, {}).get("randnetw" if randnetw else "trained"):
                continue
            suffix = "_randnetw" if randnetw else ""
            if not any(folder.glob(f"*_activations{suffix}.pkl")):
                continue
            if stim_ids is None:
                stim_ids = load_stimuli(data_dir)["stim_id"].tolist()
            missing = [p for p in activation_paths(data_dir, spec, randnetw, stim_ids) if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"activations of model {m!r}{' (randnetw)' if randnetw else ''} are incomplete: "
                    f"{len(missing)} of {len(stim_ids)} per-sound file(s) missing, e.g. "
                    f"{', '.join(str(p) for p in missing[:3])}")


def check_data_root(data_dir) -> Path:
    """``data_dir`` as a Path, or a clear error if it does not hold ``data/`` and ``model_actv/``."""
    data_dir = Path(data_dir)
    if not (data_dir / "data").is_dir() or not (data_dir / "model_actv").is_dir():
        raise FileNotFoundError(f"{data_dir} is not a data root: it needs data/ and model_actv/ (see README)")
    return data_dir


def default_targets(data_dir) -> list:
    """The target datasets whose folder exists under ``data/neural`` (all three when none does,
    so that the loader's error names what is missing)."""
    present = [t for t in TARGETS if (Path(data_dir) / "data" / "neural" / t).is_dir()]
    return present or list(TARGETS)


def plan_models(data_dir, registry, models=None):
    """(model, randnetw) versions to run: requested models that are present on disk.

    ``models``: names or registry model sets; default every registry model whose
    activations are present. A requested model with no activations is an error.
    """
    present = available_models(data_dir, registry)
    if models is None:
        names = list(present)
    else:
        names = resolve_models(models, registry)
    _check_incomplete_versions(data_dir, registry, names if models is not None else list(registry), present)
    if models is not None:
        missing = [m for m in names if m not in present]
        if missing:
            raise FileNotFoundError(f"no activations under {Path(data_dir) / 'model_actv'} for models {missing}")
    work = []
    for m in names:
        st = present[m]
        if st.get("trained"):
            work.append((m, False))
        if st.get("randnetw"):
            work.append((m, True))
    if not work:
        raise FileNotFoundError(f"no model activations found under {Path(data_dir) / 'model_actv'}")
    return work


def run_regression(data_dir, out, models=None, targets=None, n_threads=None, overwrite=False,
                   progress=True, client=None, registry=None, alphas=None, log=None, nan_policy="raise"):
    """Regression stage over all (target, model, version, layer) units.

    Returns a DataFrame, one row per unit: ``target, model, randnetw, layer, status, reason``
    (status ``skipped``, ``done`` or ``recomputed``, see :func:`regress_model`). Recomputed
    units are logged to ``log`` (a :class:`fastenc.store.RecomputeLog`; default: a new one
    whose summary is printed to stderr at the end, one line when ``progress`` is False).
    """
    own_log = log is None
    log = RecomputeLog(out) if own_log else log
    registry = registry or load_registry(data_dir)
    targets = list(targets or default_targets(data_dir))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown targets {unknown}; choose from {list(TARGETS)}")
    splits = seed_splits()
    alphas = check_alphas(alphas)
    store = ResultStore(out)
    store.cleanup_partial()
    work = plan_models(data_dir, registry, models)
    bundles = [load_target_bundle(data_dir, t, splits, alphas, nan_policy=nan_policy)
               for t in targets]
    total = sum(len(registry.spec(m).layers) for m, _ in work) * len(bundles)
    bar = Progress(total, "regression", enabled=progress)
    rows = []

    def on_unit(target, model, randnetw, layer, status, reason=""):
        bar.update(1, note=f"{model}{'*' if randnetw else ''} {layer}", skipped=status == "skipped")
        rows.append((target, model, randnetw, layer, status, reason))
        if status == "recomputed":
            log.add(store.unit_name(target, model, randnetw, layer), reason)

    if client is None:
        for model, randnetw in work:
            regress_model(data_dir, out, model, randnetw, bundles, registry, splits, alphas,
                          n_threads=n_threads, overwrite=overwrite, on_unit=on_unit)
    else:
        from .distributed import run_regression_dask
        run_regression_dask(client, data_dir, out, work, bundles, registry, splits, alphas,
                            n_threads=n_threads, overwrite=overwrite, on_unit=on_unit)
    if own_log:
        log.summary(verbose=progress)
    return pd.DataFrame(rows, columns=["target", "model", "randnetw", "layer", "status", "reason"])


def run_all(data_dir=None, out="fastenc_out", models=None, targets=None, n_threads=None,
            overwrite=False, progress=True, client=None, rsa=True, figures=True, alphas=None,
            rsa_corrected=False, manifest=None, nan_policy="raise"):
    """Run the whole study: regression, analysis, RSA and figures.

    Parameters
    ----------
    data_dir : path, optional
        Data root holding ``data/`` and ``model_actv/`` (the study's layout). Default: the
        embedded demo, built in :func:`default_demo_dir` if missing.
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
        Recompute finished units (by default a finished unit or RSA table is reused only when
        everything it was computed from is unchanged, and recomputed otherwise).
    client : dask.distributed.Client, optional
        Run the regression units on a Dask cluster.
    rsa, figures : bool
        Run the RSA stage / draw the figures.
    alphas : 1-D array, optional
        Ridge alpha grid (default: the study's ``10**49 ... 10**-50``).
    rsa_corrected : bool
        False (default) reproduces the study's RSA quirks (Pearson noise ceiling while models
        use Spearman; SEM divided by √(models − 1)); True uses the corrected forms.
    manifest : path, optional
        Extra model manifest (JSON) merged over the shipped registry and
        ``<data_dir>/fastenc_models.json``.
    nan_policy : {"raise", "omit"}
        NaN/inf in a voxel's responses: an error naming it (default), or leave the voxel out of the
        regression (its scores are NaN).

    Returns
    -------
    dict of DataFrames (the tidy tables also written under ``out``).

    Examples
    --------
    >>> tables = run_all(out="fastenc_out")  # doctest: +SKIP
    """
    from . import analysis_stage

    t0 = time.perf_counter()
    if data_dir is None:
        from .datasets import make_demo
        data_dir = make_demo(default_demo_dir())
    data_dir = check_data_root(data_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    registry = load_registry(data_dir, manifest=manifest)
    targets = list(targets or default_targets(data_dir))
    log = RecomputeLog(out)
    reg = run_regression(data_dir, out, models=models, targets=targets, n_threads=n_threads,
                         overwrite=overwrite, progress=progress, client=client, registry=registry,
                         alphas=alphas, nan_policy=nan_policy, log=log)
    work = plan_models(data_dir, registry, models)
    tables = analysis_stage.run_analysis(data_dir, out, work, targets, registry, progress=progress)
    if rsa:
        tables.update(analysis_stage.run_rsa(data_dir, out, work, targets, registry, progress=progress,
                                             n_threads=n_threads, client=client, overwrite=overwrite,
                                             corrected=rsa_corrected, log=log))
    if figures:
        analysis_stage.draw_figures(out, tables, registry)
    tables["regression_units"] = reg
    if progress:
        n_reused = int((reg["status"] == "skipped").sum())
        n_recomputed = int((reg["status"] == "recomputed").sum())
        print(f"\nfastenc run-all finished in {time.perf_counter() - t0:.1f} s "
              f"({len(reg) - n_reused} units computed, of which {n_recomputed} recomputed because inputs "
              f"changed, {n_reused} reused) -> {out}", file=sys.stderr)
    log.summary(verbose=progress)
    return tables
