"""RidgeLOOCV: scikit-learn's estimator checks, agreement with ridge_cv, and first-principles refs."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastenc  # noqa: E402
from fastenc import RidgeLOOCV  # noqa: E402

GRID = 10.0 ** np.arange(3, -4, -1.0)  # 1e3 ... 1e-3


@parametrize_with_checks([RidgeLOOCV()])
def test_sklearn_checks(estimator, check):
    check(estimator)


def _problem(n=40, p=6, seed=0, snr=(3.0, 1.0, 0.3, 0.05)):
    """Well-conditioned X with an offset; targets of decreasing signal-to-noise ratio."""
    rng = np.random.default_rng(seed)
    X = 2.0 + rng.standard_normal((n, p))
    W = rng.standard_normal((p, len(snr))) / np.sqrt(p)
    Y = (X - 2.0) @ W * np.asarray(snr) + rng.standard_normal((n, len(snr))) + 5.0
    return X, Y


def _solve_ridge(X, y, alpha):
    """Ridge with an unpenalised intercept: centre, solve (Xc'Xc + aI) w = Xc'yc, b = ym - xm.w."""
    xm, ym = X.mean(0), y.mean(0)
    Xc = X - xm
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - ym))
    return w, ym - xm @ w


def _brute_loo_mse(X, y, alpha):
    """Mean squared error of explicit leave-one-out refits."""
    err = []
    for i in range(X.shape[0]):
        keep = np.arange(X.shape[0]) != i
        w, b = _solve_ridge(X[keep], y[keep], alpha)
        err.append((y[i] - (X[i] @ w + b)) ** 2)
    return np.mean(err)


def test_import_fastenc_does_not_import_sklearn():
    # One subprocess: importing fastenc leaves scikit-learn unloaded; then, with
    # scikit-learn made unimportable, fastenc.RidgeLOOCV says how to get it.
    code = ("import sys, fastenc\n"
            "assert 'sklearn' not in sys.modules, 'import fastenc loaded sklearn'\n"
            "sys.modules['sklearn'] = None\n"
            "try:\n    fastenc.RidgeLOOCV\n"
            "except ImportError as e:\n    assert 'pip install scikit-learn' in str(e), e\n"
            "else:\n    raise SystemExit('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_same_as_ridge_cv_exactly():
    X, Y = _problem(n=30, p=50)  # p > n
    Xnew = np.random.default_rng(1).standard_normal((7, 50))
    ref = fastenc.ridge_cv(X, Y, alphas=GRID)
    est = RidgeLOOCV(alphas=GRID).fit(X, Y)
    assert np.array_equal(est.alpha_, ref.alpha_)
    assert np.array_equal(est.predict(Xnew), ref.predict(Xnew))
    assert np.array_equal(est.coef_, ref.coef_.T)
    assert np.array_equal(est.dual_coef_, ref.dual_coef_)
    assert np.array_equal(est.loo_mse_, ref.loo_mse_) and np.array_equal(est.best_score_, -ref.loo_mse_)
    # default grid is the study's
    ref = fastenc.ridge_cv(X, Y[:, 0])
    est = RidgeLOOCV().fit(X, Y[:, 0])
    assert isinstance(est.alpha_, float) and est.alpha_ == ref.alpha_
    assert np.array_equal(est.predict(Xnew), ref.predict(Xnew))


@pytest.mark.parametrize("two_d", [True, False])
def test_against_solve_and_brute_force_loo(two_d):
    X, Y = _problem()
    Xnew = np.random.default_rng(2).standard_normal((5, X.shape[1])) + 2.0
    est = RidgeLOOCV(alphas=GRID).fit(X, Y if two_d else Y[:, 1])
    alphas = np.atleast_1d(est.alpha_)
    coef = est.coef_ if two_d else est.coef_[None, :]
    intercept = np.atleast_1d(est.intercept_)
    pred = est.predict(Xnew).reshape(len(Xnew), -1)
    for t in range(alphas.size):
        y = Y[:, t] if two_d else Y[:, 1]
        loo = [_brute_loo_mse(X, y, a) for a in GRID]
        assert alphas[t] == GRID[int(np.argmin(loo))]
        assert np.isclose(np.atleast_1d(est.loo_mse_)[t], min(loo), rtol=1e-10)
        w, b = _solve_ridge(X, y, alphas[t])
        np.testing.assert_allclose(coef[t], w, rtol=1e-8, atol=1e-12 * np.abs(w).max())
        np.testing.assert_allclose(intercept[t], b, rtol=1e-8)
        np.testing.assert_allclose(pred[:, t], Xnew @ w + b, rtol=1e-8)
        np.testing.assert_allclose(est.predict(X).reshape(len(X), -1)[:, t], X @ coef[t] + intercept[t], rtol=1e-10)
    if two_d:  # the four targets do not all land on the same alpha
        assert np.unique(alphas).size > 1


def test_alpha_is_per_target():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((50, 8))
    signal = X @ rng.standard_normal(8)
    Y = np.column_stack([signal + 0.05 * rng.standard_normal(50), rng.standard_normal(50)])
    est = RidgeLOOCV(alphas=GRID).fit(X, Y)
    assert est.alpha_.shape == (2,)
    assert est.alpha_[0] <= 1e-1 and est.alpha_[1] >= 1e2  # clean signal vs pure noise
    # each column fitted alone gives the same alpha and weights
    for t in range(2):
        one = RidgeLOOCV(alphas=GRID).fit(X, Y[:, t])
        assert one.alpha_ == est.alpha_[t]
        np.testing.assert_allclose(one.coef_, est.coef_[t], rtol=1e-12, atol=1e-15)
        assert one.coef_.shape == (8,) and np.ndim(one.intercept_) == 0


def test_attributes_and_refit():
    X, Y = _problem()
    assert not hasattr(RidgeLOOCV(), "coef_")  # lazy weights: NotFittedError is an AttributeError
    est = RidgeLOOCV(alphas=GRID).fit(X, Y)
    assert est.coef_.shape == (4, 6) and est.intercept_.shape == (4,) and est.dual_coef_.shape == (40, 4)
    assert est.n_features_in_ == 6 and not hasattr(est, "feature_names_in_")
    first = est.coef_.copy()
    est.fit(X[:, :3], Y[:, 0])  # the lazily kept weights belong to the latest fit
    assert est.coef_.shape == (3,) and est.n_features_in_ == 3
    assert not np.array_equal(first[0, :3], est.coef_)
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.predict(X[:, :3]), est.predict(X[:, :3]))
    with pytest.raises(ValueError, match="alphas"):
        RidgeLOOCV(alphas=[1.0, -1.0]).fit(X, Y)
    with pytest.raises(ValueError, match="minimum of 3"):
        RidgeLOOCV().fit(X[:2], Y[:2])


def test_dataframe_feature_names():
    pd = pytest.importorskip("pandas")
    X, Y = _problem()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = RidgeLOOCV(alphas=GRID).fit(df, Y[:, 0])
    assert est.feature_names_in_.tolist() == list(df.columns)
    # a DataFrame arrives Fortran-ordered: same result up to BLAS rounding
    np.testing.assert_allclose(est.predict(df), RidgeLOOCV(alphas=GRID).fit(X, Y[:, 0]).predict(X), rtol=1e-12)


def test_cross_val_score_pipeline_and_grid_search():
    X, Y = _problem(n=60)
    y = Y[:, 0]
    cv = KFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(RidgeLOOCV(alphas=GRID), X, y, cv=cv)
    manual = []
    for tr, te in cv.split(X):
        w, b = _solve_ridge(X[tr], y[tr], RidgeLOOCV(alphas=GRID).fit(X[tr], y[tr]).alpha_)
        resid = y[te] - (X[te] @ w + b)
        manual.append(1 - resid @ resid / np.sum((y[te] - y[te].mean()) ** 2))
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, manual, rtol=1e-8)

    pipe = make_pipeline(StandardScaler(), RidgeLOOCV(alphas=GRID)).fit(X, Y)
    Xs = StandardScaler().fit_transform(X)
    assert np.array_equal(pipe[-1].alpha_, fastenc.ridge_cv(Xs, Y, alphas=GRID).alpha_)
    np.testing.assert_allclose(pipe.predict(X), fastenc.ridge_cv(Xs, Y, alphas=GRID).predict(Xs), rtol=1e-12)

    grids = [GRID[:3], GRID[3:]]
    gs = GridSearchCV(RidgeLOOCV(), {"alphas": grids}, cv=cv).fit(X, y)
    means = [cross_val_score(RidgeLOOCV(alphas=g), X, y, cv=cv).mean() for g in grids]
    assert gs.best_params_["alphas"] is grids[int(np.argmax(means))]
    np.testing.assert_allclose(gs.best_score_, max(means), rtol=1e-12)


def test_n_threads_does_not_change_results():
    X, Y = _problem(n=30, p=50)
    a = RidgeLOOCV(alphas=GRID, n_threads=1).fit(X, Y)
    b = RidgeLOOCV(alphas=GRID, n_threads=2).fit(X, Y)
    assert np.array_equal(a.alpha_, b.alpha_) and np.array_equal(a.predict(X), b.predict(X))
