"""ridge_cv and seed_splits against brute-force leave-one-out refits and METHOD constants."""
import numpy as np
import pytest

import fastenc
from fastenc.ridge import STUDY_ALPHAS

from . import naive

SPLIT0 = [2, 5, 7, 8, 10, 16, 18, 19, 22, 24, 26, 27, 30, 33, 37, 40, 43, 44, 45, 50, 51, 54, 55, 56,
          59, 60, 61, 62, 63, 64, 66, 69, 71, 73, 74, 80, 83, 86, 89, 90, 92, 93, 94, 95, 96, 97, 98,
          100, 101, 106, 107, 108, 109, 110, 111, 112, 113, 118, 119, 123, 125, 126, 130, 132, 133,
          134, 136, 137, 138, 144, 146, 147, 148, 149, 150, 151, 152, 154, 156, 158, 159, 162, 163]


def test_study_splits_constants():
    masks = fastenc.seed_splits()
    assert masks.shape == (10, 165) and masks.dtype == bool
    assert np.all(masks.sum(1) == 83)
    sums = [int(np.flatnonzero(m).sum()) for m in masks]
    assert sums == [7304, 7012, 6696, 7022, 6466, 6656, 7250, 6738, 6118, 6573]
    assert np.flatnonzero(masks[0]).tolist() == SPLIT0


def test_study_alphas():
    a = fastenc.study_alphas()
    assert a.size == 100 and a[0] == 1e49 and a[-1] == 1e-50 and np.all(np.diff(a) < 0)


def _data(kind, seed=0, n=83):
    rng = np.random.default_rng(seed)
    if kind == "p<n":
        X = rng.standard_normal((n, 20))
    elif kind == "p>n":
        X = rng.standard_normal((n, 400))
    elif kind == "rank-deficient":
        X = rng.standard_normal((n, 5)) @ rng.standard_normal((5, 300))
    elif kind == "duplicated":
        base = rng.standard_normal((n, 30))
        X = np.hstack([base, base, base[:, :7]])
    elif kind == "offset-scaled":
        X = 50.0 + 1e3 * rng.standard_normal((n, 200))
    else:
        raise ValueError(kind)
    w = rng.standard_normal((X.shape[1], 5)) / np.sqrt(X.shape[1])
    Xs = (X - X.mean(0)) / (X.std(0) + 1e-12)
    Y = Xs @ w * np.array([3, 1, 0.3, 0.1, 0.0]) + rng.standard_normal((n, 5)) + 4.0
    Y = np.column_stack([Y, np.full(n, 2.5), 4.0 + 1e-9 * rng.standard_normal(n)])  # constant, tiny variance
    return X, Y


@pytest.mark.parametrize("kind", ["p<n", "p>n", "rank-deficient", "duplicated", "offset-scaled"])
def test_ridge_cv_matches_brute_force_loo(kind):
    X, Y = _data(kind)
    fit = fastenc.ridge_cv(X, Y)
    Xnew = np.random.default_rng(9).standard_normal((11, X.shape[1])) * X.std() + X.mean()
    idx, pred_ref, excess = naive.brute_force_fit_predict(X, Y, Xnew)
    pred = fit.predict(Xnew)
    for t in range(Y.shape[1]):
        # the chosen alpha is LOO-optimal for the reference, to rounding of its LOO curve
        sse_inf = np.sum(((Y[:, t] - Y[:, t].mean()) * X.shape[0] / (X.shape[0] - 1)) ** 2)
        assert excess[fit.alpha_index_[t], t] - excess[idx[t], t] <= 1e-10 * max(sse_inf, 1e-300), t
        # and predicts what the reference's choice predicts
        # (up to a few ulps of the intercept, which both add to a signal 1e-9 of it for target 6)
        scale = max(np.abs(Y[:, t] - Y[:, t].mean()).max(), 1e-300)
        atol = 1e-8 * scale + 8 * np.finfo(float).eps * abs(Y[:, t].mean())
        np.testing.assert_allclose(pred[:, t], pred_ref[:, t], rtol=0, atol=atol, err_msg=f"target {t}")
        r, r_ref = naive.pearson(pred[:, t], Xnew[:, 0]), naive.pearson(pred_ref[:, t], Xnew[:, 0])
        assert r == pytest.approx(r_ref, abs=1e-8 if t != 6 else 1e-4)


def test_constant_target_takes_first_alpha():
    X, Y = _data("p>n")
    fit = fastenc.ridge_cv(X, Y)
    assert fit.alpha_index_[5] == 0 and fit.alpha_[5] == 1e49
    assert np.all(fit.predict(X)[:, 5] == 2.5)


def test_loo_mse_matches_brute_force():
    X, Y = _data("p>n", seed=2)
    alphas = np.logspace(4, -2, 13)
    fit = fastenc.ridge_cv(X, Y[:, :4], alphas=alphas)
    n = X.shape[0]
    sse = np.zeros((alphas.size, 4))
    for i in range(n):  # plain squared LOO error, refit by refit
        keep = np.arange(n) != i
        for a, (w, b) in enumerate(naive.ridge_fit_svd(X[keep], Y[keep, :4], alphas)):
            sse[a] += (Y[i, :4] - X[i] @ w - b) ** 2
    best = sse.argmin(0)
    np.testing.assert_array_equal(fit.alpha_index_, best)
    np.testing.assert_allclose(fit.loo_mse_, sse[best, range(4)] / n, rtol=1e-10)


def test_coef_and_dual_are_consistent():
    X, Y = _data("p<n", seed=3)
    fit = fastenc.ridge_cv(X, Y[:, :3], alphas=[10.0])
    ref = naive.ridge_fit_svd(X, Y[:, :3], [10.0])[0]
    np.testing.assert_allclose(fit.coef_, ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.intercept_ - X.mean(0) @ fit.coef_, ref[1], rtol=1e-10)


def test_single_target_and_float32():
    X, Y = _data("p>n", seed=4)
    f64 = fastenc.ridge_cv(X, Y[:, 0])
    assert np.ndim(f64.alpha_) == 0 and f64.predict(X[:3]).shape == (3,)
    f32 = fastenc.ridge_cv(X.astype(np.float32), Y[:, 0].astype(np.float32))
    np.testing.assert_allclose(f32.predict(X[:3]), f64.predict(X[:3]), rtol=1e-4)


def test_memory_cap_and_threads_do_not_change_results():
    X, Y = _data("p>n", seed=5)
    Y = np.tile(Y, (1, 40))
    a = fastenc.ridge_cv(X, Y, block=32)
    b = fastenc.ridge_cv(X, Y, block=32, max_memory_mb=0.05, n_threads=1)
    np.testing.assert_array_equal(a.alpha_index_, b.alpha_index_)
    np.testing.assert_array_equal(a.dual_coef_, b.dual_coef_)


@pytest.mark.parametrize("X, Y, match", [
    (np.ones((10, 3)), np.ones(9), "rows"),
    (np.full((10, 3), np.nan), np.ones(10), "NaN"),
    (np.ones((10, 3)), np.full(10, np.inf), "NaN or inf"),
    (np.ones(10), np.ones(10), "2-D"),
    (np.ones((2, 3)), np.ones(2), "at least 3"),
])
def test_bad_input(X, Y, match):
    with pytest.raises(ValueError, match=match):
        fastenc.ridge_cv(X, Y)


def test_bad_alpha_grid():
    X, Y = _data("p<n")
    for bad in ([], [1.0, -1.0], [np.inf], np.ones((2, 2))):
        with pytest.raises(ValueError, match="alphas"):
            fastenc.ridge_cv(X, Y, alphas=bad)


def test_unsorted_grid_first_wins():
    X, Y = _data("p>n", seed=6)
    grid = np.array([1e3, 1e1, 1e3, 1e2])  # duplicate alpha: the first copy must win
    fit = fastenc.ridge_cv(X, Y[:, :4], alphas=grid)
    assert not np.any(fit.alpha_index_ == 2)
