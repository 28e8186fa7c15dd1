"""score_layer against a brute-force reference (tests/naive.py) and docs/method.md §4 constants."""
import numpy as np
import pytest

import fastenc
from fastenc.scoring import RV_FLOOR, RV_HAT_FLOOR

from . import naive

N_CHECK_SPLITS = 2


def _make(seed, p=120, V=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((165, p))
    sig = X[:, :10] @ rng.standard_normal((10, V))
    gains = np.resize([1, 0.3, 0.1, 0.05, 0.0, 2.0, 0.5, 0.2], V)
    Y = sig[:, :, None] * gains[None, :, None] + rng.standard_normal((165, V, 3)) + 10.0
    return X, Y


@pytest.fixture(scope="module")
def case():
    X, Y = _make(1)
    Y[:, 4, :] = 5.0  # a constant voxel
    return X, Y, fastenc.score_layer(X, Y)


def test_constants():
    assert RV_FLOOR == 0.182 and RV_HAT_FLOOR == 0.183


@pytest.mark.parametrize("split", range(N_CHECK_SPLITS))
def test_matches_brute_force(case, split):
    X, Y, s = case
    train, test = naive.study_splits()[split]
    for v in range(Y.shape[1]):
        ref = naive.score_voxel_split(X, Y[:, v, :], train, test)
        for k in ("r_test", "r_prior_zero", "r2_test", "r2_test_c", "rv", "rv_hat"):
            assert getattr(s, k)[v, split] == pytest.approx(ref[k], abs=1e-8), (k, v)


def test_constant_voxel_gives_zero_not_nan(case):
    _, _, s = case
    assert np.all(s.r_test[4] == 0) and np.all(s.constant[4])
    for A in s.arrays().values():
        assert np.all(np.isfinite(A))
    assert np.all(s.rv[4] == RV_FLOOR) and np.all(s.rv_hat[4] == RV_HAT_FLOOR)


def test_plain_targets_uncorrected(case):
    X, Y, s = case
    s2 = fastenc.score_layer(X, Y.mean(axis=2))
    # the repeated fit derives the mean target's LOO residuals from the repetitions' (linear)
    np.testing.assert_allclose(s2.r_test, s.r_test, rtol=0, atol=1e-10)
    assert s2.r2_test_c is None and s2.rv is None


def test_summary_columns(case):
    _, _, s = case
    df = s.summary()
    for name in ("r_test", "r2_test", "r2_test_c", "alpha"):
        for stat in ("mean", "median", "std"):
            assert f"{stat}_{name}" in df
    np.testing.assert_allclose(df["std_r_test"], np.std(s.r_test, axis=1))
    assert df["median_r2_test_c"].max() <= 1.0
    np.testing.assert_allclose(df["median_r2_test_c"], np.minimum(np.median(s.r2_test_c, 1), 1))


def test_thread_count_does_not_change_results():
    X, Y = _make(3, p=200, V=70)  # several kernel blocks with block=16
    a = fastenc.score_layer(X, Y, n_threads=1, block=16)
    b = fastenc.score_layer(X, Y, n_threads=2, block=16)
    for k, A in a.arrays().items():
        np.testing.assert_array_equal(A, b.arrays()[k], err_msg=k)


def test_float32_agrees_with_float64():
    X, Y = _make(4, p=300)
    a = fastenc.score_layer(X, Y)
    b = fastenc.score_layer(X.astype(np.float32), Y.astype(np.float32))
    np.testing.assert_allclose(b.r_test, a.r_test, atol=1e-4)


def test_nan_policy():
    X, Y = _make(5)
    Y[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="voxel 2"):
        fastenc.score_layer(X, Y)
    s = fastenc.score_layer(X, Y, nan_policy="omit")
    assert np.all(np.isnan(s.r_test[2])) and np.all(np.isfinite(s.r_test[[0, 1, 3]]))
    ref = fastenc.score_layer(X, np.delete(Y, 2, axis=1))
    np.testing.assert_array_equal(s.r2_test_c[[0, 1, 3, 4, 5]], ref.r2_test_c)


@pytest.mark.parametrize("bad, match", [
    (lambda X, Y: (X[:100], Y), "rows"),
    (lambda X, Y: (np.where(np.arange(X.shape[1]) == 7, np.nan, X), Y), "NaN"),
    (lambda X, Y: (X[:, :, None], Y), "2-D"),
    (lambda X, Y: (X, Y[..., None]), "shape"),
    (lambda X, Y: (X, Y[:, :, :0]), "repetition"),
])
def test_bad_input(bad, match):
    X, Y = _make(6)
    Xb, Yb = bad(X, Y)
    with pytest.raises(ValueError, match=match):
        fastenc.score_layer(Xb, Yb)


@pytest.mark.parametrize("alphas", [[], [0.0, 1.0], [-1.0], [np.nan]])
def test_bad_alphas(alphas):
    X, Y = _make(7)
    with pytest.raises(ValueError, match="alphas"):
        fastenc.score_layer(X, Y, alphas=alphas)


@pytest.mark.parametrize("p, gain", [(400, 5.0), (40, 20.0)])
def test_strong_signal_matches_brute_force(p, gain):
    """High-SNR voxels choose alphas at the low end of the grid (the collapsed flat bottom)."""
    rng = np.random.default_rng(p)
    X = rng.standard_normal((165, p))
    Y = (X @ rng.standard_normal((p, 3)) / np.sqrt(p) * gain)[:, :, None] + 0.05 * rng.standard_normal((165, 3, 3))
    s = fastenc.score_layer(X, Y)
    train, test = naive.study_splits()[0]
    for v in range(3):
        ref = naive.score_voxel_split(X, Y[:, v, :], train, test)
        for k in ("r_test", "r2_test_c", "rv_hat"):
            assert getattr(s, k)[v, 0] == pytest.approx(ref[k], abs=1e-8), (k, v)


def test_correlation_and_spearman_brown_kernels_match_scipy():
    from scipy import stats

    from fastenc._core.correlation import corrected_reliability, pearson_rows, spearman_brown
    rng = np.random.default_rng(8)
    A, B = rng.standard_normal((5, 40)), rng.standard_normal((5, 40))
    B[3] = 1.0  # constant row -> NaN
    r = pearson_rows(A, B)
    for j in (0, 1, 2, 4):
        assert r[j] == pytest.approx(stats.pearsonr(A[j], B[j]).statistic, abs=1e-13)
    assert np.isnan(r[3])
    assert spearman_brown(0.5, 3.0) == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))
    pairs = np.array([[0.2, 0.4, np.nan], [np.nan, np.nan, np.nan], [-0.1, -0.2, -0.3], [-0.6, -0.6, -0.6]])
    out = corrected_reliability(pairs, 3.0, 0.182)
    assert out[0] == pytest.approx(naive.spearman_brown(0.3))   # nanmedian of (0.2, 0.4)
    assert out[1] == 0.182                                       # all NaN -> floor
    assert out[2] == 0.182                                       # negative -> floor
    assert out[3] == pytest.approx(naive.spearman_brown(-0.6))   # rho < -0.5: no guard (study)


def test_splits_as_train_indices():
    X, Y = _make(9, V=3)
    masks = fastenc.seed_splits()[:3]
    a = fastenc.score_layer(X, Y, splits=masks)
    b = fastenc.score_layer(X, Y, splits=[np.flatnonzero(m) for m in masks])
    np.testing.assert_array_equal(a.r2_test_c, b.r2_test_c)
    with pytest.raises(ValueError, match="out of range"):
        fastenc.score_layer(X, Y, splits=[np.array([0, 1, 500])])


def _noise_case(seed=11, p=300, V=12):
    """Weak-signal voxels: many of their fits choose an alpha at the top of the grid."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((165, p)) + 3.0
    w = rng.standard_normal((p, V)) * np.linspace(0, 0.02, V)
    Y = (X @ w)[:, :, None] + rng.standard_normal((165, V, 3)) + 100.0  # large intercept
    return X, Y


@pytest.mark.parametrize("alpha", [1e49, 1e30, 1e20])
def test_top_of_grid_matches_solve_ridge(alpha):
    """At alphas far above the spectrum the centred prediction is ~1e-43 of the intercept at
    1e49: its correlation must still be the exact one (a plain solve, centred prediction)."""
    X, Y = _noise_case()
    s = fastenc.score_layer(X, Y, alphas=[alpha])
    for split in range(2):
        train, test = naive.study_splits()[split]
        Y4 = np.concatenate([Y.mean(2)[:, :, None], Y], axis=2)
        for v in range(Y.shape[1]):
            pred = naive.ridge_solve_centred_prediction(X[train], Y4[train, v, :], X[test], alpha)
            r = naive.pearson(pred[:, 0], Y4[test, v, 0])
            assert s.r_prior_zero[v, split] == pytest.approx(r, abs=1e-9), v
            pairs = [np.corrcoef(pred[:, 1 + a], pred[:, 1 + b])[0, 1] for a, b in ((0, 1), (1, 2), (0, 2))]
            rvh = max(naive.spearman_brown(np.median(pairs)), RV_HAT_FLOOR)
            assert s.rv_hat[v, split] == pytest.approx(rvh, abs=1e-9), v
    # the exact value is a real correlation, not 0: the intercept must not have erased it
    assert np.mean(s.r_prior_zero != 0) > 0.9


def test_top_of_grid_choice_gives_the_analytic_limit():
    """Targets whose brute-force LOO minimum is at the top of the grid: their test r is
    corr(Xc_test Xc_train^T yc, y_test), the same for every alpha of that run."""
    X, Y = _noise_case(seed=12, V=30)
    Ym = Y.mean(2)
    s = fastenc.score_layer(X, Y)
    train, test = naive.study_splits()[0]
    idx, _, _ = naive.brute_force_fit_predict(X[train], Ym[train], X[test], centred=True)
    lam_max = np.linalg.eigvalsh(np.cov(X[train], bias=True) * len(train)).max()
    top = np.flatnonzero(naive.STUDY_ALPHAS[idx] > 1e6 * lam_max)
    assert top.size >= 5, "the case should have targets whose LOO minimum is at the top of the grid"
    limit = naive.top_of_grid_limit(X[train], Ym[train], X[test])
    rs = []
    for v in top:
        r = naive.pearson(limit[:, v], Ym[test, v])
        rs.append(r)
        assert s.r_prior_zero[v, 0] == pytest.approx(r, abs=1e-9), v
        assert s.r_test[v, 0] == pytest.approx(max(r, 0.0), abs=1e-9), v
    assert np.max(np.abs(rs)) > 0.05  # real correlations, not zeros


# ------------------------------------------------------------------ test-set predictions
def _prediction_case(p, seed, repeated):
    """Targets from pure noise to strong signal, a large intercept, and features with an offset."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((165, p)) + 2.0
    gains = np.array([0.0, 0.05, 0.3, 1.0, 3.0, 20.0])
    sig = (X[:, :8] - 2.0) @ rng.standard_normal((8, gains.size)) * gains
    if repeated:
        return X, sig[:, :, None] + rng.standard_normal((165, gains.size, 3)) + 10.0
    return X, sig + rng.standard_normal((165, gains.size)) + 10.0


@pytest.mark.parametrize("p", [40, 300])  # fewer features than train sounds (primal solve), more (dual)
@pytest.mark.parametrize("repeated", [False, True])
def test_predictions_match_solve_ridge(p, repeated):
    """Each split's test predictions are those of a ridge fitted by a plain solve on the centred
    train data at the chosen alpha, plus the intercept (the mean-response target when repeated)."""
    X, Y = _prediction_case(p, seed=p + repeated, repeated=repeated)
    s = fastenc.score_layer(X, Y, return_predictions=True)
    Ym = Y.mean(axis=2) if repeated else Y
    assert s.predictions.shape == (Y.shape[1], 10, 165)
    for split, (train, test) in enumerate(naive.study_splits()):
        assert np.isnan(s.predictions[:, split, train]).all()
        for v in range(Y.shape[1]):
            ref = naive.ridge_solve_prediction(X[train], Ym[train, v], X[test], s.alpha[v, split])
            np.testing.assert_allclose(s.predictions[v, split, test], ref, rtol=0, atol=1e-9,
                                       err_msg=f"target {v}, split {split}")
            # the r of the stored scores is the r of these predictions (the intercept drops out)
            if not s.constant[v, split] and np.ptp(ref) > 1e-6:
                assert s.r_prior_zero[v, split] == pytest.approx(naive.pearson(ref, Ym[test, v]), abs=1e-8)
    assert len(np.unique(s.alpha)) > 3  # the case spans the alpha grid, not one end of it


def test_predictions_leave_the_scores_unchanged():
    """return_predictions adds a field and changes nothing else, bit for bit; no threads effect."""
    X, Y = _make(8, p=150, V=40)
    a = fastenc.score_layer(X, Y, block=16)
    b = fastenc.score_layer(X, Y, block=16, return_predictions=True, n_threads=1)
    c = fastenc.score_layer(X, Y, block=16, return_predictions=True, n_threads=2)
    assert a.predictions is None and "predictions" not in b.arrays()
    for k, A in a.arrays().items():
        np.testing.assert_array_equal(A, b.arrays()[k], err_msg=k)
    np.testing.assert_array_equal(b.predictions, c.predictions)


def test_predictions_of_omitted_targets_are_nan():
    X, Y = _make(9)
    Y[3, 2, 1] = np.nan
    s = fastenc.score_layer(X, Y, nan_policy="omit", return_predictions=True)
    ref = fastenc.score_layer(X, np.delete(Y, 2, axis=1), return_predictions=True)
    assert np.isnan(s.predictions[2]).all()
    np.testing.assert_array_equal(s.predictions[[0, 1, 3, 4, 5]], ref.predictions)
