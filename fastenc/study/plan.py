"""The study plan: everything a run needs, loaded once and handed to every stage.

:func:`build_plan` checks the data root, loads the registry, each target dataset (once: the
regression, the analyses and the RSA all read the same :class:`TargetBundle`), the stimulus
list, and works out the model versions to run, the splits and the alpha grid. Stages are plain
functions of ``(plan, store)``; nothing below this module re-reads the neural data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..constants import NEURAL_TARGETS, TARGETS
from ..io import activation_paths, available_models, load_neural, load_stimuli
from ..registry import Registry, load_registry, resolve_models
from ..ridge import check_alphas
from ..scoring import Targets, prepare_targets
from ..splits import seed_splits
from .store import combine, fingerprint, method_version

__all__ = ["StudyPlan", "TargetBundle", "build_plan", "load_target_bundle", "plan_models", "default_targets",
           "check_data_root", "default_demo_dir"]


def default_demo_dir() -> Path:
    """Where ``run-all`` without ``--data-dir`` builds the demo: ``$FASTENC_CACHE`` or ``~/.cache/fastenc``."""
    base = os.environ.get("FASTENC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastenc")
    return Path(base) / "demo"


@dataclass
class TargetBundle:
    """A target dataset loaded once per run and shared by every stage (and every Dask worker).

    ``kept`` marks the targets (voxels or components) that are scored: all of them, or, with
    ``nan_policy="omit"``, those without NaN/inf responses. Omitted targets are left out of the
    regression, the analyses and the RSA alike. ``mean_responses`` (stimuli x targets, the mean
    over repetitions) feeds the RSA; it is None for the components, and is dropped from the copy
    sent to the regression workers (:meth:`for_regression`).
    """

    name: str
    targets: Targets
    target_names: list
    fingerprint: str
    repeated: bool
    subj_idx: np.ndarray | None
    roi_labels: np.ndarray | None
    #: input record of this target's units, all but the activations (see fastenc.study.store.INPUT_KINDS)
    inputs: dict | None = None
    mean_responses: np.ndarray | None = field(default=None, repr=False)
    #: per voxel ``voxel_id, subj_idx, hemi, x_ras, y_ras`` (the voxel maps); None for components
    voxel_meta: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def kept(self) -> np.ndarray:
        return self.targets.kept

    def for_regression(self) -> "TargetBundle":
        """This bundle without what only the RSA and the voxel maps need (smaller to scatter to workers)."""
        return replace(self, mean_responses=None, voxel_meta=None)


def load_target_bundle(data_dir, name, splits, alphas, nan_policy="raise") -> TargetBundle:
    """Load one target dataset (METHOD §1) and prepare its regression targets.

    ``nan_policy``: ``"raise"`` (NaN/inf in a voxel is an error naming the file, the voxel_id and the
    array index) or ``"omit"`` (such voxels are not fitted, their scores are NaN, and they are left
    out of the analyses and the RSA)."""
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
    subj = roi = vmeta = None
    if nd.roi_meta is not None:
        subj = nd.roi_meta["subj_idx"].to_numpy()
        roi = nd.roi_meta["roi_label_general"].to_numpy(dtype=object)
        cols = [c for c in ("voxel_id", "subj_idx", "hemi", "x_ras", "y_ras") if c in nd.roi_meta.columns]
        vmeta = nd.roi_meta[cols].reset_index(drop=True) if len(cols) == 5 else None
    mean = nd.Y.mean(axis=2) if (name in NEURAL_TARGETS and nd.Y.ndim == 3) else None
    return TargetBundle(name=name, targets=tg, target_names=list(nd.target_names), fingerprint=combine(inputs),
                        repeated=nd.has_repetitions, subj_idx=subj, roi_labels=roi, inputs=inputs,
                        mean_responses=mean, voxel_meta=vmeta)


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


def _check_incomplete_versions(data_dir, registry, names, present):
    """A model version with some but not all of its per-sound files is an error, not silently skipped."""
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


def plan_models(data_dir, registry, models=None) -> list:
    """(model, randnetw) versions to run: requested models that are present on disk.

    ``models``: names or registry model sets; default every registry model whose
    activations are present. A requested model with no activations is an error.
    """
    present = available_models(data_dir, registry)
    names = list(present) if models is None else resolve_models(models, registry)
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


@dataclass
class StudyPlan:
    """One run of the study: inputs loaded once, and the options every stage reads.

    ``work`` lists the model versions ``(model, randnetw)``; ``bundles`` the target datasets in
    run order. ``out`` and ``data_dir`` are absolute paths (Dask workers read and write them).
    """

    data_dir: Path
    out: Path
    registry: Registry
    work: list
    bundles: dict
    stimuli: pd.DataFrame
    splits: np.ndarray
    alphas: np.ndarray
    n_threads: int | None = None
    overwrite: bool = False
    progress: bool = True
    rsa_corrected: bool = False
    nan_policy: str = "raise"

    @property
    def targets(self) -> list:
        return list(self.bundles)

    @property
    def neural_targets(self) -> list:
        return [t for t in self.bundles if t in NEURAL_TARGETS]

    @property
    def categories(self) -> list:
        return self.stimuli["category"].tolist()

    @property
    def models(self) -> list:
        """Model names in run order (each once)."""
        return list(dict.fromkeys(m for m, _ in self.work))

    def layers(self, model) -> list:
        return self.registry.layers(model)


def build_plan(data_dir, out, models=None, targets=None, registry=None, manifest=None, alphas=None,
               nan_policy="raise", n_threads=None, overwrite=False, progress=True,
               rsa_corrected=False) -> StudyPlan:
    """Check the inputs and load them once (see :class:`StudyPlan`).

    Raises ``ValueError`` for an unknown target or a bad alpha grid or nan policy, and
    ``FileNotFoundError`` for a missing data root, model or file (with the path).
    """
    data_dir = check_data_root(data_dir)
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    registry = registry or load_registry(data_dir, manifest=manifest)
    targets = list(targets or default_targets(data_dir))
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise ValueError(f"unknown targets {unknown}; choose from {list(TARGETS)}")
    splits = seed_splits()
    alphas = check_alphas(alphas)
    work = plan_models(data_dir, registry, models)
    bundles = {t: load_target_bundle(data_dir, t, splits, alphas, nan_policy=nan_policy) for t in targets}
    return StudyPlan(data_dir=data_dir.resolve(), out=Path(out).resolve(), registry=registry, work=work,
                     bundles=bundles, stimuli=load_stimuli(data_dir), splits=splits, alphas=alphas,
                     n_threads=n_threads, overwrite=overwrite, progress=progress,
                     rsa_corrected=rsa_corrected, nan_policy=nan_policy)
