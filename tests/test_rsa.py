"""Tests of fastenc.rsa against scipy, rsatoolbox and the loop references in naive_rsa."""
from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from fastenc import rsa
from fastenc._core.rsa import rank_average, sym_ranks2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import naive_rsa as naive  # noqa: E402

RNG = np.random.default_rng(12345)


def _data(n=20, p=15, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p))


def _pair(n=12, p=25, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    return rsa.similarity_matrix(X), rsa.similarity_matrix(X + noise * rng.normal(size=X.shape))


# ----------------------------------------------------------------------------- similarity
def test_similarity_matrix_matches_naive_train_stats():
    X = _data(30, 12)
    X[:, 3] = 2.5  # zero-std feature: only centred
    mask = np.zeros(30, bool)
    mask[::2] = True
    R_te = rsa.similarity_matrix(X, train=mask, sounds=~mask)
    np.testing.assert_allclose(R_te, naive.rsm(X[mask], X[~mask]), atol=1e-12)
    R_tr = rsa.similarity_matrix(X, train=np.flatnonzero(mask), sounds=mask)
    np.testing.assert_allclose(R_tr, naive.rsm(X[mask], X[mask]), atol=1e-12)
    np.testing.assert_allclose(rsa.similarity_matrix(X), naive.rsm(X, X), atol=1e-12)


def test_zero_std_feature_only_centred():
    X = _data(10, 4)
    X[:, 0] = 7.0
    X[5:, 0] = 9.0  # constant on the train sounds 0-4, not on the others
    R = rsa.similarity_matrix(X, train=np.arange(5), sounds=np.arange(5, 10))
    Z = X[5:].copy()
    Z[:, 0] -= 7.0  # centred, not scaled
    Z[:, 1:] = (Z[:, 1:] - X[:5, 1:].mean(0)) / X[:5, 1:].std(0)
    np.testing.assert_allclose(R, np.corrcoef(Z), atol=1e-12)


def test_similarity_matrix_matches_rsatoolbox():
    rsatoolbox = pytest.importorskip("rsatoolbox")
    X = _data(25, 40, seed=3)
    Z = (X - X.mean(0)) / X.std(0)
    ds = rsatoolbox.data.Dataset(Z)
    rdm = rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_matrices()[0]
    np.testing.assert_allclose(1 - rsa.similarity_matrix(X), rdm, atol=1e-10)


def test_constant_sound_gives_nan_row():
    X = _data(8, 6)
    X[0] = [0, 2, 0, 2, 0, 2]
    X[1] = [2, 0, 2, 0, 2, 0]  # train mean 1, std 1 for every feature
    X[2] = 3.0  # z-scores exactly 2 everywhere: constant row → NaN similarities
    R = rsa.similarity_matrix(X, train=[0, 1])
    assert np.isnan(R[2]).all() and np.isnan(R[:, 2]).all()
    assert np.isfinite(np.delete(np.delete(R, 2, 0), 2, 1)).all()
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = naive.rsm(X[:2], X)
    assert np.isnan(ref[2, 3])


# ----------------------------------------------------------------------------- compare
def test_rank_average_matches_scipy():
    v = np.round(RNG.normal(size=500), 1)  # many ties
    out = np.empty_like(v)
    rank_average(v, out)
    np.testing.assert_array_equal(out, stats.rankdata(v))
    M = np.round(_pair(9)[0], 1)
    S = sym_ranks2(M)
    iu = np.triu_indices(9, 1)
    np.testing.assert_array_equal(S[iu], 2 * stats.rankdata(M[iu]))


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_compare_matches_scipy_and_rsatoolbox(method):
    a, b = _pair(15, seed=1)
    a = np.round(a, 2)  # ties
    ref = naive.spearman_mats(a, b) if method == "spearman" else naive.pearson_mats(a, b)
    assert rsa.compare(a, b, method) == pytest.approx(ref, abs=1e-12)
    rsatoolbox = pytest.importorskip("rsatoolbox")
    r1 = rsatoolbox.rdm.RDMs(1 - a[None])
    r2 = rsatoolbox.rdm.RDMs(1 - b[None])
    rt = rsatoolbox.rdm.compare(r1, r2, method="spearman" if method == "spearman" else "corr")
    assert rsa.compare(1 - a, 1 - b, method) == pytest.approx(float(rt[0, 0]), abs=1e-10)


def test_compare_stacks_shapes():
    A = np.stack([_pair(10, seed=s)[0] for s in range(3)])
    B = np.stack([_pair(10, seed=s)[1] for s in range(4)])
    C = rsa.compare(A, B)
    assert C.shape == (3, 4)
    assert C[1, 2] == pytest.approx(naive.spearman_mats(A[1], B[2]), abs=1e-12)
    np.testing.assert_allclose(rsa.compare(A, B[0]), C[:, 0])
    np.testing.assert_allclose(rsa.compare(A[0], B), C[0])


def test_compare_bad_input():
    a, b = _pair(10)
    with pytest.raises(ValueError, match="differ in size"):
        rsa.compare(a, b[:9, :9])
    with pytest.raises(ValueError, match="at least 3"):
        rsa.compare(a[:2, :2], b[:2, :2])
    with pytest.raises(ValueError, match="square"):
        rsa.compare(a[:, :5], b)
    with pytest.raises(ValueError, match="method"):
        rsa.compare(a, b, method="kendall")
    bn = b.copy()
    bn[1, 4] = np.nan
    assert np.isnan(rsa.compare(a, bn))  # documented: NaN propagates
    assert np.isnan(rsa.compare(a, np.ones((10, 10))))  # constant: NaN
    with pytest.raises(ValueError, match="NaN"):
        rsa.similarity_matrix(np.full((5, 3), np.nan))
    with pytest.raises(ValueError, match="at least 3"):
        rsa.similarity_matrix(np.ones((2, 3)))


# ----------------------------------------------------------------------------- CV RSA
def _cv_data(n=165, L=3, P=3, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    layers = [latent @ rng.normal(size=(6, 30)) + s * rng.normal(size=(n, 30))
              for s in (3.0, 1.0, 2.0)][:L]
    parts = [latent @ rng.normal(size=(6, 20)) + 2 * rng.normal(size=(n, 20)) for _ in range(P)]
    cats = np.array(naive.CATEGORY_ORDER)[rng.integers(0, 11, size=n)]
    return layers, parts, cats


@pytest.mark.parametrize("corrected", [False, True])
def test_cv_best_layer_matches_naive(corrected):
    layers, parts, cats = _cv_data()
    masks = naive.study_split_masks()
    ref = naive.cv_best_layer(layers, parts, masks, categories=list(cats), corrected=corrected)
    res = rsa.cv_best_layer(layers, parts, categories=cats, corrected=corrected)
    np.testing.assert_array_equal(res.train_masks, masks)  # default = METHOD §2 splits
    np.testing.assert_array_equal(res.order, naive.category_reorder(list(cats)))
    np.testing.assert_allclose(res.train_corr, ref["train_corr"], atol=1e-10)
    np.testing.assert_allclose(res.test_corr, ref["test_corr"], atol=1e-10)
    np.testing.assert_array_equal(res.best_layer, ref["best_layer"])
    np.testing.assert_allclose(res.score, ref["score"], atol=1e-10)
    assert res.model_score == pytest.approx(ref["model_score"], abs=1e-10)
    np.testing.assert_allclose(res.noise_ceiling_splits, ref["nc_splits"], atol=1e-10)
    assert res.model_noise_ceiling == pytest.approx(ref["model_nc"], abs=1e-10)


def test_cv_best_layer_ties_first_wins_and_all_nan():
    layers, parts, _ = _cv_data(n=40, L=2, P=2, seed=1)
    masks = naive.study_split_masks(40, 20, 3)
    res = rsa.cv_best_layer([layers[0], layers[0], layers[1]], parts, splits=masks)
    ref = naive.cv_best_layer([layers[0], layers[0], layers[1]], parts, masks)
    np.testing.assert_array_equal(res.best_layer, ref["best_layer"])
    assert not np.any(res.best_layer == 1)  # duplicate of layer 0 never wins
    # a layer constant across features for every sound → NaN correlations, never best
    const = np.tile(np.arange(40.0)[:, None], (1, 5))  # after z-scoring: constant per row
    res2 = rsa.cv_best_layer([const, layers[1]], parts, splits=masks)
    assert np.isnan(res2.train_corr[:, :, 0]).all()
    assert (res2.best_layer == 1).all()
    res3 = rsa.cv_best_layer([const], parts, splits=masks, noise_ceiling=False)
    assert (res3.best_layer == -1).all() and np.isnan(res3.score).all()
    assert res3.noise_ceiling is None


def test_cv_best_layer_index_splits_and_bad_input():
    layers, parts, cats = _cv_data(n=30, L=2, P=2, seed=2)
    masks = naive.study_split_masks(30, 15, 2)
    r1 = rsa.cv_best_layer(layers, parts, splits=masks)
    r2 = rsa.cv_best_layer(layers, parts, splits=[np.flatnonzero(m) for m in masks])
    np.testing.assert_array_equal(r1.test_corr, r2.test_corr)
    with pytest.raises(ValueError, match="participants is empty"):
        rsa.cv_best_layer(layers, [], splits=masks)
    with pytest.raises(ValueError, match="layers is empty"):
        rsa.cv_best_layer([], parts, splits=masks)
    with pytest.raises(ValueError, match="no features"):
        rsa.cv_best_layer(layers, [np.empty((30, 0)), parts[1]], splits=masks)
    with pytest.raises(ValueError, match="sounds"):
        rsa.cv_best_layer(layers, [parts[0][:29], parts[1]], splits=masks)
    bad = layers[0].copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rsa.cv_best_layer([bad], parts, splits=masks)
    with pytest.raises(ValueError, match="2 participants"):
        rsa.cv_best_layer(layers, parts[:1], splits=masks)
    with pytest.raises(ValueError, match="default splits"):
        rsa.cv_best_layer(layers, parts)
    with pytest.raises(ValueError, match="unknown sound categories"):
        rsa.cv_best_layer(layers, parts, splits=masks, categories=["Foo"] * 30)


def test_cv_best_layer_thread_count_independent():
    layers, parts, cats = _cv_data(n=60, seed=4)
    masks = naive.study_split_masks(60, 30, 3)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with threadpool_limits(1):
            r1 = rsa.cv_best_layer(layers, parts, splits=masks, categories=cats)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        r2 = rsa.cv_best_layer(layers, parts, splits=masks, categories=cats)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(r1.test_corr, r2.test_corr)
    np.testing.assert_array_equal(r1.noise_ceiling_splits, r2.noise_ceiling_splits)


def test_within_subject_sem():
    v = RNG.normal(size=(8, 5))
    d = v - v.mean(1, keepdims=True)
    np.testing.assert_allclose(rsa.within_subject_sem(v, quirk=False), d.std(0) / np.sqrt(7))
    np.testing.assert_allclose(rsa.within_subject_sem(v), d.std(0) / np.sqrt(4))  # study quirk
    with pytest.raises(ValueError):
        rsa.within_subject_sem(np.ones(3))


# ----------------------------------------------------------------------------- permutation tests
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_permutation_null_matches_scipy(method):
    a, b = _pair(14, seed=5)
    a = np.round(a, 1)  # ties in the fixed matrix
    res = rsa.permutation_test(a, b, n_permutations=60, method=method, seed=3)
    ref = naive.permutation_null(a, b, res.permutations, method)
    np.testing.assert_allclose(res.null_distribution, ref, atol=1e-12)
    obs = naive.spearman_mats(a, b) if method == "spearman" else naive.pearson_mats(a, b)
    assert res.statistic == pytest.approx(obs, abs=1e-12)
    k = np.sum(ref >= obs - 1e-12)
    assert res.pvalue == pytest.approx((k + 1) / 61)
    # documented stream
    perms = np.random.default_rng(3).permuted(np.tile(np.arange(14), (60, 1)), axis=1)
    np.testing.assert_array_equal(res.permutations, perms)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_permutation_exact_enumeration(method):
    a, b = _pair(5, p=4, noise=0.7, seed=6)
    p_exact, obs, null = naive.exact_permutation_p(a, b, method)
    res = rsa.permutation_test(a, b, n_permutations="all", method=method)
    assert res.null_distribution.size == 120
    assert res.pvalue == pytest.approx(p_exact)
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(null), atol=1e-12)
    # many random permutations converge to the exact fraction
    big = rsa.permutation_test(a, b, n_permutations=20000, method=method, seed=1)
    assert abs(big.pvalue - p_exact) < 4 * np.sqrt(p_exact * (1 - p_exact) / 20000) + 1e-3


def test_permutation_calibration_under_null():
    rng = np.random.default_rng(7)
    ps = []
    for i in range(200):
        a = rsa.similarity_matrix(rng.normal(size=(10, 8)))
        b = rsa.similarity_matrix(rng.normal(size=(10, 8)))
        ps.append(rsa.permutation_test(a, b, n_permutations=199, seed=i).pvalue)
    assert stats.kstest(ps, "uniform").pvalue > 1e-3


def test_permutation_thread_and_seed_reproducible():
    a, b = _pair(30, seed=8)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        r1 = rsa.permutation_test(a, b, n_permutations=500, seed=11, method="pearson")
        s1 = rsa.permutation_test(a, b, n_permutations=500, seed=11)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        r2 = rsa.permutation_test(a, b, n_permutations=500, seed=11, method="pearson")
        s2 = rsa.permutation_test(a, b, n_permutations=500, seed=11)
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(r1.null_distribution, r2.null_distribution)
    np.testing.assert_array_equal(s1.null_distribution, s2.null_distribution)


def test_permutation_explicit_and_bad_input():
    a, b = _pair(6, seed=9)
    perms = np.array([np.arange(6), np.arange(6)[::-1]])
    res = rsa.permutation_test(a, b, permutations=perms)
    assert res.null_distribution[0] == pytest.approx(res.statistic)
    with pytest.raises(ValueError, match="permutation of range"):
        rsa.permutation_test(a, b, permutations=np.zeros((2, 6), int))
    with pytest.raises(ValueError, match="differ in size"):
        rsa.permutation_test(a, b[:5, :5])
    bn = b.copy()
    bn[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rsa.permutation_test(a, bn)
    with pytest.raises(ValueError, match="at least 3"):
        rsa.permutation_test(a[:2, :2], b[:2, :2])
    with pytest.raises(ValueError, match="n > 9|> 9"):
        rsa.permutation_test(*_pair(10), n_permutations="all")
    const = rsa.permutation_test(a, np.zeros((6, 6)), n_permutations=10)
    assert np.isnan(const.statistic) and np.isnan(const.pvalue)  # documented


def test_permutation_test_many_max_statistic():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(12, 20))
    brain = rsa.similarity_matrix(X)
    mats = np.stack([rsa.similarity_matrix(X + s * rng.normal(size=X.shape)) for s in (0.5, 3.0, 30.0)])
    res = rsa.permutation_test_many(mats, brain, n_permutations=300, seed=2)
    for k in range(3):
        single = rsa.permutation_test(mats[k], brain, n_permutations=300, seed=2)
        assert res.statistic[k] == pytest.approx(single.statistic)
        assert res.pvalue[k] == pytest.approx(single.pvalue)
        np.testing.assert_array_equal(res.null_distribution[:, k], single.null_distribution)
    mx = res.null_distribution.max(1)
    ref = [(np.sum(mx >= o - 1e-12) + 1) / 301 for o in res.statistic]
    np.testing.assert_allclose(res.pvalue_corrected, ref)
    assert np.all(res.pvalue_corrected >= res.pvalue)


# ----------------------------------------------------------------------------- bootstraps
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_bootstrap_sounds_matches_naive(method):
    a, b = _pair(10, seed=11)
    res = rsa.bootstrap_sounds(a, b, n_boot=40, method=method, seed=4)
    idx = np.random.default_rng(4).integers(0, 10, size=(40, 10))
    ref = naive.sound_bootstrap(a, b, idx, method)
    np.testing.assert_allclose(res.distribution, ref, atol=1e-12)
    lo, hi = np.nanquantile(ref, [0.025, 0.975])
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi))
    assert res.estimate == pytest.approx(rsa.compare(a, b, method))


def test_bootstrap_participants():
    v = RNG.normal(size=(8, 3))
    res = rsa.bootstrap_participants(v, n_boot=500, seed=5)
    idx = np.random.default_rng(5).integers(0, 8, size=(500, 8))
    np.testing.assert_allclose(res.distribution, v[idx].mean(1))
    np.testing.assert_allclose(res.estimate, v.mean(0))
    r1 = rsa.bootstrap_participants(v[:, 0], n_boot=500, seed=5)
    assert r1.ci_low == pytest.approx(res.ci_low[0])
    with pytest.raises(ValueError):
        rsa.bootstrap_participants([1.0])


def test_compare_models_paired():
    a = np.array([0.50, 0.61, 0.55, 0.72, 0.64, 0.58, 0.66, 0.49])
    b = np.array([0.41, 0.50, 0.52, 0.60, 0.51, 0.59, 0.55, 0.47])
    res = rsa.compare_models_paired(a, b, n_boot=2000)
    ref = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                 n_resamples=np.inf, alternative="two-sided")
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert res.difference == pytest.approx(np.mean(a - b))
    assert res.ci_low < res.difference < res.ci_high
    g = rsa.compare_models_paired(a, b, alternative="greater")
    assert g.pvalue < res.pvalue
    # agrees in direction with the Wilcoxon signed-rank test
    assert stats.wilcoxon(a, b, alternative="greater").pvalue < 0.05 and g.pvalue < 0.05
    big = rsa.compare_models_paired(RNG.normal(size=20), RNG.normal(size=20), n_permutations=999)
    assert 0 < big.pvalue <= 1 and big.null_distribution.size == 999
    with pytest.raises(ValueError, match="same length"):
        rsa.compare_models_paired(a, b[:5])


def test_prepared_inputs_give_identical_results():
    rng = np.random.default_rng(11)
    cats = list(rng.permutation(np.repeat(rsa._registry_category_order(), 15)))
    layers = [rng.standard_normal((165, 40)) for _ in range(3)]
    parts = [rng.standard_normal((165, 25)) for _ in range(4)]
    raw = rsa.cv_best_layer(layers, parts, categories=cats)
    M = rsa.prepare_layers(layers, categories=cats)
    P = rsa.prepare_participants(parts, categories=cats)
    prep = rsa.cv_best_layer(M, P)
    for k in ("score", "best_layer", "test_corr", "train_corr", "noise_ceiling"):
        np.testing.assert_array_equal(getattr(prep, k), getattr(raw, k))
    with pytest.raises(ValueError, match="different"):
        rsa.cv_best_layer(M, rsa.prepare_participants(parts))  # not category-reordered


def test_max_statistic_ignores_constant_matrices():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(10, 30))
    brain = rsa.similarity_matrix(X)
    model = rsa.similarity_matrix(X + 3.0 * rng.normal(size=X.shape))
    alone = rsa.permutation_test_many([model], brain, n_permutations=999, seed=0)
    with_const = rsa.permutation_test_many([model, np.ones((10, 10))], brain, n_permutations=999, seed=0)
    assert with_const.pvalue_corrected[0] == alone.pvalue_corrected[0]
    assert np.isnan(with_const.pvalue_corrected[1])
