"""Permutation tests, bootstraps and paired comparisons of fastenc, in one place.

Used by the regression analyses (:mod:`fastenc.analysis`, docs/method.md §5) and the RSA
(:mod:`fastenc.rsa`, docs/method.md §6). One result type per kind of test, one name per concept:

* :class:`PermutationResult` — ``statistic``, ``p_value``, ``p_value_study`` (the reference
  study's raw fraction, where the study ran that test), ``n_resamples``, ``null_distribution``;
* :class:`BootstrapResult` — ``statistic``, ``bootstrap_distribution``, ``n_resamples``, a
  percentile interval (``ci_low``, ``ci_high``, ``confidence``) and, for a bootstrap test,
  ``p_value`` / ``p_value_study`` against ``reference``;
* :class:`PairedComparisonResult` — sign-flip permutation p value and bootstrap interval of a
  paired mean difference.

Arguments: ``n_permutations`` (permutations), ``n_boot`` (bootstrap resamples), ``seed``.

p values of resampling tests are ``(k + 1) / (N + 1)`` (never 0; :func:`resample_p_value`),
with ``k`` the resamples at least as extreme as the observed statistic, counted with a
relative tolerance of 100 eps (:func:`count_at_least`); when every permutation is
enumerated, ``k / N``. The reference study's raw fraction (resamples strictly greater than
the observed value; can be 0) is reported beside it as ``p_value_study``.

Examples
--------
>>> res = permutation_mean_difference([3.0, 3.2, 3.1, 2.9], [1.0, 1.1, 0.9, 1.2], n_permutations=999)
>>> round(res.statistic, 2), res.n_resamples, bool(res.p_value_study < res.p_value < 0.05)
(2.0, 999, True)
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from ._validation import as_float_array
from .constants import N_RESAMPLES

__all__ = [
    "within_subject_sem",
    "count_at_least",
    "resample_p_value",
    "PermutationResult",
    "BootstrapResult",
    "PairedComparisonResult",
    "permutation_mean_difference",
    "bootstrap_mean_test",
    "bootstrap_mean",
    "compare_paired",
]

_EPS100 = np.finfo(np.float64).eps * 100


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=3)


# --------------------------------------------------------------------------------------
# within-subject SEM
# --------------------------------------------------------------------------------------
def within_subject_sem(values, n: int | None = None) -> np.ndarray:
    """Within-subject SEM per condition of a (n_subjects, n_conditions) array (docs/method.md §5, §6).

    Subtract each subject's mean across the conditions, take ``np.std`` (ddof 0) across
    subjects per condition, divide by ``sqrt(n - 1)``. ``n`` defaults to the number of subjects
    (the correct form; docs/method.md §5). The reference study's RSA figure divides by the number of
    **conditions** (models) instead (docs/method.md §6 quirk): ``n=values.shape[1]``.

    Examples
    --------
    >>> v = np.array([[1., 2., 3.], [2., 2., 5.]])
    >>> within_subject_sem(v).round(3).tolist()
    [0.0, 0.5, 0.5]
    >>> within_subject_sem(v, n=v.shape[1]).round(4).tolist()     # the study's RSA quirk
    [0.0, 0.3536, 0.3536]
    """
    arr = as_float_array(values, "values", 2)
    n_subj, n_cond = arr.shape
    if n_cond == 0:
        raise ValueError("no conditions")
    if n is None:
        if n_subj < 2:
            raise ValueError(f"within-subject SEM needs >= 2 subjects, got {n_subj}")
        n = n_subj
    else:
        if n_subj < 1:
            raise ValueError("no subjects")
        if int(n) != n or n < 2:
            raise ValueError(f"within-subject SEM needs n >= 2, got n = {n}")
    demeaned = arr - arr.mean(axis=1, keepdims=True)
    return np.std(demeaned, axis=0, ddof=0) / np.sqrt(n - 1)


# --------------------------------------------------------------------------------------
# p values
# --------------------------------------------------------------------------------------
def count_at_least(null, observed, axis: int = 0):
    """Number of ``null`` values >= ``observed`` along ``axis``, with a relative tolerance of
    100 eps (``null >= observed - |observed| * 100 eps``): a resample equal to the observed
    value in exact arithmetic may differ from it by rounding (scipy's convention).

    Examples
    --------
    >>> int(count_at_least(np.array([0.1, 0.3 - 0.2, 0.05]), 0.1))
    2
    """
    observed = np.asarray(observed, dtype=np.float64)
    tol = np.abs(observed) * _EPS100
    return np.sum(np.asarray(null) >= observed - tol, axis=axis)


def resample_p_value(k, n_resamples: int, exact: bool = False):
    """``(k + 1) / (N + 1)`` for N random resamples (never 0), ``k / N`` when every resample
    was enumerated (``exact``, the identity among them).

    >>> resample_p_value(0, 999), resample_p_value(3, 24, exact=True)
    (0.001, 0.125)
    """
    return k / n_resamples if exact else (k + 1) / (n_resamples + 1)


# --------------------------------------------------------------------------------------
# result types
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PermutationResult:
    """Result of a permutation test (one-sided, greater, unless the test says otherwise).

    Attributes
    ----------
    statistic : float or (K,) array
        Observed statistic(s).
    p_value : float or (K,) array
        :func:`resample_p_value` of the count of null values >= the statistic (uncorrected
        when K > 1). NaN where the statistic is undefined.
    null_distribution : (N,) or (N, K) array
        Statistic under each permutation.
    n_resamples : int
        N.
    p_value_study : float or None
        The reference study's raw fraction of null values strictly greater than the statistic
        (can be 0), for the tests the study ran; None otherwise.
    p_value_corrected : (K,) array or None
        Max-statistic (family-wise) corrected p values, for tests of many statistics.
    permutations : (N, n) int array or None
        The permutations used, where they are explicit.
    exact : bool
        True when every permutation was enumerated (p = k / N).
    """

    statistic: object
    p_value: object
    null_distribution: np.ndarray
    n_resamples: int
    p_value_study: object = None
    p_value_corrected: object = None
    permutations: np.ndarray | None = None
    exact: bool = False

    # deprecated names (one release): analysis.PermutationResult's and rsa.PermutationResult's
    @property
    def observed(self):
        """Deprecated alias of ``statistic``."""
        return self.statistic

    @property
    def null(self):
        """Deprecated alias of ``null_distribution``."""
        return self.null_distribution

    @property
    def pvalue(self):
        """Deprecated alias of ``p_value``."""
        return self.p_value

    @property
    def pvalue_corrected(self):
        """Deprecated alias of ``p_value_corrected``."""
        return self.p_value_corrected


@dataclass(frozen=True)
class BootstrapResult:
    """Result of a bootstrap.

    Attributes
    ----------
    statistic : float or (K,) array
        The statistic on the original data.
    bootstrap_distribution : (B,) or (B, K) array
        The statistic on each resample.
    n_resamples : int
        B.
    confidence, ci_low, ci_high : float (or (K,) arrays) or None
        Percentile interval of the bootstrap distribution, where one was asked for.
    p_value, p_value_study : float or None
        For a bootstrap test against ``reference``: :func:`resample_p_value` of the resamples
        >= ``reference``, and the reference study's raw fraction of resamples > ``reference``.
    reference : float or None
        The value a bootstrap test compares the distribution with.
    """

    statistic: object
    bootstrap_distribution: np.ndarray
    n_resamples: int
    confidence: float | None = None
    ci_low: object = None
    ci_high: object = None
    p_value: float | None = None
    p_value_study: float | None = None
    reference: float | None = None

    # deprecated names (one release)
    @property
    def estimate(self):
        """Deprecated alias of ``statistic`` (rsa)."""
        return self.statistic

    @property
    def distribution(self):
        """Deprecated alias of ``bootstrap_distribution`` (rsa)."""
        return self.bootstrap_distribution

    @property
    def boot_means(self):
        """Deprecated alias of ``bootstrap_distribution`` (analysis)."""
        return self.bootstrap_distribution

    @property
    def mean_1(self):
        """Model 1's mean, the ``reference`` of :func:`bootstrap_mean_test` (deprecated alias)."""
        return self.reference

    @property
    def mean_2(self):
        """Model 2's mean, the ``statistic`` of :func:`bootstrap_mean_test` (deprecated alias)."""
        return self.statistic


@dataclass(frozen=True)
class PairedComparisonResult:
    """Paired comparison of two conditions over participants (:func:`compare_paired`).

    Attributes
    ----------
    statistic : float
        Mean over participants of ``a - b``.
    p_value : float
        Sign-flip permutation p value of the mean difference (``alternative``): exact
        (all 2^P sign patterns, k / 2^P) when P <= 16, else ``(k + 1) / (N + 1)``.
    null_distribution : (N,) array
        Mean difference under each sign pattern.
    n_resamples : int
        N (2^P when exact).
    exact : bool
    ci_low, ci_high : float
        Percentile bootstrap interval of the mean difference (participants resampled).
    confidence : float
    bootstrap_distribution : (B,) array
    alternative : str
    """

    statistic: float
    p_value: float
    null_distribution: np.ndarray
    n_resamples: int
    exact: bool
    ci_low: float
    ci_high: float
    confidence: float
    bootstrap_distribution: np.ndarray
    alternative: str

    # deprecated names (one release)
    @property
    def difference(self):
        """Deprecated alias of ``statistic``."""
        return self.statistic

    @property
    def pvalue(self):
        """Deprecated alias of ``p_value``."""
        return self.p_value

    @property
    def boot_distribution(self):
        """Deprecated alias of ``bootstrap_distribution``."""
        return self.bootstrap_distribution


def check_confidence(confidence) -> None:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")


def _check_count(value, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------
# the study's model comparisons (docs/method.md §5)
# --------------------------------------------------------------------------------------
_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}
_PERM_LOCK = threading.Lock()


def _shuffle_indices(seed: int, n: int, n_permutations: int) -> np.ndarray:
    """(n_permutations, n) index permutations of ``np.random.seed(seed)`` followed by one
    ``np.random.shuffle`` of a fresh length-n array per permutation (private stream, cached).

    The legacy shuffle's swaps depend only on the length, so shuffling ``values`` gives
    ``values[idx]`` with ``idx`` the shuffled ``arange(n)``."""
    key = (int(seed), int(n), int(n_permutations))
    with _PERM_LOCK:
        out = _PERM_CACHE.get(key)
    if out is None:
        rs = np.random.RandomState(seed)
        out = np.empty((n_permutations, n), dtype=np.int64)
        for k in range(n_permutations):
            a = np.arange(n)
            rs.shuffle(a)
            out[k] = a
        out.flags.writeable = False
        with _PERM_LOCK:
            if len(_PERM_CACHE) > 16:
                _PERM_CACHE.clear()
            _PERM_CACHE[key] = out
    return out


def permutation_mean_difference(values_1, values_2, n_permutations: int = N_RESAMPLES,
                                seed: int = 0, *, n_perm: int | None = None) -> PermutationResult:
    """Permutation test of ``mean(values_1) - mean(values_2)`` over pooled values (one-sided).

    The study's ``pairwise_model_comparison_comp_boostrap`` (components have no participants;
    docs/method.md §5): ``np.random.seed(seed)``; per permutation the pooled values
    ``concat(values_1, values_2)`` are shuffled afresh (``np.random.shuffle``) and the null
    difference is ``mean(first n1) - mean(rest)``. Same stream on a private RandomState; the
    global state is untouched. Small ``p_value`` = values_1 above values_2. NaN input gives NaN
    p values. ``n_perm`` is a deprecated alias of ``n_permutations``.
    """
    if n_perm is not None:
        _deprecated("n_perm", "n_permutations")
        n_permutations = n_perm
    v1 = as_float_array(values_1, "values_1", 1)
    v2 = as_float_array(values_2, "values_2", 1)
    if v1.size == 0 or v2.size == 0:
        raise ValueError("empty values")
    n_permutations = _check_count(n_permutations, "n_permutations")
    pooled = np.concatenate([v1, v2])
    n1 = v1.size
    shuffled = pooled[_shuffle_indices(seed, pooled.size, n_permutations)]
    null = shuffled[:, :n1].mean(axis=1) - shuffled[:, n1:].mean(axis=1)
    obs = float(v1.mean() - v2.mean())
    if np.isnan(obs) or np.isnan(null).any():
        p = p_study = np.nan
    else:
        p = resample_p_value(int(count_at_least(null, obs)), n_permutations)
        p_study = float(np.mean(null > obs))
    return PermutationResult(statistic=obs, p_value=float(p), null_distribution=null,
                             n_resamples=n_permutations, p_value_study=float(p_study))


def bootstrap_mean_test(values_1, values_2, n_boot: int = N_RESAMPLES, seed: int = 0) -> BootstrapResult:
    """Bootstrap of ``values_2``'s mean against ``values_1``'s mean (one-sided; docs/method.md §5).

    The study's subject bootstrap (``pairwise_model_comparison_subject_boostrap``):
    ``np.random.seed(seed)``, then per resample ``np.random.choice(values_2, size=len(values_2),
    replace=True)`` and its mean. Implemented as one ``RandomState(seed).choice(values_2,
    size=(n_boot, n))`` call, which draws the same indices in the same order (tested).

    Returns a :class:`BootstrapResult` with ``statistic`` = mean(values_2), ``reference`` =
    mean(values_1), ``p_value`` = (k + 1) / (N + 1) with k the bootstrap means >= ``reference``
    (small p = values_1 above values_2), ``p_value_study`` the study's fraction of bootstrap
    means > ``reference`` (can be 0). NaN input gives NaN p values.
    """
    v1 = as_float_array(values_1, "values_1", 1)
    v2 = as_float_array(values_2, "values_2", 1)
    if v1.size == 0 or v2.size == 0:
        raise ValueError("empty values")
    n_boot = _check_count(n_boot, "n_boot")
    rs = np.random.RandomState(seed)
    boot = rs.choice(v2, size=(n_boot, v2.size), replace=True).mean(axis=1)
    m1 = float(np.mean(v1))
    if np.isnan(m1) or np.isnan(boot).any():
        p = p_study = np.nan
    else:
        p = resample_p_value(int(count_at_least(boot, m1)), n_boot)
        p_study = float(np.mean(boot > m1))
    return BootstrapResult(statistic=float(np.mean(v2)), bootstrap_distribution=boot,
                           n_resamples=n_boot, p_value=float(p), p_value_study=float(p_study),
                           reference=m1)


# --------------------------------------------------------------------------------------
# statistics the study lacks
# --------------------------------------------------------------------------------------
def bootstrap_mean(values, n_boot: int = N_RESAMPLES, confidence: float = 0.95,
                   seed: int = 0) -> BootstrapResult:
    """Bootstrap over participants (rows) of the mean, per column, with a percentile interval.

    Parameters
    ----------
    values : (P,) or (P, K) array_like
        One value per participant, optionally per condition; each resample draws the same
        participants for every column.
    n_boot : int
    confidence : float
    seed : int
        Indices ``np.random.default_rng(seed).integers(0, P, size=(n_boot, P))``.

    Returns
    -------
    BootstrapResult: ``statistic`` the mean over participants, ``ci_low`` / ``ci_high`` the
    ``np.nanquantile`` (linear) percentile interval.

    Examples
    --------
    >>> res = bootstrap_mean([0.2, 0.3, 0.25, 0.4], n_boot=2000)
    >>> bool(res.ci_low < res.statistic < res.ci_high), res.n_resamples
    (True, 2000)
    """
    check_confidence(confidence)
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
        return BootstrapResult(statistic=float(est[0]), bootstrap_distribution=dist[:, 0],
                               n_resamples=int(n_boot), confidence=confidence,
                               ci_low=float(lo[0]), ci_high=float(hi[0]))
    return BootstrapResult(statistic=est, bootstrap_distribution=dist, n_resamples=int(n_boot),
                           confidence=confidence, ci_low=lo, ci_high=hi)


def compare_paired(a, b, n_permutations: int = N_RESAMPLES, n_boot: int = N_RESAMPLES,
                   confidence: float = 0.95, alternative: str = "two-sided",
                   seed: int = 0) -> PairedComparisonResult:
    """Paired comparison of two conditions' per-participant values (e.g. two models' scores).

    Parameters
    ----------
    a, b : (P,) array_like
        Per-participant values of condition a and condition b, same participant order, finite.
    n_permutations : int
        Random sign patterns when P > 16 (otherwise all 2^P are enumerated).
    n_boot : int
    confidence : float
    alternative : {"two-sided", "greater", "less"}
        "greater": a above b.
    seed : int
        One ``np.random.default_rng(seed)``: signs first
        (``rng.choice([-1., 1.], size=(n_permutations, P))`` when P > 16), then the
        bootstrap indices (``rng.integers(0, P, size=(n_boot, P))``).

    Returns
    -------
    PairedComparisonResult

    Examples
    --------
    >>> res = compare_paired([.5, .6, .55, .7, .65], [.4, .5, .5, .6, .5])
    >>> round(res.statistic, 3), round(res.p_value, 4), res.n_resamples
    (0.1, 0.0625, 32)
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError("alternative must be 'two-sided', 'greater' or 'less'")
    check_confidence(confidence)
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
    tol = _EPS100 * max(abs(obs), 1e-300)
    if alternative == "greater":
        k = np.sum(null >= obs - tol)
    elif alternative == "less":
        k = np.sum(null <= obs + tol)
    else:
        k = np.sum(np.abs(null) >= abs(obs) - tol)
    N = null.size
    p = resample_p_value(k, N, exact)
    idx = rng.integers(0, P, size=(int(n_boot), P))
    boot = d[idx].mean(axis=1)
    al = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [al, 1 - al])
    return PairedComparisonResult(statistic=float(obs), p_value=float(p), null_distribution=null,
                                  n_resamples=int(N), exact=exact, ci_low=float(lo),
                                  ci_high=float(hi), confidence=confidence,
                                  bootstrap_distribution=boot, alternative=alternative)
