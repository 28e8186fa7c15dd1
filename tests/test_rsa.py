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
from fastenc.constants import CATEGORY_ORDER
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
    np.testing.assert_array_equal(res.train_masks, masks)  # default = docs/method.md §2 splits
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


def test_rsa_sem():
    v = RNG.normal(size=(8, 5))
    d = v - v.mean(1, keepdims=True)
    np.testing.assert_allclose(rsa.rsa_sem(v, corrected=True), d.std(0) / np.sqrt(7))
    np.testing.assert_allclose(rsa.rsa_sem(v), d.std(0) / np.sqrt(4))  # study quirk: sqrt(models - 1)
    with pytest.raises(ValueError):
        rsa.rsa_sem(np.ones(3))
    # the deprecated name (quirk=True means corrected=False) warns and gives the same values
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(rsa.within_subject_sem(v), rsa.rsa_sem(v))
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(rsa.within_subject_sem(v, quirk=False), rsa.rsa_sem(v, corrected=True))


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
    assert res.p_value == pytest.approx((k + 1) / 61)
    # documented stream
    perms = np.random.default_rng(3).permuted(np.tile(np.arange(14), (60, 1)), axis=1)
    np.testing.assert_array_equal(res.permutations, perms)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_permutation_exact_enumeration(method):
    a, b = _pair(5, p=4, noise=0.7, seed=6)
    p_exact, obs, null = naive.exact_permutation_p(a, b, method)
    res = rsa.permutation_test(a, b, n_permutations="all", method=method)
    assert res.null_distribution.size == 120
    assert res.p_value == pytest.approx(p_exact)
    np.testing.assert_allclose(np.sort(res.null_distribution), np.sort(null), atol=1e-12)
    # many random permutations converge to the exact fraction
    big = rsa.permutation_test(a, b, n_permutations=20000, method=method, seed=1)
    assert abs(big.p_value - p_exact) < 4 * np.sqrt(p_exact * (1 - p_exact) / 20000) + 1e-3


def test_permutation_calibration_under_null():
    rng = np.random.default_rng(7)
    ps = []
    for i in range(200):
        a = rsa.similarity_matrix(rng.normal(size=(10, 8)))
        b = rsa.similarity_matrix(rng.normal(size=(10, 8)))
        ps.append(rsa.permutation_test(a, b, n_permutations=199, seed=i).p_value)
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
    assert np.isnan(const.statistic) and np.isnan(const.p_value)  # documented


def test_permutation_test_many_max_statistic():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(12, 20))
    brain = rsa.similarity_matrix(X)
    mats = np.stack([rsa.similarity_matrix(X + s * rng.normal(size=X.shape)) for s in (0.5, 3.0, 30.0)])
    res = rsa.permutation_test_many(mats, brain, n_permutations=300, seed=2)
    for k in range(3):
        single = rsa.permutation_test(mats[k], brain, n_permutations=300, seed=2)
        assert res.statistic[k] == pytest.approx(single.statistic)
        assert res.p_value[k] == pytest.approx(single.p_value)
        np.testing.assert_array_equal(res.null_distribution[:, k], single.null_distribution)
    mx = res.null_distribution.max(1)
    ref = [(np.sum(mx >= o - 1e-12) + 1) / 301 for o in res.statistic]
    np.testing.assert_allclose(res.p_value_corrected, ref)
    assert np.all(res.p_value_corrected >= res.p_value)


# ----------------------------------------------------------------------------- bootstraps
@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_bootstrap_sounds_matches_naive(method):
    a, b = _pair(10, seed=11)
    res = rsa.bootstrap_sounds(a, b, n_boot=40, method=method, seed=4)
    idx = np.random.default_rng(4).integers(0, 10, size=(40, 10))
    ref = naive.sound_bootstrap(a, b, idx, method)
    np.testing.assert_allclose(res.bootstrap_distribution, ref, atol=1e-12)
    lo, hi = np.nanquantile(ref, [0.025, 0.975])
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi))
    assert res.statistic == pytest.approx(rsa.compare(a, b, method))


def test_bootstrap_participants():
    v = RNG.normal(size=(8, 3))
    res = rsa.bootstrap_participants(v, n_boot=500, seed=5)
    idx = np.random.default_rng(5).integers(0, 8, size=(500, 8))
    np.testing.assert_allclose(res.bootstrap_distribution, v[idx].mean(1))
    np.testing.assert_allclose(res.statistic, v.mean(0))
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
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(np.mean(a - b))
    assert res.ci_low < res.statistic < res.ci_high
    g = rsa.compare_models_paired(a, b, alternative="greater")
    assert g.p_value < res.p_value
    # agrees in direction with the Wilcoxon signed-rank test
    assert stats.wilcoxon(a, b, alternative="greater").pvalue < 0.05 and g.p_value < 0.05
    x, y = RNG.normal(size=20), RNG.normal(size=20)
    big = rsa.compare_models_paired(x, y, n_permutations=999, seed=4)
    # P = 20 > 16: 999 random sign patterns, the first draws of default_rng(seed)
    signs = np.random.default_rng(4).choice([-1.0, 1.0], size=(999, 20))
    null = np.array([np.mean(sg * (x - y)) for sg in signs])
    k = np.sum(np.abs(null) >= abs(np.mean(x - y)) * (1 - 1e-12))
    assert big.p_value == (k + 1) / 1000 and not big.exact and big.n_resamples == 999
    np.testing.assert_allclose(big.null_distribution, null, rtol=1e-12)
    with pytest.raises(ValueError, match="same length"):
        rsa.compare_models_paired(a, b[:5])


def test_prepared_inputs_give_identical_results():
    rng = np.random.default_rng(11)
    cats = list(rng.permutation(np.repeat(list(CATEGORY_ORDER), 15)))
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


# ----------------------------------------------------------------------------- all-sound best layer, ROI vs ROI
def test_best_layer_all_sounds_matches_study_loop():
    layers, parts, cats = _cv_data(n=60, L=3, P=3, seed=21)
    layers = layers + [layers[1].copy()]                  # a tie: the first of the two wins
    res = rsa.best_layer_all_sounds(layers, parts)
    for p, Y in enumerate(parts):
        corr, best, rel = naive.all_sounds_best_layer(layers, Y)
        np.testing.assert_allclose(res.corr[p], corr, atol=1e-10)
        assert res.best_layer[p] == best and res.rel_pos[p] == pytest.approx(rel)
    # prepared inputs (category order, splits) give the same values: the order does not matter
    masks = naive.study_split_masks(60, 30, 3)
    M = rsa.prepare_layers(layers, splits=masks, categories=cats)
    P = rsa.prepare_participants(parts, splits=masks, categories=cats)
    prep = rsa.best_layer_all_sounds(M, P)
    np.testing.assert_allclose(prep.corr, res.corr, atol=1e-12)
    np.testing.assert_array_equal(prep.best_layer, res.best_layer)
    # a constant layer is NaN and never best; a single layer has no relative position
    const = np.tile(np.arange(60.0)[:, None], (1, 5))
    r2 = rsa.best_layer_all_sounds([const, layers[0]], parts)
    assert np.isnan(r2.corr[:, 0]).all() and (r2.best_layer == 1).all()
    r3 = rsa.best_layer_all_sounds([const], parts)
    assert (r3.best_layer == -1).all() and np.isnan(r3.rel_pos).all()
    assert np.isnan(rsa.best_layer_all_sounds(layers[:1], parts).rel_pos).all()
    with pytest.raises(ValueError, match="sounds"):
        rsa.best_layer_all_sounds(layers, [parts[0][:50]])


def test_best_layer_all_sounds_differs_from_cv_median():
    """The ROI analysis of the study is not the cross-validated best layer (median over splits)."""
    layers, parts, cats = _cv_data(seed=22)
    cv = rsa.cv_best_layer(layers, parts, categories=cats)
    alls = rsa.best_layer_all_sounds(layers, parts)
    for p, Y in enumerate(parts):
        _, best, _ = naive.all_sounds_best_layer(layers, Y)
        assert alls.best_layer[p] == best
    assert cv.best_layer.shape == (3, 10) and alls.best_layer.shape == (3,)


def _roi_data(n=40, seed=23):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 6))
    rois = {}
    for k, r in enumerate(["Primary", "Lateral", "Posterior", "Anterior"]):
        rois[r] = {s: Z @ rng.normal(size=(6, 7)) + (1 + k) * rng.normal(size=(n, 7)) for s in range(4)}
    del rois["Anterior"][2]                               # participant 2 has no Anterior voxels
    return rois


def test_roi_vs_roi_matches_naive_all_sounds():
    rois = _roi_data()
    res = rsa.roi_vs_roi(rois)
    ref = naive.roi_vs_roi(rois)
    np.testing.assert_allclose(res.matrix.to_numpy(), ref, atol=1e-10)
    assert res.matrix.index.name == "roi" and list(res.matrix.columns) == list(rois)
    np.testing.assert_allclose(np.diag(res.matrix.to_numpy()), 1.0)
    assert res.n_participants.loc["Primary", "Anterior"] == 3 and res.n_participants.loc["Primary", "Lateral"] == 4
    # it is the mean of within-participant values, not the correlation of averaged RSMs
    avg = {r: np.mean([naive.rsm(Y, Y) for Y in d.values()], axis=0) for r, d in rois.items()}
    assert abs(res.matrix.loc["Primary", "Posterior"] - naive.spearman_mats(avg["Primary"], avg["Posterior"])) > 1e-3
    vals = res.values[(res.values.roi_1 == "Primary") & (res.values.roi_2 == "Posterior")]
    assert len(vals) == 4 and vals["spearman"].mean() == pytest.approx(res.matrix.loc["Primary", "Posterior"])


def test_roi_vs_roi_matches_naive_with_splits():
    rois = _roi_data(n=40, seed=24)
    masks = naive.study_split_masks(40, 20, 3)
    res = rsa.roi_vs_roi(rois, splits=masks)
    np.testing.assert_allclose(res.matrix.to_numpy(), naive.roi_vs_roi(rois, masks), atol=1e-10)
    idx = rsa.roi_vs_roi(rois, splits=[np.flatnonzero(m) for m in masks])
    np.testing.assert_allclose(idx.matrix.to_numpy(), res.matrix.to_numpy())
    with pytest.raises(ValueError):
        rsa.roi_vs_roi(rois, splits="some")
    with pytest.raises(ValueError):
        rsa.roi_vs_roi({})


def test_rsa_roi_summary_matches_study_formula():
    """roi_summary(sem="models") is the study's get_mean_and_sem_best_layer (RSA quirk)."""
    import pandas as pd

    from fastenc import analysis as A
    rng = np.random.default_rng(25)
    M = rng.integers(0, 8, size=(6, 8)) / 7               # 6 models x 8 participants
    rows = [{"source_model": f"m{k}", "randnetw": False, "subj_idx": p, "roi": "Lateral", "rel_pos": M[k, p]}
            for k in range(6) for p in range(8)]
    out = A.roi_summary(pd.DataFrame(rows), rois=["Lateral"], sem="models")
    mean, err = naive.study_rsa_best_layer_summary(M)
    np.testing.assert_allclose(out["rel_pos_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(out["rel_pos_yerr"], err, rtol=1e-12)


def test_rsa_noise_ceiling_band_and_pooled_sem():
    """rsa_across-models: ceiling band = std / sqrt(participants - 1); SEM pooled over the set."""
    import pandas as pd

    from fastenc.study.rsa import rsa_across_models as _rsa_across_models
    from fastenc.registry import load_registry
    rng = np.random.default_rng(26)
    nc = rng.uniform(0.5, 0.8, size=5)
    rows = []
    for m, rn in [("AST", False), ("AST", True), ("VGGish", False), ("VGGish", True),
                  ("Kell2018wordSeed2", False), ("spectemp", False)]:
        for s in range(5):
            rows.append({"source_model": m, "randnetw": rn, "roi": "All", "subj_idx": s,
                         "rsa": rng.uniform(0.1, 0.5), "noise_ceiling": nc[s]})
    long = pd.DataFrame(rows)
    reg = load_registry()
    pool = ["AST", "VGGish", "spectemp"]
    out = _rsa_across_models(long, reg, pool, "FIG_2_5_MODEL_LIST (2 of 19 present) + spectemp", corrected=False)
    band = np.sqrt(np.mean((nc - nc.mean()) ** 2)) / np.sqrt(4)
    assert out["noise_ceiling_yerr"].to_numpy() == pytest.approx(np.full(len(out), band))
    assert out["noise_ceiling"].iloc[0] == pytest.approx(nc.mean())
    tr = long[~long.randnetw]
    wide = tr.pivot(index="subj_idx", columns="source_model", values="rsa")
    for cols, models in ((["AST", "VGGish", "spectemp"], ["AST", "VGGish", "spectemp"]),
                         (list(wide.columns), ["Kell2018wordSeed2"])):
        d = wide[cols].to_numpy() - wide[cols].to_numpy().mean(1, keepdims=True)
        ref = dict(zip(cols, d.std(0) / np.sqrt(len(cols) - 1)))  # the study: sqrt(models - 1)
        for m in models:
            row = out[(out.source_model == m) & ~out.randnetw].iloc[0]
            assert row["rsa_yerr"] == pytest.approx(ref[m], rel=1e-12)
            assert set(row["pooled_models"].split(";")) == set(cols)
    assert not out.set_index(["source_model", "randnetw"]).loc[("Kell2018wordSeed2", False), "in_pool"]
