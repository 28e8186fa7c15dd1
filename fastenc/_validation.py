"""Input validation shared by the numerical library (ridge, scoring, analysis, RSA, stats).

One small set of checks with one wording: an array's name, what was expected, and the shape
(or first bad position) that was given. Every function raises ``ValueError``.

Examples
--------
>>> train_masks([[0, 1, 2], [3, 4, 5]], 6, min_test=2).astype(int).tolist()
[[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]
>>> as_float_array([[1, 2]], "values", 1)
Traceback (most recent call last):
...
ValueError: values must have 1 dimensions, got shape (1, 2)
"""
from __future__ import annotations

import numpy as np

from .constants import N_SPLITS, N_STIMULI

__all__ = ["as_float_array", "as_numeric_2d", "check_finite", "as_features", "finite_square",
           "square_stack", "row_index", "check_subjects", "layer_values", "train_masks"]


def as_float_array(x, name: str, ndim) -> np.ndarray:
    """``np.asarray(x, dtype=float)`` with ``ndim`` (an int or a tuple of allowed ints) checked."""
    arr = np.asarray(x, dtype=float)
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {arr.shape}")
    return arr


def as_numeric_2d(x, name: str, allow_1d: bool = True) -> np.ndarray:
    """A numeric (int/float) array, 2-D (samples x columns), or 1-D made a column if allowed.

    The dtype is kept (no copy): callers convert to float64 where they compute."""
    A = np.asarray(x)
    if A.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {A.dtype}")
    if A.ndim == 1 and allow_1d:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x columns), got shape {A.shape}")
    return A


def check_finite(A: np.ndarray, name: str, row: str = "row", col: str = "column") -> None:
    """``ValueError`` naming the first NaN/inf of a 2-D array (``row`` / ``col`` name the axes)."""
    if not np.all(np.isfinite(A)):
        bad = np.argwhere(~np.isfinite(A))[0]
        raise ValueError(f"{name} contains NaN or inf (first at {row} {bad[0]}, {col} {bad[1]})")


def as_features(X, name: str, n: int | None = None) -> np.ndarray:
    """A finite (sounds x features) matrix with >= 3 sounds (``n`` of them if given) and >= 1
    feature, as C-contiguous float32/float64 (other dtypes become float64)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (sounds x features) array, got shape {X.shape}")
    if X.shape[0] < 3:
        raise ValueError(f"{name} needs at least 3 sounds, got {X.shape[0]}")
    if X.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {X.shape})")
    if n is not None and X.shape[0] != n:
        raise ValueError(f"{name} has {X.shape[0]} sounds, expected {n}")
    if not np.issubdtype(X.dtype, np.floating) or X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or inf")
    return np.ascontiguousarray(X)


def finite_square(A, name: str, n: int | None = None) -> np.ndarray:
    """A square float64 matrix of >= 3 sounds (``n`` if given) with a finite strict upper triangle."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {A.shape}")
    if A.shape[0] < 3:
        raise ValueError(f"{name} needs at least 3 sounds, got {A.shape[0]}")
    if n is not None and A.shape[0] != n:
        raise ValueError(f"matrices differ in size: {A.shape[0]} vs {n} sounds")
    iu = np.triu_indices(A.shape[0], 1)
    if not np.all(np.isfinite(A[iu])):
        raise ValueError(f"{name} has NaN or inf in its upper triangle")
    return np.ascontiguousarray(A)


def square_stack(A, name: str):
    """A square matrix or a stack of them as a (K, n, n) float64 stack, and whether it was one."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must be a square matrix or a stack of them, got shape {A.shape}")
    if A.shape[-1] < 3:
        raise ValueError(f"{name} needs at least 3 sounds, got {A.shape[-1]}")
    return np.ascontiguousarray(A.reshape((-1,) + A.shape[-2:])), A.ndim == 2


def row_index(sel, n: int, name: str) -> np.ndarray:
    """int64 indices from a boolean mask of length ``n`` or from indices into ``range(n)``."""
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise ValueError(f"{name} mask must have shape ({n},), got {sel.shape}")
        idx = np.flatnonzero(sel)
    else:
        idx = sel.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} indices out of range for {n} sounds")
    return np.ascontiguousarray(idx, dtype=np.int64)


def check_subjects(subj_idx, n_voxels: int) -> np.ndarray:
    """One participant label per voxel (1-D, ``n_voxels`` long, at least one voxel)."""
    subj = np.asarray(subj_idx)
    if subj.ndim != 1 or subj.shape[0] != n_voxels:
        raise ValueError(f"subj_idx must be 1-D with one entry per voxel ({n_voxels}), "
                         f"got shape {subj.shape}")
    if n_voxels == 0:
        raise ValueError("no voxels")
    return subj


def layer_values(values, name: str = "values") -> np.ndarray:
    """Per-split scores stacked over layers: float (n_layers >= 1, n_voxels >= 1, 10 splits)."""
    arr = as_float_array(values, name, 3)
    n_layers, n_voxels, n_splits = arr.shape
    if n_splits != N_SPLITS:
        raise ValueError(f"{name} must be (layers, voxels, {N_SPLITS} splits), got shape {arr.shape}")
    if n_layers == 0 or n_voxels == 0:
        raise ValueError(f"{name} has no layers or no voxels: shape {arr.shape}")
    return arr


def train_masks(splits, n: int, *, min_train: int = 3, min_test: int = 2,
                what: str = "stimuli") -> np.ndarray:
    """The one parser of cross-validation splits: boolean (n_splits, n) train masks.

    ``splits``: ``None`` (the study's splits, :func:`fastenc.seed_splits`, for its 165
    stimuli only), a boolean (n_splits, n) array of train masks, or train indices per split
    (a list of integer index arrays, or a 2-D integer array). Every split needs at least
    ``min_train`` train and ``min_test`` test stimuli: the regression needs 2 test stimuli for
    a test correlation, the RSA 3 test sounds for a test RSM whose triangle (3 values) has a
    rank correlation, and 3 train stimuli for leave-one-out / a train RSM.
    """
    if splits is None:
        if n != N_STIMULI:
            raise ValueError(f"the default splits are the study's ({N_STIMULI} {what}); got {n} {what}: "
                             "pass splits= explicitly")
        from .splits import seed_splits
        return seed_splits()
    if not (isinstance(splits, np.ndarray) and splits.dtype == bool):
        try:  # train indices per split
            idx = [np.asarray(t) for t in splits]
        except TypeError:
            idx = None
        if idx and all(t.ndim == 1 and t.dtype.kind in "iu" for t in idx):
            if any(t.size and (t.min() < 0 or t.max() >= n) for t in idx):
                raise ValueError(f"split train indices out of range for {n} {what}")
            S = np.zeros((len(idx), n), dtype=bool)
            for k, t in enumerate(idx):
                S[k, t] = True
            splits = S
    S = np.asarray(splits)
    if S.dtype != bool or S.ndim != 2 or S.shape[1] != n:
        raise ValueError(f"splits must be boolean (n_splits, {n}) train masks or train indices per "
                         f"split, got {S.dtype} {S.shape}")
    n_tr = S.sum(axis=1)
    if np.any(n_tr < min_train) or np.any(n - n_tr < min_test):
        raise ValueError(f"every split needs >= {min_train} train and >= {min_test} test {what}")
    return S
