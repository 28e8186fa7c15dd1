"""Regression stage (METHOD §2-§4): every (target, model version, layer) unit, stored and reused.

The same task records the effective dimensionality of each layer (METHOD §9) while the layer is
loaded: ``<out>/dimensionality/<model>[_randnetw].csv`` with each layer's activation hash, reused
while the hash (and the method) is unchanged, so the activations are never read twice.

One task per model version (model, trained/permuted): the activations of the version are read
once (per-sound pickles once per model, not once per layer), every layer is hashed (to check the
stored units) and scored against every target dataset. A unit is reused only when its stored
input record equals the current one (activations hash + the bundle's ``inputs``), otherwise it
is (re)computed and written atomically; recomputed units are logged with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..constants import COMPONENT_TARGET
from ..dimensionality import effective_dimensionality
from ..io import open_model
from ..scoring import score_layer
from .store import PREDICTIONS_RECORD, RecomputeLog, StudyStore, fingerprint

__all__ = ["regress_model", "run_regression_stage", "RegressionShared", "unit_inputs", "stores_predictions"]

UNIT_COLUMNS = ["target", "model", "randnetw", "layer", "status", "reason"]


def _bundle_inputs(b) -> dict:
    if b.inputs is None:
        raise ValueError(f"target bundle {b.name!r} has no input record; build it with load_target_bundle")
    return b.inputs


def stores_predictions(target) -> bool:
    """Whether the units of ``target`` hold the test predictions (``predictions``, targets x splits
    x stimuli): the components only (their predicted vs measured responses, paper Fig. 4), not the
    voxels (B2021 would need ~350 MB per layer)."""
    return target == COMPONENT_TARGET


def unit_inputs(b, activations: str) -> dict:
    """Input record of one unit of bundle ``b``: the bundle's record and the layer's activation
    hash; for targets whose units hold the test predictions also ``predictions``, so that units
    written before they were stored are recomputed (and logged) while the others are reused."""
    inputs = {**_bundle_inputs(b), "activations": activations}
    if stores_predictions(b.name):
        inputs["predictions"] = PREDICTIONS_RECORD
    return inputs


def regress_model(data_dir, out, model, randnetw, bundles, registry, splits, alphas,
                  n_threads=None, overwrite=False, on_unit=None) -> list:
    """Score every layer of one model version against every target bundle; reuse finished units
    computed from the same inputs.

    Returns a list of ``(target, layer, status, reason)``: status ``"skipped"`` (reused),
    ``"done"`` (missing or unfinished, or ``overwrite``) or ``"recomputed"`` (finished from other
    inputs; ``reason`` says which changed). ``on_unit(target, model, randnetw, layer, status,
    reason)`` is called per unit. Safe to retry after a crash: each unit is written atomically
    under a unique temporary name.
    """
    store = StudyStore(out)
    spec = registry.spec(model)
    report = []
    prev = None if overwrite else store.ed_read(model, randnetw)
    prev = {} if prev is None else {r["layer"]: r for r in prev.to_dict("records")}
    ed_rows, ed_changed = [], overwrite or not prev
    with open_model(data_dir, model, randnetw=randnetw, registry=registry) as acts:
        for layer in spec.layers:
            try:
                X = acts.load_layer(layer)
            except (ValueError, OSError) as e:
                if f"model {model!r}" in str(e):  # already names the file, model and layer at fault
                    raise
                raise type(e)(f"{e} [model {model}{' (randnetw)' if randnetw else ''}, layer {layer}]") from e
            x_hash = fingerprint(X)
            row = prev.get(layer)
            if row is None or row.get("activations") != x_hash:  # ED of the layer (METHOD §9), by its hash
                row = {"layer": layer, "n_units": int(X.shape[1]), "ed": _ed(X), "activations": x_hash}
                ed_changed = True
            ed_rows.append(row)
            for b in bundles:
                inputs = unit_inputs(b, x_hash)
                state, reason = ("overwrite", "overwrite") if overwrite else \
                    store.check(b.name, model, randnetw, layer, inputs)
                if state == "current":
                    status, reason = "skipped", ""
                else:
                    keep_pred = stores_predictions(b.name)
                    try:
                        s = score_layer(X, b.targets, splits=splits, alphas=alphas, n_threads=n_threads,
                                        return_predictions=keep_pred)
                    except ValueError as e:
                        raise ValueError(f"scoring {model}{' (randnetw)' if randnetw else ''} layer {layer} "
                                         f"against {b.name}: {e}") from e
                    arrays = s.arrays()
                    if keep_pred:
                        arrays["predictions"] = s.predictions
                    store.write(b.name, model, randnetw, layer, arrays, s.summary(), b.target_names,
                                inputs, attrs={"n_units": X.shape[1]})
                    status = "recomputed" if state == "stale" else "done"
                    reason = reason or ""
                report.append((b.name, layer, status, reason))
                if on_unit:
                    on_unit(b.name, model, randnetw, layer, status, reason)
    if ed_changed or len(prev) != len(ed_rows):
        store.ed_write(model, randnetw, pd.DataFrame(ed_rows, columns=["layer", "n_units", "ed", "activations"]))
    return report


def _ed(X) -> float:
    """Effective dimensionality of one layer (METHOD §9, the study's options); NaN where it is
    undefined (non-finite activations are reported by the scoring)."""
    try:
        return effective_dimensionality(X, **StudyStore.ED_OPTIONS)
    except ValueError:
        return float("nan")


@dataclass
class RegressionShared:
    """Inputs every regression task reads (scattered once per Dask worker)."""

    data_dir: str
    out: str
    bundles: list
    registry: object
    splits: object
    alphas: object
    overwrite: bool = False


def regression_task(item, shared: RegressionShared, ctx):
    """One model version (an executor task): ``item = (model, randnetw)``."""
    model, randnetw = item

    def on_unit(target, model_, randnetw_, layer, status, reason=""):
        ctx.emit([target, model_, bool(randnetw_), layer, status, reason])

    return regress_model(shared.data_dir, shared.out, model, randnetw, shared.bundles, shared.registry,
                         shared.splits, shared.alphas, n_threads=ctx.n_threads, overwrite=shared.overwrite,
                         on_unit=on_unit)


def version_tag(item) -> str:
    model, randnetw = item
    return f"{model}{'-randnetw' if randnetw else ''}"


class UnitTally:
    """Each unit's outcome, counted once (it arrives as an event and again with its task's
    result): moves ``progress`` once per unit, logs recomputed units to ``log``, and
    :meth:`frame` gives one row per unit (``UNIT_COLUMNS``, in the order the units finished)."""

    def __init__(self, store: StudyStore, log: RecomputeLog, progress=None):
        self.store, self.log, self.progress, self.seen = store, log, progress, {}

    def __call__(self, target, model, randnetw, layer, status, reason=""):
        key = (target, model, bool(randnetw), layer)
        if key in self.seen:
            return
        self.seen[key] = (status, reason)
        if self.progress is not None:
            self.progress.update(1, note=f"{model}{'*' if randnetw else ''} {layer}", skipped=status == "skipped")
        if status == "recomputed":
            self.log.add(self.store.unit_name(target, model, randnetw, layer), reason)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([(*k, *v) for k, v in self.seen.items()], columns=UNIT_COLUMNS)


def run_regression_stage(plan, store: StudyStore, executor, log: RecomputeLog, progress=None,
                         on_version=None) -> pd.DataFrame:
    """Every unit of ``plan`` (one executor task per model version).

    Returns one row per unit: ``target, model, randnetw, layer, status, reason`` (in the order the
    units finished). ``progress`` (a :class:`fastenc.progress.Progress`) moves once per unit.
    ``on_version(model, randnetw)`` is called (in this thread) when every unit of a model version
    is stored, e.g. to draw its voxel maps while the next version computes.
    """
    store.cleanup_partial()
    report = UnitTally(store, log, progress)

    def on_result(item, value):
        model, randnetw = item
        for target, layer, status, reason in value:
            report(target, model, randnetw, layer, status, reason)
        if on_version is not None:
            on_version(model, bool(randnetw))

    shared = RegressionShared(data_dir=str(plan.data_dir), out=str(plan.out),
                              bundles=[b.for_regression() for b in plan.bundles.values()],
                              registry=plan.registry, splits=plan.splits, alphas=plan.alphas,
                              overwrite=plan.overwrite)
    executor.run(regression_task, [(m, bool(r)) for m, r in plan.work], shared, on_result,
                 on_event=lambda ev: report(*ev), label="fastenc-regress", name=version_tag)
    return report.frame()
