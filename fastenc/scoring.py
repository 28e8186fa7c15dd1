"""Score one model layer against brain responses on the study's splits (docs/method.md §3–§4).

:func:`score_layer` fits, for every target and split, a ridge regression with its alpha
chosen by exact leave-one-out, and returns test correlations; for repeated neural data it
adds the Spearman–Brown noise correction. The features are touched once per layer: one
Gram matrix of all stimuli, from which every split's centred train Gram and
test-by-train block are derived.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._core.correlation import split_scores, train_reliability
from ._threads import thread_limits
from ._validation import as_numeric_2d, check_finite, train_masks
from .constants import N_TEST, N_TRAIN, RV_FLOOR, RV_HAT_FLOOR
from .ridge import DEFAULT_BLOCK, check_alphas, run_loo_ridge, split_factors

__all__ = ["score_layer", "LayerScores", "prepare_targets", "Targets", "RV_FLOOR", "RV_HAT_FLOOR",
           "critical_r", "MAX_TRAIN"]

# RV_FLOOR / RV_HAT_FLOOR (0.182 / 0.183): floors of the Spearman–Brown-corrected reliabilities of
# the data (train sounds, n = 83) and of the test predictions (n = 82): fastenc.constants (§4).
#: Largest train set of the sample-space engine: its memory grows as n_train**2 per alpha group.
MAX_TRAIN = 4096


def critical_r(n: int, p: float = 0.05) -> float:
    """One-tailed critical Pearson r for ``n`` pairs: ``t / sqrt(n - 2 + t**2)``, ``t`` the
    ``1 - p`` quantile of Student's t with ``n - 2`` degrees of freedom.

    The study's floors 0.182 and 0.183 are this for n = 83 and 82, rounded to 3 decimals.

    Examples
    --------
    >>> round(critical_r(83), 3), round(critical_r(82), 3)
    (0.182, 0.183)
    """
    from scipy.stats import t as student_t
    if n < 3:
        raise ValueError(f"a critical r needs n >= 3 pairs, got {n}")
    tq = float(student_t.ppf(1.0 - p, n - 2))
    return float(tq / np.sqrt(n - 2 + tq * tq))


def _floors(n_train, n_test, rv_floor, rv_hat_floor):
    """Reliability floors of one split: given values, or ``None`` → the study's rounded
    constants for its 83/82 split sizes and the exact critical r for any other sizes."""
    study = (n_train, n_test) == (N_TRAIN, N_TEST)
    f = rv_floor if rv_floor is not None else (RV_FLOOR if study else critical_r(n_train))
    fh = rv_hat_floor if rv_hat_floor is not None else (RV_HAT_FLOOR if study else critical_r(n_test))
    return float(f), float(fh)

SUMMARY_FIELDS = ("r_test", "r2_test", "r2_test_c", "alpha")


@dataclass
class Targets:
    """Regression targets prepared once per dataset and reused across layers.

    Attributes
    ----------
    Yt : (n_fit_targets, n_stimuli) float64
        One regression target per row. With repetitions, each voxel contributes
        ``1 + n_reps`` consecutive rows: the mean over repetitions, then each repetition.
    n_targets : int
        Voxels (repeated data) or columns (plain data), including omitted ones.
    n_reps : int
        Repetitions (0 for plain targets).
    kept : (n_targets,) bool
        Targets scored; False for targets omitted for NaN (``nan_policy="omit"``).
    """

    Yt: np.ndarray
    n_targets: int
    n_reps: int
    kept: np.ndarray
    _reliability: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_stimuli(self):
        return self.Yt.shape[1]

    def train_reliability(self, train_idx, floor=RV_FLOOR) -> np.ndarray:
        """Corrected split-half reliability of the data on ``train_idx`` (cached: it is the
        same for every layer)."""
        key = (np.asarray(train_idx).tobytes(), float(floor))
        if key not in self._reliability:
            self._reliability[key] = train_reliability(self.Yt, np.asarray(train_idx, dtype=np.int64),
                                                       int(self.kept.sum()), self.n_reps, float(floor))
        return self._reliability[key]


def prepare_targets(Y, nan_policy="raise") -> Targets:
    """Validate responses and lay them out as regression targets.

    Parameters
    ----------
    Y : array, (stimuli, voxels, repetitions) or (stimuli, targets) or (stimuli,)
        Repeated neural responses (noise-corrected scores) or plain responses.
    nan_policy : {"raise", "omit"}
        ``"raise"``: NaN/inf anywhere is an error naming the first bad target.
        ``"omit"``: targets with any NaN/inf are not fitted; their scores are NaN.

    With one repetition, ``(stimuli, targets, 1)`` is scored as plain targets: there is
    nothing to estimate the noise from, so no noise correction (``r2_test_c`` is None).
    """
    Y = np.asarray(Y)
    if Y.dtype.kind not in "fiu":
        raise ValueError(f"Y must be numeric, got dtype {Y.dtype}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim not in (2, 3):
        raise ValueError(f"Y must be (stimuli, targets) or (stimuli, voxels, repetitions), got shape {Y.shape}")
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be 'raise' or 'omit', got {nan_policy!r}")
    if Y.ndim == 3 and Y.shape[2] == 1:  # one repetition: plain targets, no noise correction
        Y = Y[:, :, 0]
    finite = np.isfinite(Y)
    ok = finite.all(axis=(0, 2)) if Y.ndim == 3 else finite.all(axis=0)
    if not ok.all() and nan_policy == "raise":
        bad = int(np.flatnonzero(~ok)[0])
        what = "voxel" if Y.ndim == 3 else "target"
        raise ValueError(f"Y contains NaN or inf in {int((~ok).sum())} {what}(s) (first: {what} {bad}); "
                         "pass nan_policy='omit' to score only complete ones")
    if Y.ndim == 3:
        n_reps = Y.shape[2]
        if n_reps < 1:
            raise ValueError(f"repeated data needs >= 1 repetition on axis 2, got shape {Y.shape}")
        Yk = Y[:, ok, :].astype(np.float64)
        stacked = np.concatenate([Yk.mean(axis=2)[:, :, None], Yk], axis=2)  # (N, V, 1 + R)
        Yt = np.ascontiguousarray(stacked.reshape(Y.shape[0], -1).T)
        return Targets(Yt=Yt, n_targets=Y.shape[1], n_reps=n_reps, kept=ok)
    Yt = np.ascontiguousarray(Y[:, ok].T, dtype=np.float64)
    return Targets(Yt=Yt, n_targets=Y.shape[1], n_reps=0, kept=ok)


@dataclass
class LayerScores:
    """Scores of one layer: arrays of shape (targets, splits).

    Attributes
    ----------
    r_test : test Pearson r of the (mean-response) fit; negative and undefined r set to 0.
    r_prior_zero : the same r before negatives are set to 0 (0 where undefined).
    r2_test : ``r_test ** 2``.
    r2_test_c : ``r2_test / (rv * rv_hat)``, not clipped (repeated data with >= 2
        repetitions only; None means no noise correction was possible).
    alpha, alpha_index : chosen alpha of the (mean-response) fit and its grid index.
    rv, rv_hat : Spearman–Brown-corrected reliabilities of the data (train sounds) and of
        the single-repetition predictions (test sounds), floored (repeated data only).
    constant : True where the centred prediction or the test data was constant (r set to 0).
    rv_floor, rv_hat_floor : (splits,) the floors used per split (see :func:`score_layer`).
    predictions : (targets, splits, stimuli) or None
        With ``score_layer(..., return_predictions=True)``: each split's test-set prediction of
        the (mean-response) fit at its chosen alpha, intercept (train mean) included; NaN at
        the split's train stimuli and for omitted targets. Not one of :meth:`arrays`.
    """

    r_test: np.ndarray
    r_prior_zero: np.ndarray
    r2_test: np.ndarray
    alpha: np.ndarray
    alpha_index: np.ndarray
    constant: np.ndarray
    r2_test_c: np.ndarray | None = None
    rv: np.ndarray | None = None
    rv_hat: np.ndarray | None = None
    alphas: np.ndarray = field(default=None, repr=False)
    rv_floor: np.ndarray | None = None
    rv_hat_floor: np.ndarray | None = None
    predictions: np.ndarray | None = field(default=None, repr=False)

    @property
    def noise_corrected(self) -> bool:
        """True when ``r2_test_c`` exists (repeated data with >= 2 repetitions)."""
        return self.r2_test_c is not None

    def arrays(self) -> dict:
        """All (targets, splits) arrays by name (None entries omitted)."""
        names = ("r_test", "r_prior_zero", "r2_test", "r2_test_c", "alpha", "rv", "rv_hat")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def summary(self) -> pd.DataFrame:
        """Per-target mean / median / std (ddof 0) over splits (docs/method.md §5).

        Columns ``mean_<x>``, ``median_<x>``, ``std_<x>`` for x in r_test, r2_test,
        r2_test_c (repeated data) and alpha; ``median_r2_test_c`` is clipped at 1 after the
        median.
        """
        from .analysis import voxel_summary
        return voxel_summary({k: getattr(self, k) for k in SUMMARY_FIELDS if getattr(self, k) is not None})


def _check_splits(splits, n_stimuli):
    """Train masks (:func:`fastenc._validation.train_masks`): >= 3 train stimuli (leave-one-out)
    and >= 2 test stimuli (a test correlation) per split."""
    return train_masks(splits, n_stimuli, min_train=3, min_test=2, what="stimuli")


def score_layer(X, Y, splits=None, alphas=None, n_threads=None, nan_policy="raise",
                block=DEFAULT_BLOCK, rv_floor=None, rv_hat_floor=None,
                return_predictions=False) -> LayerScores:
    """Cross-validated encoding scores of one layer on every split.

    Parameters
    ----------
    X : (stimuli, units) array, float32 or float64
        Activations of one layer, rows in stimulus order. Used as stored (no scaling).
    Y : array or Targets
        ``(stimuli, voxels, repetitions)``: neural data, scored with noise correction
        (4 fits per voxel and split: mean response and each repetition);
        ``(stimuli, targets)``: plain responses (e.g. components), uncorrected scores.
        Or a :class:`Targets` from :func:`prepare_targets`, to reuse across layers.
    splits : (n_splits, stimuli) bool, or a sequence of train index arrays, optional
        Train masks (or train indices); default the study's 10 splits
        (:func:`fastenc.seed_splits`).
    alphas : 1-D array, optional
        Alpha grid (default ``10**49 ... 10**-50``).
    n_threads : int, optional
        Numba threads; results do not depend on it.
    nan_policy : {"raise", "omit"}
        NaN in Y: error, or score only complete targets (NaN scores for the rest).
    rv_floor, rv_hat_floor : float, optional
        Floors of the corrected reliabilities of the data (train stimuli) and of the
        predictions (test stimuli). Default: the one-tailed p < .05 critical Pearson r
        (:func:`critical_r`) for the split's train and test sizes, which for the study's
        83/82 splits are its rounded constants 0.182 and 0.183 (used as such).
    return_predictions : bool
        Also return the test-set predictions (``LayerScores.predictions``, targets x splits x
        stimuli, NaN at train stimuli): the ridge fit of the (mean-response) target on the
        split's train stimuli at its chosen alpha, with its intercept (the train mean), as the
        study stored them (``y_preds_test_rescaled``). Costs no extra fit; memory is
        targets x splits x stimuli floats (meant for few targets, e.g. components).

    Returns
    -------
    LayerScores

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((165, 64))
    >>> Y = (X[:, :5] @ rng.standard_normal((5, 20)))[:, :, None] + rng.standard_normal((165, 20, 3))
    >>> s = score_layer(X, Y)
    >>> s.r2_test_c.shape
    (20, 10)
    """
    X = as_numeric_2d(X, "X", allow_1d=False)
    targets = Y if isinstance(Y, Targets) else prepare_targets(Y, nan_policy=nan_policy)
    N = targets.n_stimuli
    if X.shape[0] != N:
        raise ValueError(f"X has {X.shape[0]} rows (stimuli) but Y has {N}: both must be in the same stimulus order")
    check_finite(X, "X", row="stimulus", col="unit")
    S = _check_splits(splits, N)
    n_train_max = int(S.sum(axis=1).max())
    if n_train_max > MAX_TRAIN:
        raise ValueError(f"a split has {n_train_max} train stimuli; the exact leave-one-out engine works in "
                         f"the train-sample space and is limited to {MAX_TRAIN} (memory ~ n_train**2 per "
                         "alpha): use fewer train stimuli per split, or select alpha by an inner k-fold loop")
    alphas = check_alphas(alphas)
    X0 = X.astype(np.float64, copy=True)
    X0 -= X0.mean(axis=0)  # any column offset; per-split train centring is exact in split_factors

    R = targets.n_reps
    per = R + 1 if R else 1
    V = int(targets.kept.sum())
    Yt = targets.Yt
    n_splits = S.shape[0]
    shape = (V, n_splits)
    r_raw = np.zeros(shape)
    constant = np.zeros(shape, dtype=bool)
    a_idx = np.zeros(shape, dtype=np.int64)
    rv = np.zeros(shape) if R else None
    rvh = np.zeros(shape) if R else None
    floors = np.array([_floors(int(m.sum()), int((~m).sum()), rv_floor, rv_hat_floor) for m in S])
    preds = np.full((V, n_splits, N), np.nan) if return_predictions else None

    with thread_limits(n_threads):
        G = X0 @ X0.T  # single-threaded BLAS here too: results independent of the thread count
        del X0
        for s in range(n_splits):
            train = np.flatnonzero(S[s]).astype(np.int64)
            test = np.flatnonzero(~S[s]).astype(np.int64)
            f = split_factors(G[np.ix_(train, train)], G[np.ix_(test, train)])
            # correlate the centred prediction (the fitted part): adding the train mean first
            # would erase it in floating point when alpha is far above the spectrum
            idx, _, pred, ybar = run_loo_ridge(Yt, train, f, alphas, block=block, per=per, add_intercept=False)
            if return_predictions:  # the fitted part plus the intercept, of the mean-response rows
                preds[:, s, test] = pred[::per] + ybar[::per, None]
            r = np.empty(V)
            split_scores(pred, Yt, test, V, per, R, floors[s, 1], r, rvh[:, s] if R else r)
            constant[:, s] = np.isnan(r)
            r_raw[:, s] = np.nan_to_num(r, nan=0.0)
            a_idx[:, s] = idx[::per]
            if R:
                rv[:, s] = targets.train_reliability(train, floors[s, 0])

    r_test = np.maximum(r_raw, 0.0)
    r2 = r_test ** 2
    r2c = r2 / (rv * rvh) if R else None

    def full(A, fill):
        """Scatter kept targets (rows) back into all targets (omitted ones get ``fill``)."""
        if A is None or targets.kept.all():
            return A
        out = np.full((targets.n_targets,) + A.shape[1:], fill, dtype=A.dtype)
        out[targets.kept] = A
        return out

    return LayerScores(r_test=full(r_test, np.nan), r_prior_zero=full(r_raw, np.nan),
                       r2_test=full(r2, np.nan), alpha=full(alphas[a_idx], np.nan),
                       alpha_index=full(a_idx, -1), constant=full(constant, False),
                       r2_test_c=full(r2c, np.nan), rv=full(rv, np.nan), rv_hat=full(rvh, np.nan),
                       alphas=alphas, rv_floor=floors[:, 0] if R else None,
                       rv_hat_floor=floors[:, 1] if R else None,
                       predictions=full(preds, np.nan))
