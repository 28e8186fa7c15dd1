"""Representational similarity analysis (METHOD §6) and the statistics the study lacks.

The reference study's cross-validated RSA (:func:`cv_best_layer`) plus compiled
permutation tests, bootstraps and paired model comparisons.

Conventions
-----------
* A similarity matrix (RSM) is the Pearson correlation between sounds across features of
  an (sounds × features) matrix whose features were z-scored with train-sound statistics
  (population std; a zero-variance feature is only centred). The RDM is ``1 - RSM``;
  comparisons use only the strict upper triangle, so RSMs and RDMs give correlations of
  opposite sign and the same magnitude.
* Matrices are compared by the Spearman (average ranks) or Pearson correlation of their
  strict upper triangles (``np.triu_indices(n, 1)``); the lower triangle is ignored.
* NaN policy: a comparison involving a triangle that holds a NaN/inf, or is constant, is
  NaN (like ``scipy.stats.spearmanr``'s default ``nan_policy="propagate"``). A sound
  whose features are constant after z-scoring has NaN similarities. The permutation
  and bootstrap functions refuse non-finite input with ``ValueError``.
* Randomness: every random function takes ``seed`` and draws from
  ``numpy.random.default_rng(seed)`` in Python, up front, before any compiled work; the
  compiled kernels only evaluate the draws, so results are identical for any number of
  threads.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ._core.rsa import (boot_sounds, full_std, perm_dot, perm_dot_int, rsm_rows, split_triangles,
                        sym_ranks2, upper_std)

__all__ = [
    "similarity_matrix",
    "compare",
    "category_order",
    "cv_best_layer",
    "best_layer_all_sounds",
    "RSAAllSoundsResult",
    "roi_vs_roi",
    "ROISimilarityResult",
    "prepare_layers",
    "prepare_participants",
    "PreparedRSMs",
    "RSACVResult",
    "within_subject_sem",
    "permutation_test",
    "permutation_test_many",
    "PermutationResult",
    "bootstrap_participants",
    "bootstrap_sounds",
    "BootstrapResult",
    "compare_models_paired",
    "PairedComparisonResult",
]

_METHODS = ("spearman", "pearson")


# ----------------------------------------------------------------------------- helpers
def _check_method(method):
    if method not in _METHODS:
        raise ValueError(f"method must be 'spearman' or 'pearson', got {method!r}")
    return method == "spearman"


def _as_features(name, X, n=None):
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


def _rows(sel, n, name):
    """Index array from a boolean mask or indices over ``n`` sounds."""
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


def _as_stack(name, A):
    A = np.asarray(A, dtype=np.float64)
    if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"{name} must be a square matrix or a stack of them, got shape {A.shape}")
    if A.shape[-1] < 3:
        raise ValueError(f"{name} needs at least 3 sounds, got {A.shape[-1]}")
    return np.ascontiguousarray(A.reshape((-1,) + A.shape[-2:])), A.ndim == 2


def _std_triangles(A, ranks):
    return upper_std(np.ascontiguousarray(A, dtype=np.float64), ranks)


def _corr(Ua, Ub):
    C = Ua @ Ub.T
    np.clip(C, -1.0, 1.0, out=C)
    return C


# ----------------------------------------------------------------------------- basics
def similarity_matrix(X, train=None, sounds=None):
    """Representational similarity matrix (Pearson across z-scored features).

    Parameters
    ----------
    X : (n_sounds, n_features) array_like, finite
    train : bool mask or int indices over the sounds, optional
        Sounds whose mean and population std z-score each feature (default: all).
        A zero-variance feature is only centred.
    sounds : bool mask or int indices, optional
        Sounds the matrix is computed over (default: all), z-scored with the train
        statistics. ``similarity_matrix(X, train=m, sounds=~m)`` is the study's
        test-sound RSM.

    Returns
    -------
    (k, k) float64 RSM with unit diagonal. The RDM is ``1 - RSM``. A sound that is
    constant across features after z-scoring has NaN similarities.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(6, 20))
    >>> R = similarity_matrix(X, train=np.arange(3))
    >>> R.shape, bool(np.allclose(R, R.T))
    ((6, 6), True)
    """
    X = _as_features("X", X)
    n = X.shape[0]
    tr = np.arange(n, dtype=np.int64) if train is None else _rows(train, n, "train")
    ev = np.arange(n, dtype=np.int64) if sounds is None else _rows(sounds, n, "sounds")
    if tr.size < 1:
        raise ValueError("train selects no sounds")
    if ev.size < 1:
        raise ValueError("sounds selects no sounds")
    with threadpool_limits(limits=1, user_api="blas"):
        return rsm_rows(X, tr, ev)


def compare(a, b, method="spearman"):
    """Spearman or Pearson correlation between the strict upper triangles of matrices.

    Parameters
    ----------
    a : (n, n) or (K, n, n) array_like
    b : (n, n) or (P, n, n) array_like
    method : {"spearman", "pearson"}
        Spearman uses average ranks for ties.

    Returns
    -------
    float if both are single matrices, (K,) or (P,) if one is a stack, (K, P) if both.
    NaN where a triangle holds a NaN/inf or is constant.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(8, 30))
    >>> a = similarity_matrix(X); b = similarity_matrix(X ** 3)
    >>> bool(-1 <= compare(a, b) <= 1), float(compare(a, a))
    (True, 1.0)
    """
    ranks = _check_method(method)
    A, a1 = _as_stack("a", a)
    B, b1 = _as_stack("b", b)
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"matrices differ in size: {A.shape[-1]} vs {B.shape[-1]} sounds")
    C = _corr(_std_triangles(A, ranks), _std_triangles(B, ranks))
    if a1 and b1:
        return float(C[0, 0])
    if a1:
        return C[0]
    if b1:
        return C[:, 0]
    return C


def _registry_category_order():
    with resources.files("fastenc").joinpath("data/model_registry.json").open("r") as f:
        return list(json.load(f)["sound_category_order"])


def category_order(categories, order=None):
    """Indices that reorder sounds by category (stable within category), as in METHOD §6.

    Parameters
    ----------
    categories : sequence of str or bytes, one per sound (stimulus order)
    order : sequence of str, optional
        Category order; default the registry's ``sound_category_order`` (Music, Song,
        EngSpeech, ForSpeech, HumVoc, AniVoc, HumNonVoc, AniNonVoc, Nature, Mechanical,
        EnvSound).

    Returns
    -------
    (n,) int64 such that ``X[idx]`` is in category order.

    Examples
    --------
    >>> category_order(["Song", "Music", "Song", "Music"]).tolist()
    [1, 3, 0, 2]
    """
    order = _registry_category_order() if order is None else list(order)
    cats = [c.decode() if isinstance(c, (bytes, np.bytes_)) else str(c) for c in categories]
    pos = {c: i for i, c in enumerate(order)}
    unknown = sorted(set(cats) - set(pos))
    if unknown:
        raise ValueError(f"unknown sound categories {unknown}; expected one of {order}")
    key = np.array([pos[c] for c in cats], dtype=np.int64)
    return np.argsort(key, kind="stable").astype(np.int64)


# ----------------------------------------------------------------------------- CV RSA
@dataclass
class RSACVResult:
    """Cross-validated RSA of one model against participants (METHOD §6).

    Attributes
    ----------
    score : (P,) float64
        Per participant: median over splits of the test Spearman at the best layer.
    model_score : float
        Mean of ``score`` over participants (NaN-propagating).
    best_layer : (P, S) int64
        Best layer per participant and split (nanargmax of the train Spearman, first
        wins ties; -1 where every layer's train correlation is NaN).
    split_score : (P, S) float64
        Test Spearman at the best layer (NaN where ``best_layer`` is -1).
    test_corr, train_corr : (P, S, L) float64
        Spearman between each layer's and each participant's test (train) RSM.
    noise_ceiling : (P,) float64 or None
        Median over splits of ``noise_ceiling_splits``.
    noise_ceiling_splits : (P, S) float64 or None
        Correlation of the participant's test RSM with the mean of the other
        participants' test RSMs (Pearson by default — the study's quirk; Spearman with
        ``corrected=True``).
    model_noise_ceiling : float
        Mean of ``noise_ceiling`` over participants (NaN without a ceiling).
    order : (n,) int64
        Indices that reordered the sounds (identity when no categories were given).
    train_masks : (S, n) bool
        Train masks used, over the reordered axis.
    corrected : bool
    """

    score: np.ndarray
    model_score: float
    best_layer: np.ndarray
    split_score: np.ndarray
    test_corr: np.ndarray
    train_corr: np.ndarray
    noise_ceiling: np.ndarray | None
    noise_ceiling_splits: np.ndarray | None
    model_noise_ceiling: float
    order: np.ndarray
    train_masks: np.ndarray
    corrected: bool = False


def _split_masks(splits, n):
    if splits is None:
        from .splits import seed_splits

        if n != 165:
            raise ValueError(f"the default splits are the study's 165-sound splits; got {n} sounds, "
                             "pass splits= explicitly")
        masks = np.asarray(seed_splits(), dtype=bool)
    else:
        masks = np.asarray(splits)
        if masks.dtype != bool:  # list of train index arrays
            idx = [np.asarray(s, dtype=np.int64).ravel() for s in splits]
            masks = np.zeros((len(idx), n), dtype=bool)
            for k, s in enumerate(idx):
                if s.size and (s.min() < 0 or s.max() >= n):
                    raise ValueError("split train indices out of range")
                masks[k, s] = True
    if masks.ndim != 2 or masks.shape[1] != n:
        raise ValueError(f"splits must be (n_splits, {n}) boolean train masks, got shape {masks.shape}")
    n_tr = masks.sum(1)
    if np.any(n_tr < 3) or np.any(n - n_tr < 3):
        raise ValueError("every split needs at least 3 train and 3 test sounds")
    return masks


def _padded_rows(masks):
    """Train / test indices of each split, padded into (S, n) int64 arrays, and counts."""
    S, n = masks.shape
    tr_rows = np.zeros((S, n), dtype=np.int64)
    te_rows = np.zeros((S, n), dtype=np.int64)
    n_tr = masks.sum(1).astype(np.int64)
    n_te = n - n_tr
    for k, m in enumerate(masks):
        tr_rows[k, :n_tr[k]] = np.flatnonzero(m)
        te_rows[k, :n_te[k]] = np.flatnonzero(~m)
    return tr_rows, n_tr, te_rows, n_te


@dataclass
class PreparedRSMs:
    """Per-split standardized triangles of train and test RSMs, computed once and reused.

    Made by :func:`prepare_layers` (a model's layers) or :func:`prepare_participants`
    (participants, with their leave-one-out noise ceiling, which does not depend on the model).
    Reusing them across ROI settings, targets and models is what makes the whole study's
    RSA fast: a model's RSMs are computed once, not once per participant set.
    """

    train: np.ndarray       # (K, S, m) standardized train triangles (ranks for Spearman)
    test: np.ndarray        # (K, S, m) standardized test triangles
    masks: np.ndarray       # (S, n) train masks over the reordered axis
    order: np.ndarray       # (n,) reordering of the sounds
    noise_ceiling_splits: np.ndarray | None = None  # (K, S), participants only
    corrected: bool = False
    full: np.ndarray | None = None  # (K, n(n-1)/2) standardized rank triangles of the all-sound RSMs

    @property
    def n_items(self):
        return self.train.shape[0]


def _full_triangle(X):
    """Standardized rank triangle of the RSM of all sounds, z-scored with all-sound statistics."""
    rows = np.arange(X.shape[0], dtype=np.int64)
    return upper_std(rsm_rows(X, rows, rows)[None], True)[0]


def _prep_inputs(mats, name, splits, categories):
    mats = list(mats)
    if len(mats) == 0:
        raise ValueError(f"{name} is empty")
    n = np.asarray(mats[0]).shape[0]
    mats = [_as_features(f"{name}[{i}]", X, n) for i, X in enumerate(mats)]
    if categories is not None:
        if len(categories) != n:
            raise ValueError(f"categories has {len(categories)} labels for {n} sounds")
        order = category_order(categories)
    else:
        order = np.arange(n, dtype=np.int64)
    return mats, order, _split_masks(splits, n)


def prepare_layers(layers, splits=None, categories=None) -> PreparedRSMs:
    """Split RSMs of a model's layers, for :func:`cv_best_layer` (see its parameters)."""
    layers, order, masks = _prep_inputs(layers, "layers", splits, categories)
    tr_rows, n_tr, te_rows, n_te = _padded_rows(masks)
    Mtr, Mte, Mfull = [], [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for X in layers:
            Xo = np.ascontiguousarray(X[order])
            u, v, _ = split_triangles(Xo, tr_rows, n_tr, te_rows, n_te, True, False)
            Mtr.append(u)
            Mte.append(v)
            Mfull.append(_full_triangle(Xo))
    return PreparedRSMs(train=np.stack(Mtr), test=np.stack(Mte), masks=masks, order=order,
                        full=np.stack(Mfull))


def prepare_participants(participants, splits=None, categories=None, noise_ceiling=True,
                         corrected=False) -> PreparedRSMs:
    """Split RSMs of participants (and their noise ceiling), for :func:`cv_best_layer`."""
    participants, order, masks = _prep_inputs(participants, "participants", splits, categories)
    P = len(participants)
    if noise_ceiling and P < 2:
        raise ValueError("the noise ceiling needs at least 2 participants (or noise_ceiling=False)")
    tr_rows, n_tr, te_rows, n_te = _padded_rows(masks)
    Ptr, Pte, Rte, Pfull = [], [], [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for Y in participants:
            Yo = np.ascontiguousarray(Y[order])
            u, v, R = split_triangles(Yo, tr_rows, n_tr, te_rows, n_te, True, noise_ceiling)
            Ptr.append(u)
            Pte.append(v)
            Rte.append(R)
            Pfull.append(_full_triangle(Yo))
        nc_splits = None
        if noise_ceiling:
            S = masks.shape[0]
            nc_ranks = bool(corrected)
            nc_splits = np.empty((P, S))
            for s in range(S):
                k = int(n_te[s])
                R = np.stack([Rp[s, :k, :k] for Rp in Rte])  # (P, k, k)
                tot = R.sum(0)
                others = (tot[None] - R) / (P - 1)
                U_self = upper_std(np.ascontiguousarray(R), nc_ranks)
                U_oth = upper_std(np.ascontiguousarray(others), nc_ranks)
                nc_splits[:, s] = np.clip(np.einsum("pm,pm->p", U_self, U_oth), -1.0, 1.0)
    return PreparedRSMs(train=np.stack(Ptr), test=np.stack(Pte), masks=masks, order=order,
                        noise_ceiling_splits=nc_splits, corrected=bool(corrected), full=np.stack(Pfull))


def cv_best_layer(layers, participants, splits=None, categories=None, noise_ceiling=True,
                  corrected=None):
    """The study's cross-validated RSA best-layer score for one model (METHOD §6).

    Parameters
    ----------
    layers : list of (n, units_l) arrays, or PreparedRSMs
        Model activations per layer, in stimulus order (finite), or their
        :func:`prepare_layers` (reused across participant sets).
    participants : list of (n, voxels_p) arrays, or PreparedRSMs
        Neural responses per participant (mean over repetitions), stimulus order, or their
        :func:`prepare_participants` (reused across models; holds the noise ceiling).
    splits : (S, n) bool train masks or list of train index arrays, optional
        Over the **reordered** sound axis. Default: ``fastenc.splits.seed_splits()``
        (METHOD §2: 10 splits, 83 train / 82 test).
    categories : sequence of str, optional
        Per-sound category labels in stimulus order; sounds are reordered with
        :func:`category_order` before the splits are applied (the study's procedure).
        Without it the sounds are used in the order given.
    noise_ceiling : bool
        Also compute the leave-one-participant-out noise ceiling (needs >= 2 participants).
    corrected : bool, optional
        False (default) reproduces the study: the ceiling uses Pearson while model scores
        use Spearman. True uses Spearman for the ceiling too. With prepared participants,
        defaults to the setting they were prepared with.

    Returns
    -------
    RSACVResult

    Notes
    -----
    Per split, each layer's and participant's features are z-scored with the train
    sounds' statistics; the train RSM is over the train sounds and the test RSM over
    the test sounds (z-scored with the same train statistics). Best layer per
    participant and split = nanargmax over layers of the train Spearman (first wins
    ties); split score = the test Spearman at that layer; participant score = median
    over splits (NaN if any split is NaN); model score = mean over participants.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> layers = [rng.normal(size=(30, 8)) for _ in range(2)]
    >>> parts = [rng.normal(size=(30, 5)) for _ in range(3)]
    >>> masks = np.zeros((2, 30), bool); masks[0, :15] = True; masks[1, 15:] = True
    >>> res = cv_best_layer(layers, parts, splits=masks)
    >>> res.best_layer.shape, res.test_corr.shape
    ((3, 2), (3, 2, 2))
    """
    if corrected is None:
        corrected = participants.corrected if isinstance(participants, PreparedRSMs) else False
    M = layers if isinstance(layers, PreparedRSMs) else prepare_layers(layers, splits, categories)
    if isinstance(participants, PreparedRSMs):
        Pp = participants
        if noise_ceiling and Pp.noise_ceiling_splits is None:
            raise ValueError("participants were prepared without a noise ceiling (noise_ceiling=False)")
        if noise_ceiling and Pp.noise_ceiling_splits is not None and bool(corrected) != Pp.corrected:
            raise ValueError("participants were prepared with another `corrected` setting")
    else:
        Pp = prepare_participants(participants, splits, categories, noise_ceiling, corrected)
    if M.train.shape[1:] != Pp.train.shape[1:] or not np.array_equal(M.masks, Pp.masks) \
            or not np.array_equal(M.order, Pp.order):
        raise ValueError("layers and participants were prepared with different sounds, splits or categories")
    return _cv_best_layer(M, Pp, noise_ceiling)


def _cv_best_layer(M: PreparedRSMs, Pp: PreparedRSMs, noise_ceiling):
    S, L, P = M.masks.shape[0], M.n_items, Pp.n_items
    train_corr = np.empty((P, S, L))
    test_corr = np.empty((P, S, L))
    for s in range(S):
        train_corr[:, s, :] = _corr(Pp.train[:, s], M.train[:, s])
        test_corr[:, s, :] = _corr(Pp.test[:, s], M.test[:, s])

    best = np.full((P, S), -1, dtype=np.int64)
    split_score = np.full((P, S), np.nan)
    finite = ~np.isnan(train_corr)
    any_ok = finite.any(axis=2)
    filled = np.where(finite, train_corr, -np.inf)
    arg = np.argmax(filled, axis=2)  # first max wins, like np.nanargmax
    best[any_ok] = arg[any_ok]
    pi, si = np.nonzero(any_ok)
    split_score[pi, si] = test_corr[pi, si, arg[pi, si]]
    score = np.median(split_score, axis=1)
    model_score = float(np.mean(score))

    nc = nc_splits = None
    model_nc = np.nan
    if noise_ceiling:
        nc_splits = Pp.noise_ceiling_splits
        nc = np.median(nc_splits, axis=1)
        model_nc = float(np.mean(nc))

    return RSACVResult(score=score, model_score=model_score, best_layer=best,
                       split_score=split_score, test_corr=test_corr, train_corr=train_corr,
                       noise_ceiling=nc, noise_ceiling_splits=nc_splits,
                       model_noise_ceiling=model_nc, order=M.order, train_masks=M.masks,
                       corrected=bool(Pp.corrected))


# ----------------------------------------------------------------------------- best layer, all sounds
@dataclass
class RSAAllSoundsResult:
    """Best layer per participant from RSMs of all sounds (not cross-validated; METHOD §6).

    Attributes
    ----------
    corr : (P, L) float64
        Spearman between each layer's all-sound RSM and each participant's all-sound RSM.
    best_layer : (P,) int64
        ``np.nanargmax`` over layers (first wins ties); -1 where every layer is NaN.
    rel_pos : (P,) float64
        ``best_layer / (L - 1)``; NaN where ``best_layer`` is -1 or the model has one layer.
    """

    corr: np.ndarray
    best_layer: np.ndarray
    rel_pos: np.ndarray


def _full_triangles(items, name):
    if isinstance(items, PreparedRSMs):
        if items.full is None:
            raise ValueError(f"{name} were prepared without all-sound triangles")
        return items.full
    mats = [_as_features(f"{name}[{i}]", X) for i, X in enumerate(items)]
    if not mats:
        raise ValueError(f"{name} is empty")
    n = mats[0].shape[0]
    if any(X.shape[0] != n for X in mats):
        raise ValueError(f"{name} differ in their number of sounds")
    with threadpool_limits(limits=1, user_api="blas"):
        return np.stack([_full_triangle(X) for X in mats])


def best_layer_all_sounds(layers, participants):
    """The reference study's best layer per participant for the ROI analysis (METHOD §6).

    Not cross-validated (no score is reported from it): each layer's RSM and each participant's
    RSM are computed on **all sounds**, every feature z-scored with all-sound statistics
    (population std; a zero-variance feature is only centred), and compared by the Spearman
    correlation of their strict upper triangles; best layer = ``np.nanargmax`` over layers,
    relative position = best / (L - 1) (the study's ``all_data_rsa_for_best_layer`` and
    ``plot_all_roi_rsa_scatter``). The order of the sounds does not matter.

    Parameters
    ----------
    layers : list of (n, units) arrays, or PreparedRSMs from :func:`prepare_layers`
    participants : list of (n, voxels) arrays, or PreparedRSMs from :func:`prepare_participants`

    Returns
    -------
    RSAAllSoundsResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(20, 6))
    >>> layers = [rng.normal(size=(20, 8)), Z @ rng.normal(size=(6, 8))]
    >>> best_layer_all_sounds(layers, [Z @ rng.normal(size=(6, 5))]).rel_pos.tolist()
    [1.0]
    """
    Lt = _full_triangles(layers, "layers")
    Pt = _full_triangles(participants, "participants")
    if Lt.shape[1] != Pt.shape[1]:
        raise ValueError("layers and participants have different numbers of sounds")
    corr = _corr(Pt, Lt)  # (P, L); NaN rows give NaN
    L = corr.shape[1]
    finite = ~np.isnan(corr)
    ok = finite.any(axis=1)
    best = np.where(ok, np.argmax(np.where(finite, corr, -np.inf), axis=1), -1).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(ok & (L >= 2), best / max(L - 1, 1), np.nan)
    return RSAAllSoundsResult(corr=corr, best_layer=best, rel_pos=rel)


# ----------------------------------------------------------------------------- ROI vs ROI
@dataclass
class ROISimilarityResult:
    """ROI-vs-ROI similarity of the neural RSMs (METHOD §6).

    Attributes
    ----------
    matrix : DataFrame (ROI x ROI)
        Mean over participants and splits of the within-participant Spearman between the two
        ROIs' train RSMs (index named ``roi``).
    n_participants : DataFrame (ROI x ROI), int
        Participants that have both ROIs.
    values : DataFrame
        Long table ``roi_1, roi_2, participant, split, spearman`` (every ordered pair).
    """

    matrix: object
    n_participants: object
    values: object


def roi_vs_roi(rois, splits="all", categories=None, method="spearman"):
    """Similarity between ROIs: per participant and split, correlate two ROIs' train RSMs.

    The reference study's ``rsa_comparison_neural_roi`` (used for its ROI figure): per
    participant, ROI and split, the RSM of the train sounds (each voxel z-scored with the train
    sounds' statistics), then for every pair of ROIs the Spearman correlation of the two RSMs'
    strict upper triangles; the matrix is the mean of these values over participants and splits
    (not the correlation of RSMs averaged over participants). The study ran it with **one split
    whose train set is all 165 sounds** (``n_CV_splits = 1, n_for_train = 165``): the default.

    Parameters
    ----------
    rois : mapping ROI name -> mapping participant id -> (n, voxels) array
        Mean-over-repetitions responses per ROI and participant, stimulus order, >= 2 voxels.
        A pair of ROIs is averaged over the participants present in both.
    splits : "all", or (S, n) bool train masks / list of train index arrays
        "all": one split with every sound in train (the study). Otherwise over the sounds
        reordered by ``categories`` (if given), as in :func:`cv_best_layer`.
    categories : sequence of str, optional
        Per-sound categories; reorders the sounds first (matters only for explicit splits).
    method : {"spearman", "pearson"}

    Returns
    -------
    ROISimilarityResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(30, 5))
    >>> rois = {r: {s: Z @ rng.normal(size=(5, 8)) + rng.normal(size=(30, 8)) for s in range(3)}
    ...         for r in ("A", "B")}
    >>> res = roi_vs_roi(rois)
    >>> float(res.matrix.loc["A", "A"]), int(res.n_participants.loc["A", "B"])
    (1.0, 3)
    """
    ranks = _check_method(method)
    names = list(rois)
    if not names:
        raise ValueError("rois is empty")
    tri = {}
    n = None
    for r in names:
        parts = dict(rois[r])
        for pid, Y in parts.items():
            Y = _as_features(f"rois[{r!r}][{pid!r}]", Y, n)
            n = Y.shape[0]
            parts[pid] = Y
        tri[r] = parts
    if n is None:
        raise ValueError("no participants")
    order = category_order(categories) if categories is not None else np.arange(n, dtype=np.int64)
    if categories is not None and len(categories) != n:
        raise ValueError(f"categories has {len(categories)} labels for {n} sounds")
    if isinstance(splits, str):
        if splits != "all":
            raise ValueError("splits must be 'all' or train masks / indices")
        masks = np.ones((1, n), dtype=bool)
    else:
        masks = np.asarray(splits)
        if masks.dtype != bool:
            idx = [np.asarray(t, dtype=np.int64).ravel() for t in splits]
            masks = np.zeros((len(idx), n), dtype=bool)
            for k, t in enumerate(idx):
                masks[k, t] = True
        if masks.ndim != 2 or masks.shape[1] != n or np.any(masks.sum(1) < 3):
            raise ValueError(f"splits must be (n_splits, {n}) train masks with >= 3 train sounds each")
    S = masks.shape[0]
    U = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for r in names:
            for pid, Y in tri[r].items():
                Yo = np.ascontiguousarray(Y[order])
                rows_list = []
                for s in range(S):
                    rows = np.flatnonzero(masks[s]).astype(np.int64)
                    rows_list.append(upper_std(rsm_rows(Yo, rows, rows)[None], ranks)[0])
                U[(r, pid)] = rows_list
    M = np.full((len(names), len(names)), np.nan)
    N = np.zeros((len(names), len(names)), dtype=np.int64)
    recs = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            common = [pid for pid in tri[a] if pid in tri[b]]
            vals = []
            for pid in common:
                for s in range(S):
                    v = float(np.clip(U[(a, pid)][s] @ U[(b, pid)][s], -1.0, 1.0))
                    vals.append(v)
                    recs.append({"roi_1": a, "roi_2": b, "participant": pid, "split": s, "spearman": v})
            N[i, j] = len(common)
            if vals:
                M[i, j] = float(np.mean(vals))
    idx = pd.Index(names, name="roi")
    cols = pd.Index(names)
    col = "spearman" if ranks else "pearson"
    values = pd.DataFrame(recs, columns=["roi_1", "roi_2", "participant", "split", "spearman"])
    if not ranks:
        values = values.rename(columns={"spearman": col})
    return ROISimilarityResult(matrix=pd.DataFrame(M, index=idx, columns=cols),
                               n_participants=pd.DataFrame(N, index=idx, columns=cols), values=values)


def within_subject_sem(values, quirk=True):
    """Within-participant SEM per model (METHOD §5, RSA variant of §6).

    Subtract each participant's mean across models, take ``np.std`` (ddof 0) over
    participants per model, divide by ``sqrt(n - 1)``.

    Parameters
    ----------
    values : (participants, models) array_like
    quirk : bool
        True (default) reproduces the reference study's RSA figure: ``n`` is the number
        of **models**. False uses the number of participants (the correct form).

    Returns
    -------
    (models,) float64

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[1., 2., 3.], [2., 2., 5.]])
    >>> within_subject_sem(v, quirk=False).round(3).tolist()
    [0.0, 0.5, 0.5]
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values must be a non-empty (participants, models) array, got shape {v.shape}")
    n = v.shape[1] if quirk else v.shape[0]
    if n < 2:
        raise ValueError("within_subject_sem needs at least 2 " + ("models" if quirk else "participants"))
    d = v - v.mean(axis=1, keepdims=True)
    return np.std(d, axis=0) / np.sqrt(n - 1)


# ----------------------------------------------------------------------------- permutation tests
@dataclass
class PermutationResult:
    """Result of a permutation test.

    Attributes
    ----------
    statistic : float or (K,) array
        Observed correlation(s).
    pvalue : float or (K,) array
        One-sided (greater) p value, ``(k + 1) / (N + 1)`` with ``k`` the number of
        permutations whose statistic is >= the observed one (``k / N`` when every
        permutation was enumerated, ``n_permutations="all"``). For many matrices this is
        the uncorrected p value.
    pvalue_corrected : float or (K,) array or None
        Max-statistic (family-wise) corrected p values (``permutation_test_many``).
    null_distribution : (N,) or (N, K) array
        Statistic under each permutation.
    permutations : (N, n) int64 array
        The permutations used (rows and columns of the permuted matrix, together).
    """

    statistic: object
    pvalue: object
    null_distribution: np.ndarray
    permutations: np.ndarray
    pvalue_corrected: object = None


def _finite_square(name, A, n=None):
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


def _draw_perms(n, n_permutations, seed, permutations):
    """Permutations to evaluate; returns (perms, exact)."""
    if permutations is not None:
        perms = np.ascontiguousarray(np.asarray(permutations, dtype=np.int64))
        if perms.ndim != 2 or perms.shape[1] != n:
            raise ValueError(f"permutations must be (N, {n}), got shape {perms.shape}")
        if not np.all(np.sort(perms, axis=1) == np.arange(n)):
            raise ValueError("each row of permutations must be a permutation of range(n)")
        return perms, False
    if isinstance(n_permutations, str):
        if n_permutations != "all":
            raise ValueError("n_permutations must be a positive int or 'all'")
        if n > 9:
            raise ValueError(f"'all' enumerates n! permutations; refused for n = {n} > 9")
        return np.array(list(itertools.permutations(range(n))), dtype=np.int64), True
    n_permutations = int(n_permutations)
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.tile(np.arange(n, dtype=np.int64), (n_permutations, 1)), axis=1)
    return np.ascontiguousarray(perms), False


def _count_ge(null, obs):
    """Number of null values >= obs, with scipy's relative tolerance for rounding."""
    gamma = np.abs(obs) * np.finfo(np.float64).eps * 100
    return np.sum(null >= obs - gamma, axis=0)


def _perm_core(models, brain, n_permutations, method, seed, permutations):
    """Observed statistics (K,), p values (K,), null (N, K), permutations, exact flag."""
    ranks = _check_method(method)
    brain = _finite_square("b", brain)
    n = brain.shape[0]
    mats = [_finite_square("a", m, n) for m in models]
    perms, exact = _draw_perms(n, n_permutations, seed, permutations)
    N, K = perms.shape[0], len(mats)
    perms = np.ascontiguousarray(perms, dtype=np.int16 if n <= 32767 else np.int32)
    both = np.concatenate([np.arange(n, dtype=perms.dtype)[None], perms])
    m = n * (n - 1) // 2
    obs = np.full(K, np.nan)
    pval = np.full(K, np.nan)
    null = np.full((N, K), np.nan)
    if ranks and 4.0 * float(m) ** 3 < 9.0e18:
        # exact integer path: twice the average ranks, sums in int64
        idt = np.int16 if 2 * m <= np.iinfo(np.int16).max else np.int32
        Fb = sym_ranks2(brain)
        iu = np.triu_indices(n, 1)
        mu = m + 1
        ss_b = float(np.sum((Fb[iu] - mu) ** 2))
        Fb = np.ascontiguousarray(Fb, dtype=idt)
        for k, a in enumerate(mats):
            Ma = sym_ranks2(a)
            ss_a = float(np.sum((Ma[iu] - mu) ** 2))
            if ss_a == 0.0 or ss_b == 0.0:  # constant triangle: correlation undefined
                continue
            Ma = np.ascontiguousarray(Ma, dtype=idt)
            shift = m * mu * mu
            allnum = perm_dot_int(Ma, Fb, both) - shift  # identity first: one parallel region
            num_obs, num = allnum[0], allnum[1:]
            den = math.sqrt(ss_a) * math.sqrt(ss_b)
            obs[k] = num_obs / den
            null[:, k] = num / den
            cnt = np.count_nonzero(num >= num_obs)
            pval[k] = cnt / N if exact else (cnt + 1) / (N + 1)
        return obs, pval, null, perms, exact
    Fb = full_std(brain, ranks)
    for k, a in enumerate(mats):
        Aa = full_std(a, ranks)
        if np.isnan(Aa).any() or np.isnan(Fb).any():
            continue
        allv = perm_dot(Aa, Fb, both)
        obs[k] = allv[0]
        null[:, k] = allv[1:]
        cnt = _count_ge(null[:, k], obs[k])
        pval[k] = cnt / N if exact else (cnt + 1) / (N + 1)
    return obs, pval, null, perms, exact


def permutation_test(a, b, n_permutations=10000, method="spearman", seed=0, permutations=None):
    """Condition-label permutation test of the correlation between two similarity matrices.

    The rows and columns of ``b`` are permuted together; the statistic is the Spearman
    (or Pearson) correlation of the strict upper triangles. One-sided (greater).

    Parameters
    ----------
    a, b : (n, n) array_like, finite upper triangles, n >= 3
    n_permutations : int or "all"
        Number of random permutations, or ``"all"`` to enumerate all n! (n <= 9; the
        identity included, p = k / n!).
    method : {"spearman", "pearson"}
    seed : int
        Permutations are ``np.random.default_rng(seed).permuted(np.tile(np.arange(n),
        (n_permutations, 1)), axis=1)``, drawn up front.
    permutations : (N, n) int array, optional
        Explicit permutations (overrides ``n_permutations`` and ``seed``).

    Returns
    -------
    PermutationResult
        ``statistic`` and ``pvalue`` floats, ``null_distribution`` (N,). Both NaN when a
        triangle is constant.

    Notes
    -----
    Ranks of ``b``'s triangle are computed once: permuting rows and columns together
    only reorders the multiset of triangle values (read through the symmetric fill), so
    each permuted standardized rank vector is a gather from one (n, n) matrix.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(1).normal(size=(12, 40))
    >>> a = similarity_matrix(X); b = similarity_matrix(X + np.random.default_rng(2).normal(size=X.shape))
    >>> res = permutation_test(a, b, n_permutations=999)
    >>> bool(res.pvalue < 0.05), res.null_distribution.shape
    (True, (999,))
    """
    obs, p, null, perms, _ = _perm_core([a], b, n_permutations, method, seed, permutations)
    return PermutationResult(statistic=float(obs[0]), pvalue=float(p[0]),
                             null_distribution=null[:, 0], permutations=perms)


def permutation_test_many(models, b, n_permutations=10000, method="spearman", seed=0,
                          permutations=None):
    """Permutation tests of many matrices (layers, models) against one, max-statistic corrected.

    The same permutations of ``b`` (rows and columns together) serve every matrix of
    ``models``. ``pvalue`` is per matrix (uncorrected); ``pvalue_corrected`` compares each
    observed statistic with the per-permutation maximum over matrices (family-wise
    error control, Westfall–Young single step): ``(#{max_k null[q, k] >= obs_k} + 1) / (N + 1)``.

    Parameters
    ----------
    models : (K, n, n) array_like or list of (n, n)
    b : (n, n) array_like
    n_permutations, method, seed, permutations
        As :func:`permutation_test`.

    Returns
    -------
    PermutationResult with (K,) ``statistic``, ``pvalue``, ``pvalue_corrected`` and
    (N, K) ``null_distribution``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(10, 30))
    >>> mats = [similarity_matrix(X + s * rng.normal(size=X.shape)) for s in (0.5, 5.0)]
    >>> res = permutation_test_many(mats, similarity_matrix(X), n_permutations=499)
    >>> bool(np.all(res.pvalue_corrected >= res.pvalue))
    True
    """
    models = list(np.asarray(models, dtype=np.float64)) if not isinstance(models, list) else models
    if len(models) == 0:
        raise ValueError("models is empty")
    obs, p, null, perms, exact = _perm_core(models, b, n_permutations, method, seed, permutations)
    N = null.shape[0]
    defined = ~np.isnan(obs)
    # max over the matrices with a defined statistic (a constant matrix's column is all NaN)
    mx = null[:, defined].max(axis=1) if defined.any() else np.full(N, np.nan)
    kc = np.array([_count_ge(mx, o) for o in obs], dtype=np.float64)
    pc = kc / N if exact else (kc + 1) / (N + 1)
    pc = np.where(np.isnan(obs), np.nan, pc)
    return PermutationResult(statistic=obs, pvalue=p, null_distribution=null,
                             permutations=perms, pvalue_corrected=pc)


# ----------------------------------------------------------------------------- bootstraps
@dataclass
class BootstrapResult:
    """Bootstrap estimate.

    Attributes
    ----------
    estimate : float or (K,) array
        Statistic on the original data.
    ci_low, ci_high : float or (K,) array
        Percentile confidence interval (``np.nanquantile``, linear interpolation).
    distribution : (B,) or (B, K) array
        Bootstrap distribution.
    confidence : float
    """

    estimate: object
    ci_low: object
    ci_high: object
    distribution: np.ndarray
    confidence: float


def _check_conf(confidence):
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")


def bootstrap_participants(values, n_boot=10000, confidence=0.95, seed=0):
    """Bootstrap over participants of the mean (per column).

    Parameters
    ----------
    values : (P,) or (P, K) array_like
        One value per participant (e.g. ``RSACVResult.score``), optionally per model.
        Resampling draws the same participants for every column.
    n_boot : int
    confidence : float
    seed : int
        Indices ``np.random.default_rng(seed).integers(0, P, size=(n_boot, P))``.

    Returns
    -------
    BootstrapResult (mean over participants, percentile CI)

    Examples
    --------
    >>> res = bootstrap_participants([0.2, 0.3, 0.25, 0.4], n_boot=2000)
    >>> bool(res.ci_low < res.estimate < res.ci_high)
    True
    """
    _check_conf(confidence)
    v = np.asarray(values, dtype=np.float64)
    one = v.ndim == 1
    v = v.reshape(v.shape[0], -1) if v.ndim >= 1 else v
    if v.ndim != 2 or v.shape[0] < 2:
        raise ValueError("values needs at least 2 participants")
    P = v.shape[0]
    idx = np.random.default_rng(seed).integers(0, P, size=(int(n_boot), P))
    dist = v[idx].mean(axis=1)  # (B, K)
    est = v.mean(axis=0)
    a = (1 - confidence) / 2
    lo, hi = np.nanquantile(dist, [a, 1 - a], axis=0)
    if one:
        return BootstrapResult(float(est[0]), float(lo[0]), float(hi[0]), dist[:, 0], confidence)
    return BootstrapResult(est, lo, hi, dist, confidence)


def bootstrap_sounds(a, b, n_boot=1000, method="spearman", confidence=0.95, seed=0):
    """Bootstrap over sounds of the correlation between two similarity matrices.

    Sounds are resampled with replacement; the triangles are read at the resampled
    sounds and pairs of a resampled sound with itself are dropped.

    Parameters
    ----------
    a, b : (n, n) array_like, finite upper triangles
    n_boot : int
    method : {"spearman", "pearson"}
    confidence : float
    seed : int
        Indices ``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))``.

    Returns
    -------
    BootstrapResult (estimate = correlation on all sounds, percentile CI)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(15, 30))
    >>> res = bootstrap_sounds(similarity_matrix(X), similarity_matrix(X ** 3), n_boot=200)
    >>> bool(res.ci_low <= res.estimate <= res.ci_high)
    True
    """
    ranks = _check_method(method)
    _check_conf(confidence)
    a = _finite_square("a", a)
    b = _finite_square("b", b, a.shape[0])
    n = a.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n)).astype(np.int64)
    dist = boot_sounds(a, b, idx, ranks)
    est = compare(a, b, method)
    al = (1 - confidence) / 2
    if np.all(np.isnan(dist)):
        lo = hi = np.nan
    else:
        lo, hi = np.nanquantile(dist, [al, 1 - al])
    return BootstrapResult(est, float(lo), float(hi), dist, confidence)


@dataclass
class PairedComparisonResult:
    """Paired comparison of two models over participants.

    Attributes
    ----------
    difference : float
        Mean over participants of ``a - b``.
    pvalue : float
        Sign-flip permutation p value of the mean difference (``alternative``). Exact
        (all 2^P sign patterns, p = k / 2^P) when P <= 16, else ``(k + 1) / (N + 1)``
        over N random sign patterns.
    ci_low, ci_high : float
        Percentile bootstrap CI of the mean difference (participants resampled).
    null_distribution : (N,) array
        Mean difference under each sign pattern.
    boot_distribution : (B,) array
    alternative : str
    """

    difference: float
    pvalue: float
    ci_low: float
    ci_high: float
    null_distribution: np.ndarray
    boot_distribution: np.ndarray
    alternative: str


def compare_models_paired(a, b, n_permutations=10000, n_boot=10000, confidence=0.95,
                          alternative="two-sided", seed=0):
    """Paired comparison of two models' per-participant scores.

    Parameters
    ----------
    a, b : (P,) array_like
        Per-participant scores of model a and model b (e.g. ``RSACVResult.score``),
        same participant order, finite.
    n_permutations : int
        Random sign patterns when P > 16 (otherwise all 2^P are enumerated).
    n_boot : int
    confidence : float
    alternative : {"two-sided", "greater", "less"}
        "greater": model a scores higher than model b.
    seed : int
        One ``np.random.default_rng(seed)``: signs first
        (``rng.choice([-1., 1.], size=(n_permutations, P))`` when P > 16), then the
        bootstrap indices (``rng.integers(0, P, size=(n_boot, P))``).

    Returns
    -------
    PairedComparisonResult

    Examples
    --------
    >>> res = compare_models_paired([.5, .6, .55, .7, .65], [.4, .5, .5, .6, .5])
    >>> round(res.difference, 3), round(res.pvalue, 4)
    (0.1, 0.0625)
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError("alternative must be 'two-sided', 'greater' or 'less'")
    _check_conf(confidence)
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError("need at least 2 participants")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must be finite")
    d = a - b
    P = d.size
    rng = np.random.default_rng(seed)
    if P <= 16:
        codes = np.arange(2 ** P)[:, None]
        signs = np.where((codes >> np.arange(P)[None]) & 1, -1.0, 1.0)
        exact = True
    else:
        signs = rng.choice([-1.0, 1.0], size=(int(n_permutations), P))
        exact = False
    null = signs @ d / P
    obs = d.mean()
    tol = np.finfo(np.float64).eps * 100 * max(abs(obs), 1e-300)
    if alternative == "greater":
        k = np.sum(null >= obs - tol)
    elif alternative == "less":
        k = np.sum(null <= obs + tol)
    else:
        k = np.sum(np.abs(null) >= abs(obs) - tol)
    N = null.size
    p = k / N if exact else (k + 1) / (N + 1)
    idx = rng.integers(0, P, size=(int(n_boot), P))
    boot = d[idx].mean(axis=1)
    al = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [al, 1 - al])
    return PairedComparisonResult(difference=float(obs), pvalue=float(p), ci_low=float(lo),
                                  ci_high=float(hi), null_distribution=null,
                                  boot_distribution=boot, alternative=alternative)
