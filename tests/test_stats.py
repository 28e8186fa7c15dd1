"""Tests of fastenc.stats against scipy and first-principles loops (one per kind of test)."""
from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from fastenc import analysis, rsa, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive_analysis as naive  # noqa: E402


# ----------------------------------------------------------------------------- one type per test
def test_one_result_type_per_kind_of_test():
    assert analysis.PermutationResult is rsa.PermutationResult is stats.PermutationResult
    assert analysis.BootstrapResult is rsa.BootstrapResult is stats.BootstrapResult
    assert rsa.PairedComparisonResult is stats.PairedComparisonResult
    assert analysis.within_subject_sem is stats.within_subject_sem
    assert analysis.permutation_component_comparison is stats.permutation_mean_difference
    assert analysis.bootstrap_model_comparison is stats.bootstrap_mean_test
    assert rsa.bootstrap_participants is stats.bootstrap_mean
    assert rsa.compare_models_paired is stats.compare_paired


# ----------------------------------------------------------------------------- within-subject SEM
def _sem_loop(m, n):
    """Subtract each subject's mean over conditions, population std over subjects, / sqrt(n - 1)."""
    n_s, n_c = len(m), len(m[0])
    dm = [[m[s][c] - sum(m[s]) / n_c for c in range(n_c)] for s in range(n_s)]
    out = []
    for c in range(n_c):
        col = [dm[s][c] for s in range(n_s)]
        mu = sum(col) / n_s
        out.append(math.sqrt(sum((x - mu) ** 2 for x in col) / n_s) / math.sqrt(n - 1))
    return out


def test_within_subject_sem_against_loop():
    m = np.random.default_rng(0).normal(size=(7, 4)) + np.arange(7)[:, None]
    np.testing.assert_allclose(stats.within_subject_sem(m), _sem_loop(m.tolist(), 7), rtol=1e-12)
    # the study's RSA quirk: divided by sqrt(n_models - 1)
    np.testing.assert_allclose(stats.within_subject_sem(m, n=4), _sem_loop(m.tolist(), 4), rtol=1e-12)
    # subject offsets cancel
    np.testing.assert_allclose(stats.within_subject_sem(m + 10 * np.arange(7)[:, None]),
                               stats.within_subject_sem(m), rtol=1e-10)
    assert stats.within_subject_sem([[1.0, 2.0, 3.0], [2.0, 2.0, 5.0]]).tolist() == [0.0, 0.5, 0.5]
    for bad, kw in ((m[:1], {}), (m, {"n": 1}), (m[:, :0], {}), (m[0], {})):
        with pytest.raises(ValueError):
            stats.within_subject_sem(bad, **kw)


def test_roi_summary_and_rsa_sem_use_the_same_sem():
    m = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_array_equal(rsa.rsa_sem(m), stats.within_subject_sem(m, n=3))
    np.testing.assert_array_equal(rsa.rsa_sem(m, corrected=True), stats.within_subject_sem(m))


# ----------------------------------------------------------------------------- p values
def test_count_and_p_value_convention():
    null = np.array([0.1, 0.3 - 0.2, 0.05, 0.2])       # 0.3 - 0.2 = 0.09999999999999998
    assert stats.count_at_least(null, 0.1) == 3          # the rounded tie counts
    assert stats.count_at_least(null, 0.2000001) == 0
    assert stats.resample_p_value(0, 999) == 1 / 1000    # never 0
    assert stats.resample_p_value(999, 999) == 1.0
    assert stats.resample_p_value(3, 24, exact=True) == 3 / 24
    np.testing.assert_array_equal(stats.count_at_least(np.array([[1.0, 2.0], [3.0, 0.0]]), [1.0, 1.0]), [2, 1])


# ----------------------------------------------------------------------------- permutation test
def test_permutation_mean_difference_against_loop_and_scipy():
    rs = np.random.RandomState(3)
    a, b = rs.rand(5) + 0.3, rs.rand(4)
    state = np.random.get_state()
    try:
        null, p, p_study = naive.naive_component_permutation(a, b, n_perm=4000, seed=2)
    finally:
        np.random.set_state(state)
    res = stats.permutation_mean_difference(a, b, n_permutations=4000, seed=2)
    np.testing.assert_allclose(res.null_distribution, null, rtol=0, atol=1e-15)
    obs = a.mean() - b.mean()
    assert res.statistic == pytest.approx(obs) and res.n_resamples == 4000
    assert res.p_value_study == p_study                           # the study's raw fraction (null > obs)
    # a shuffle that reproduces the observed split equals it only up to rounding: counted (100 eps)
    k = np.sum(null >= obs - abs(obs) * 100 * np.finfo(float).eps)
    assert res.p_value == (k + 1) / 4001 and k > round(p * 4001) - 1
    # against the exact test over all C(9, 5) = 126 partitions (scipy enumerates them)
    ref = sps.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="independent",
                               n_resamples=np.inf, alternative="greater")
    assert abs(res.p_value - ref.pvalue) < 4 * math.sqrt(ref.pvalue * (1 - ref.pvalue) / 4000) + 1e-3
    # the global stream is untouched
    before = np.random.get_state()[1].copy()
    stats.permutation_mean_difference(a, b, n_permutations=50)
    assert np.array_equal(np.random.get_state()[1], before)
    # NaN in, NaN p out; bad counts refused
    assert np.isnan(stats.permutation_mean_difference([np.nan, 1.0], b, n_permutations=10).p_value)
    with pytest.raises(ValueError):
        stats.permutation_mean_difference(a, b, n_permutations=0)
    with pytest.raises(ValueError):
        stats.permutation_mean_difference([], b)


# ----------------------------------------------------------------------------- bootstraps
def test_bootstrap_mean_test_against_sequential_loop():
    v1 = np.array([0.61, 0.64, 0.58, 0.66, 0.63])
    v2 = np.array([0.55, 0.60, 0.62, 0.57, 0.59])
    rs = np.random.RandomState(7)
    means = np.array([np.mean(rs.choice(v2, size=5, replace=True)) for _ in range(3000)])
    res = stats.bootstrap_mean_test(v1, v2, n_boot=3000, seed=7)
    np.testing.assert_allclose(res.bootstrap_distribution, means, rtol=1e-15, atol=0)
    assert res.reference == v1.mean() and res.statistic == v2.mean() and res.n_resamples == 3000
    assert res.p_value == (np.sum(means >= v1.mean()) + 1) / 3001
    assert res.p_value_study == np.mean(means > v1.mean())
    assert res.ci_low is None and res.confidence is None          # a test, not an interval


def test_bootstrap_mean_against_loop_and_scipy():
    v = np.array([0.21, 0.35, 0.28, 0.40, 0.31, 0.26, 0.38, 0.30, 0.24, 0.33])
    res = stats.bootstrap_mean(v, n_boot=20000, confidence=0.9, seed=5)
    idx = np.random.default_rng(5).integers(0, v.size, size=(20000, v.size))
    loop = np.array([np.mean(v[i]) for i in idx])
    np.testing.assert_allclose(res.bootstrap_distribution, loop, rtol=1e-14)
    lo, hi = np.quantile(loop, [0.05, 0.95])
    assert (res.ci_low, res.ci_high) == (pytest.approx(lo, abs=1e-14), pytest.approx(hi, abs=1e-14))
    assert res.statistic == pytest.approx(v.mean()) and res.n_resamples == 20000 and res.p_value is None
    # scipy's percentile bootstrap (its own stream) gives the same interval up to Monte Carlo error
    ref = sps.bootstrap((v,), np.mean, n_resamples=20000, confidence_level=0.9, method="percentile",
                        random_state=np.random.default_rng(0)).confidence_interval
    assert abs(res.ci_low - ref.low) < 0.004 and abs(res.ci_high - ref.high) < 0.004
    # columns share the resampled participants
    two = stats.bootstrap_mean(np.c_[v, 2 * v], n_boot=500, seed=5)
    np.testing.assert_allclose(two.bootstrap_distribution[:, 1], 2 * two.bootstrap_distribution[:, 0])


def test_bootstrap_sounds_result_type():
    X = np.random.default_rng(0).normal(size=(12, 20))
    a, b = rsa.similarity_matrix(X), rsa.similarity_matrix(X ** 3)
    res = rsa.bootstrap_sounds(a, b, n_boot=50, seed=1)
    assert isinstance(res, stats.BootstrapResult) and res.n_resamples == 50
    assert res.statistic == rsa.compare(a, b) and res.bootstrap_distribution.shape == (50,)


# ----------------------------------------------------------------------------- paired comparison
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_compare_paired_exact_equals_scipy(alternative):
    a = np.array([0.50, 0.61, 0.55, 0.72, 0.64, 0.58, 0.66])
    b = np.array([0.41, 0.50, 0.52, 0.60, 0.51, 0.59, 0.55])
    res = stats.compare_paired(a, b, n_boot=1000, alternative=alternative)
    ref = sps.permutation_test((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis),
                               permutation_type="samples", n_resamples=np.inf, alternative=alternative,
                               vectorized=True)
    assert res.exact and res.n_resamples == 2 ** 7
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    # the enumerated sign patterns, as a loop
    loop = sorted(np.mean(np.array(s) * (a - b)) for s in itertools.product((1.0, -1.0), repeat=7))
    np.testing.assert_allclose(np.sort(res.null_distribution), loop, atol=1e-15)
    assert res.statistic == pytest.approx(np.mean(a - b)) and res.ci_low < res.statistic < res.ci_high


# ----------------------------------------------------------------------------- RSA permutation test
def test_rsa_permutation_test_enumerated_against_loop():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6, 15))
    a, b = rsa.similarity_matrix(X), rsa.similarity_matrix(X + rng.normal(size=X.shape))
    res = rsa.permutation_test(a, b, n_permutations="all")
    iu = np.triu_indices(6, 1)
    obs = sps.spearmanr(a[iu], b[iu]).statistic
    null = [sps.spearmanr(a[iu], b[np.ix_(p, p)][iu]).statistic for p in itertools.permutations(range(6))]
    k = sum(x >= obs - 1e-12 for x in null)
    assert res.exact and res.n_resamples == 720 and res.p_value == pytest.approx(k / 720, abs=1e-15)
    assert res.statistic == pytest.approx(obs, abs=1e-12)


# ----------------------------------------------------------------------------- deprecated names
def test_deprecated_field_names_alias_the_new_ones():
    p = stats.PermutationResult(statistic=1.0, p_value=0.5, null_distribution=np.zeros(3), n_resamples=3,
                                p_value_corrected=0.7)
    assert (p.observed, p.pvalue, p.pvalue_corrected) == (1.0, 0.5, 0.7) and p.null is p.null_distribution
    b = stats.BootstrapResult(statistic=2.0, bootstrap_distribution=np.ones(2), n_resamples=2, reference=1.0)
    assert (b.estimate, b.mean_2, b.mean_1) == (2.0, 2.0, 1.0) and b.distribution is b.boot_means
    c = stats.compare_paired([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], n_boot=10)
    assert (c.difference, c.pvalue) == (c.statistic, c.p_value) and c.boot_distribution is c.bootstrap_distribution
