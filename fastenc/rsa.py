"""Representational similarity analysis (docs/method.md §6) and the statistics the study lacks.

The reference study's cross-validated RSA (:func:`cv_best_layer`) plus compiled
permutation tests and bootstraps of similarity matrices. Their result types, the
participant bootstrap and the paired model comparison live in :mod:`fastenc.stats`
(re-exported here under their RSA names).

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
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._core.rsa import (boot_sounds, full_std, perm_dot, perm_dot_int, rsm_rows, split_triangles,
                        sym_ranks2, upper_std)
from ._threads import thread_limits
from ._validation import as_features, finite_square, row_index, square_stack, train_masks
from .constants import CATEGORY_ORDER, N_RESAMPLES
from .stats import (BootstrapResult, PairedComparisonResult, PermutationResult, bootstrap_mean,
                    check_confidence, compare_paired, count_at_least, resample_p_value)
from .stats import within_subject_sem as _within_subject_sem

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
    "rsa_sem",
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


def _std_triangles(A, ranks):
    return upper_std(np.ascontiguousarray(A, dtype=np.float64), ranks)


def _corr(Ua, Ub):
    C = Ua @ Ub.T
    np.clip(C, -1.0, 1.0, out=C)
    return C


# ----------------------------------------------------------------------------- basics
def similarity_matrix(X, train=None, sounds=None, n_threads=None):
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
    n_threads : int, optional
        Numba threads (default: the current setting; BLAS single-threaded inside, see
        :func:`fastenc._threads.thread_limits`). Results do not depend on it; the same holds
        for every function of this module.

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
    X = as_features(X, "X")
    n = X.shape[0]
    tr = np.arange(n, dtype=np.int64) if train is None else row_index(train, n, "train")
    ev = np.arange(n, dtype=np.int64) if sounds is None else row_index(sounds, n, "sounds")
    if tr.size < 1:
        raise ValueError("train selects no sounds")
    if ev.size < 1:
        raise ValueError("sounds selects no sounds")
    with thread_limits(n_threads):
        return rsm_rows(X, tr, ev)


def compare(a, b, method="spearman", n_threads=None):
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
    A, a1 = square_stack(a, "a")
    B, b1 = square_stack(b, "b")
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"matrices differ in size: {A.shape[-1]} vs {B.shape[-1]} sounds")
    with thread_limits(n_threads):
        C = _corr(_std_triangles(A, ranks), _std_triangles(B, ranks))
    if a1 and b1:
        return float(C[0, 0])
    if a1:
        return C[0]
    if b1:
        return C[:, 0]
    return C


def category_order(categories, order=None):
    """Indices that reorder sounds by category (stable within category), as in docs/method.md §6.

    Parameters
    ----------
    categories : sequence of str or bytes, one per sound (stimulus order)
    order : sequence of str, optional
        Category order; default :data:`fastenc.constants.CATEGORY_ORDER` (Music, Song,
        EngSpeech, ForSpeech, HumVoc, AniVoc, HumNonVoc, AniNonVoc, Nature, Mechanical,
        EnvSound; the registry's ``sound_category_order``, tested equal).

    Returns
    -------
    (n,) int64 such that ``X[idx]`` is in category order.

    Examples
    --------
    >>> category_order(["Song", "Music", "Song", "Music"]).tolist()
    [1, 3, 0, 2]
    """
    order = list(CATEGORY_ORDER) if order is None else list(order)
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
    """Cross-validated RSA of one model against participants (docs/method.md §6).

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
    """Train masks over ``n`` sounds (:func:`fastenc._validation.train_masks`): >= 3 train and
    >= 3 test sounds per split (a test RSM of 3 sounds is the smallest with a rank correlation)."""
    return train_masks(splits, n, min_train=3, min_test=3, what="sounds")


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
    mats = [as_features(X, f"{name}[{i}]", n) for i, X in enumerate(mats)]
    if categories is not None:
        if len(categories) != n:
            raise ValueError(f"categories has {len(categories)} labels for {n} sounds")
        order = category_order(categories)
    else:
        order = np.arange(n, dtype=np.int64)
    return mats, order, _split_masks(splits, n)


def prepare_layers(layers, splits=None, categories=None, n_threads=None) -> PreparedRSMs:
    """Split RSMs of a model's layers, for :func:`cv_best_layer` (see its parameters)."""
    layers, order, masks = _prep_inputs(layers, "layers", splits, categories)
    tr_rows, n_tr, te_rows, n_te = _padded_rows(masks)
    Mtr, Mte, Mfull = [], [], []
    with thread_limits(n_threads):
        for X in layers:
            Xo = np.ascontiguousarray(X[order])
            u, v, _ = split_triangles(Xo, tr_rows, n_tr, te_rows, n_te, True, False)
            Mtr.append(u)
            Mte.append(v)
            Mfull.append(_full_triangle(Xo))
    return PreparedRSMs(train=np.stack(Mtr), test=np.stack(Mte), masks=masks, order=order,
                        full=np.stack(Mfull))


def prepare_participants(participants, splits=None, categories=None, noise_ceiling=True,
                         corrected=False, n_threads=None) -> PreparedRSMs:
    """Split RSMs of participants (and their noise ceiling), for :func:`cv_best_layer`."""
    participants, order, masks = _prep_inputs(participants, "participants", splits, categories)
    P = len(participants)
    if noise_ceiling and P < 2:
        raise ValueError("the noise ceiling needs at least 2 participants (or noise_ceiling=False)")
    tr_rows, n_tr, te_rows, n_te = _padded_rows(masks)
    Ptr, Pte, Rte, Pfull = [], [], [], []
    with thread_limits(n_threads):
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
                  corrected=None, n_threads=None):
    """The study's cross-validated RSA best-layer score for one model (docs/method.md §6).

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
        (docs/method.md §2: 10 splits, 83 train / 82 test).
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
    n_threads : int, optional
        Numba threads (default: the current setting); results do not depend on it.

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
    with thread_limits(n_threads):
        return _cv_best_layer_checked(layers, participants, splits, categories, noise_ceiling, corrected)


def _cv_best_layer_checked(layers, participants, splits, categories, noise_ceiling, corrected):
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
    """Best layer per participant from RSMs of all sounds (not cross-validated; docs/method.md §6).

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
    """All-sound standardized rank triangles (K, m) of prepared items or of feature matrices."""
    if isinstance(items, PreparedRSMs):
        if items.full is None:
            raise ValueError(f"{name} were prepared without all-sound triangles")
        return items.full
    mats = [as_features(X, f"{name}[{i}]") for i, X in enumerate(items)]
    if not mats:
        raise ValueError(f"{name} is empty")
    n = mats[0].shape[0]
    if any(X.shape[0] != n for X in mats):
        raise ValueError(f"{name} differ in their number of sounds")
    return np.stack([_full_triangle(X) for X in mats])


def best_layer_all_sounds(layers, participants, n_threads=None):
    """The reference study's best layer per participant for the ROI analysis (docs/method.md §6).

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
    with thread_limits(n_threads):
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
    """ROI-vs-ROI similarity of the neural RSMs (docs/method.md §6).

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


def roi_vs_roi(rois, splits="all", categories=None, method="spearman", n_threads=None):
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
            Y = as_features(Y, f"rois[{r!r}][{pid!r}]", n)
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
        masks = train_masks(splits, n, min_train=3, min_test=0, what="sounds")
    S = masks.shape[0]
    U = {}
    with thread_limits(n_threads):
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
    """Deprecated: use :func:`fastenc.stats.within_subject_sem` (``n=`` the divisor's count).

    The RSA error bar of the reference study divides by ``sqrt(n_models - 1)`` (``quirk=True``,
    the default here; ``stats.within_subject_sem(values, n=values.shape[1])``); ``quirk=False``
    divides by ``sqrt(n_participants - 1)`` (``stats.within_subject_sem(values)``).
    :func:`rsa_sem` gives the same with the library's switch (``corrected``).
    """
    warnings.warn("fastenc.rsa.within_subject_sem(values, quirk=...) is deprecated; use "
                  "fastenc.stats.within_subject_sem(values, n=...) or fastenc.rsa.rsa_sem(values, corrected=...)",
                  DeprecationWarning, stacklevel=2)
    return rsa_sem(values, corrected=not quirk)


def rsa_sem(values, corrected=False):
    """Within-participant SEM per model of a (participants, models) array, as the RSA figure.

    ``corrected=False`` (default) reproduces the reference study's RSA error bar (docs/method.md §6
    quirk): divided by ``sqrt(n_models - 1)``; ``corrected=True`` by
    ``sqrt(n_participants - 1)`` (docs/method.md §5). See :func:`fastenc.stats.within_subject_sem`.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[1., 2., 3.], [2., 2., 5.]])
    >>> rsa_sem(v, corrected=True).round(3).tolist()
    [0.0, 0.5, 0.5]
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
        raise ValueError(f"values must be a non-empty (participants, models) array, got shape {v.shape}")
    return _within_subject_sem(v, n=None if corrected else v.shape[1])


# ----------------------------------------------------------------------------- permutation tests
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


def _perm_core(models, brain, n_permutations, method, seed, permutations):
    """Observed statistics (K,), p values (K,), null (N, K), permutations, exact flag."""
    ranks = _check_method(method)
    brain = finite_square(brain, "b")
    n = brain.shape[0]
    mats = [finite_square(m, "a", n) for m in models]
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
            pval[k] = resample_p_value(cnt, N, exact)
        return obs, pval, null, perms, exact
    Fb = full_std(brain, ranks)
    for k, a in enumerate(mats):
        Aa = full_std(a, ranks)
        if np.isnan(Aa).any() or np.isnan(Fb).any():
            continue
        allv = perm_dot(Aa, Fb, both)
        obs[k] = allv[0]
        null[:, k] = allv[1:]
        cnt = count_at_least(null[:, k], obs[k])
        pval[k] = resample_p_value(cnt, N, exact)
    return obs, pval, null, perms, exact


def permutation_test(a, b, n_permutations=N_RESAMPLES, method="spearman", seed=0, permutations=None,
                     n_threads=None):
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
        (:class:`fastenc.stats.PermutationResult`) ``statistic`` and ``p_value`` floats,
        ``null_distribution`` (N,), ``n_resamples``, ``permutations``, ``exact``. Both NaN when
        a triangle is constant.

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
    >>> bool(res.p_value < 0.05), res.null_distribution.shape
    (True, (999,))
    """
    with thread_limits(n_threads):
        obs, p, null, perms, exact = _perm_core([a], b, n_permutations, method, seed, permutations)
    return PermutationResult(statistic=float(obs[0]), p_value=float(p[0]),
                             null_distribution=null[:, 0], n_resamples=int(null.shape[0]),
                             permutations=perms, exact=exact)


def permutation_test_many(models, b, n_permutations=N_RESAMPLES, method="spearman", seed=0,
                          permutations=None, n_threads=None):
    """Permutation tests of many matrices (layers, models) against one, max-statistic corrected.

    The same permutations of ``b`` (rows and columns together) serve every matrix of
    ``models``. ``p_value`` is per matrix (uncorrected); ``p_value_corrected`` compares each
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
    PermutationResult with (K,) ``statistic``, ``p_value``, ``p_value_corrected`` and
    (N, K) ``null_distribution``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(10, 30))
    >>> mats = [similarity_matrix(X + s * rng.normal(size=X.shape)) for s in (0.5, 5.0)]
    >>> res = permutation_test_many(mats, similarity_matrix(X), n_permutations=499)
    >>> bool(np.all(res.p_value_corrected >= res.p_value))
    True
    """
    models = list(np.asarray(models, dtype=np.float64)) if not isinstance(models, list) else models
    if len(models) == 0:
        raise ValueError("models is empty")
    with thread_limits(n_threads):
        obs, p, null, perms, exact = _perm_core(models, b, n_permutations, method, seed, permutations)
    N = null.shape[0]
    defined = ~np.isnan(obs)
    # max over the matrices with a defined statistic (a constant matrix's column is all NaN)
    mx = null[:, defined].max(axis=1) if defined.any() else np.full(N, np.nan)
    kc = np.array([count_at_least(mx, o) for o in obs], dtype=np.float64)
    pc = resample_p_value(kc, N, exact)
    pc = np.where(np.isnan(obs), np.nan, pc)
    return PermutationResult(statistic=obs, p_value=p, null_distribution=null, n_resamples=int(N),
                             permutations=perms, exact=exact, p_value_corrected=pc)


# ----------------------------------------------------------------------------- bootstraps
#: Bootstrap over participants of the mean: :func:`fastenc.stats.bootstrap_mean`.
bootstrap_participants = bootstrap_mean


def bootstrap_sounds(a, b, n_boot=1000, method="spearman", confidence=0.95, seed=0, n_threads=None):
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
    BootstrapResult (``statistic`` = correlation on all sounds, percentile CI)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(15, 30))
    >>> res = bootstrap_sounds(similarity_matrix(X), similarity_matrix(X ** 3), n_boot=200)
    >>> bool(res.ci_low <= res.statistic <= res.ci_high)
    True
    """
    ranks = _check_method(method)
    check_confidence(confidence)
    a = finite_square(a, "a")
    b = finite_square(b, "b", a.shape[0])
    n = a.shape[0]
    idx = np.random.default_rng(seed).integers(0, n, size=(int(n_boot), n)).astype(np.int64)
    with thread_limits(n_threads):
        dist = boot_sounds(a, b, idx, ranks)
        est = compare(a, b, method)
    al = (1 - confidence) / 2
    if np.all(np.isnan(dist)):
        lo = hi = np.nan
    else:
        lo, hi = np.nanquantile(dist, [al, 1 - al])
    return BootstrapResult(statistic=est, bootstrap_distribution=dist, n_resamples=int(n_boot),
                           confidence=confidence, ci_low=float(lo), ci_high=float(hi))


#: Paired comparison of two models' per-participant scores: :func:`fastenc.stats.compare_paired`.
compare_models_paired = compare_paired
