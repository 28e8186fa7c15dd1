"""Slow, obvious reference implementations, written straight from docs/method.md.

Nothing here imports fastenc: these are the independent references the tests compare with.
"""
from __future__ import annotations

import numpy as np

STUDY_ALPHAS = 10.0 ** np.arange(49, -51, -1, dtype=np.float64)


def study_splits(n_stimuli=165, n_train=83, n_splits=10, seed=0):
    """docs/method.md §2, written out: list of (train indices, test indices)."""
    rs = np.random.RandomState(seed)
    out = []
    for _ in range(n_splits):
        train = rs.permutation(n_stimuli)[:n_train]
        rs.permutation(n_stimuli - n_train)
        test = np.setdiff1d(np.arange(n_stimuli), train)
        out.append((np.sort(train), test))
    return out


def ridge_fit_svd(X, y, alphas):
    """Ridge with an unpenalised intercept, refit from scratch via the SVD of centred X.

    Returns for each alpha the weights (p, targets) and intercepts. Singular values below
    ``max(n, p) * eps * s_max`` are treated as 0 (as a pseudo-inverse would).
    """
    xm = X.mean(0)
    ym = y.mean(0)
    Xc = X - xm
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    keep = s > max(Xc.shape) * np.finfo(float).eps * (s[0] if s.size else 0)
    U, s, Vt = U[:, keep], s[keep], Vt[keep]
    Uty = U.T @ (y - ym)
    out = []
    for a in alphas:
        w = Vt.T @ ((s / (s ** 2 + a))[:, None] * Uty)
        out.append((w, ym - xm @ w))
    return out


def brute_force_loo(X, y, alphas=STUDY_ALPHAS):
    """LOO squared error per alpha and target by refitting on n-1 samples (n refits).

    Returned as the *excess* over the intercept-only LOO error (alpha -> infinity), summed
    over samples: with ``r_i = y_i - mean(y_-i)`` and ``s_i`` the ridge part of the
    prediction of sample i, the squared residual is ``(r_i - s_i)**2`` and its excess is
    ``s_i * (s_i - 2 r_i)``. Written this way, the near-flat top of the LOO curve (where
    ``s`` is 1e-30 of ``r``) is resolved instead of being decided by rounding noise.

    Returns excess sse (n_alphas, targets).
    """
    n = X.shape[0]
    y = y.reshape(n, -1)
    sse = np.zeros((len(alphas), y.shape[1]))
    for i in range(n):
        keep = np.arange(n) != i
        xm = X[keep].mean(0)
        fits = ridge_fit_svd(X[keep], y[keep], alphas)
        r = y[i] - y[keep].mean(0)
        for a, (w, _) in enumerate(fits):
            s_i = (X[i] - xm) @ w
            sse[a] += s_i * (s_i - 2 * r)
    return sse


def first_argmin(values):
    """Index of the minimum, first one among exact ties (grid order)."""
    return int(np.flatnonzero(values == values.min())[0])


def pearson(a, b):
    """Pearson r with 0 for a constant input (the study's rule for a constant prediction)."""
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return 0.0 if den == 0 else float((a @ b) / den)


def spearman_brown(rho, n=3):
    return n * rho / (1 + (n - 1) * rho)


def brute_force_fit_predict(X_train, y_train, X_test, alphas=STUDY_ALPHAS, centred=False):
    """Choose alpha per target by brute-force LOO, refit on all train rows, predict test.

    With ``centred=True`` the predictions are the fitted part only,
    ``(X_test - mean(X_train)) @ w``, without the intercept: what is correlated with the test
    data (adding the intercept first would erase a fitted part ~1e-43 of it at alpha = 1e49).

    Returns (alpha index per target, predictions (n_test, targets), excess LOO sse).
    """
    y_train = y_train.reshape(X_train.shape[0], -1)
    sse = brute_force_loo(X_train, y_train, alphas)
    idx = np.array([first_argmin(sse[:, t]) for t in range(y_train.shape[1])])
    fits = ridge_fit_svd(X_train, y_train, alphas)
    if centred:
        Xte = X_test - X_train.mean(0)
        pred = np.column_stack([Xte @ fits[a][0][:, t] for t, a in enumerate(idx)])
    else:
        pred = np.column_stack([X_test @ fits[a][0][:, t] + fits[a][1][t] for t, a in enumerate(idx)])
    return idx, pred, sse


def ridge_solve_centred_prediction(X_train, y_train, X_test, alpha):
    """Centred test prediction of a ridge with unpenalised intercept, by a plain solve.

    Dual form: ``Xc_test Xc^T (Xc Xc^T + alpha I)^-1 yc`` with train-mean centring; no
    eigendecomposition, no grid, no shortcut.
    """
    xm = X_train.mean(0)
    Xc = X_train - xm
    yc = y_train - y_train.mean(0)
    dual = np.linalg.solve(Xc @ Xc.T + alpha * np.eye(Xc.shape[0]), yc)
    return (X_test - xm) @ (Xc.T @ dual)


def ridge_solve_prediction(X_train, y_train, X_test, alpha):
    """Test prediction of a ridge with unpenalised intercept at one alpha, by a plain solve.

    Centre X and y with the train means, solve the penalised normal equations for the weights
    (``(Xc^T Xc + alpha I) w = Xc^T yc`` when there are fewer features than train rows, else the
    same fit in its dual form ``w = Xc^T (Xc Xc^T + alpha I)^-1 yc``), then predict
    ``mean(y_train) + (X_test - mean(X_train)) @ w``: intercept included, as a fitted
    scikit-learn ``Ridge`` predicts. ``y_train``: (n,) or (n, targets).
    """
    xm = X_train.mean(0)
    ym = y_train.mean(0)
    Xc = X_train - xm
    yc = y_train - ym
    n, p = Xc.shape
    if p < n:
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(p), Xc.T @ yc)
    else:
        w = Xc.T @ np.linalg.solve(Xc @ Xc.T + alpha * np.eye(n), yc)
    return ym + (X_test - xm) @ w


def top_of_grid_limit(X_train, y_train, X_test):
    """The alpha -> infinity direction of the centred prediction, ``Xc_test Xc_train^T yc``.

    The centred prediction is this divided by alpha to first order, so its test Pearson r is
    the exact test r of every alpha far above the spectrum.
    """
    xm = X_train.mean(0)
    return (X_test - xm) @ ((X_train - xm).T @ (y_train - y_train.mean(0)))


def critical_r_bisect(n, p=0.05):
    """One-tailed p < .05 critical Pearson r for n pairs, by bisection on scipy's t survival
    function: the r whose t statistic r sqrt((n-2)/(1-r^2)) has upper tail probability p."""
    from scipy import stats
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        tval = mid * np.sqrt((n - 2) / (1 - mid * mid))
        if stats.t.sf(tval, n - 2) > p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def score_voxel_split(X, Yrep, train, test, alphas=STUDY_ALPHAS, floors=(0.182, 0.183)):
    """docs/method.md §4 for one voxel and one split, by brute force.

    Yrep: (n_stimuli, k) repetitions, k >= 2 (the study: 3). Reliabilities from all
    repetition pairs, Spearman-Brown to k, floored at ``floors`` (train, test).
    Returns dict of r_test, r2_test, r2_test_c, alpha, rv, rv_hat.
    """
    k = Yrep.shape[1]
    Y4 = np.column_stack([Yrep.mean(1), Yrep])
    idx, pred, _ = brute_force_fit_predict(X[train], Y4[train], X[test], alphas, centred=True)
    r = pearson(pred[:, 0], Y4[test, 0])
    r_pos = max(r, 0.0)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    with np.errstate(invalid="ignore", divide="ignore"):
        rv_pairs = [np.corrcoef(Yrep[train, a], Yrep[train, b])[0, 1] for a, b in pairs]
        rvh_pairs = [np.corrcoef(pred[:, 1 + a], pred[:, 1 + b])[0, 1] for a, b in pairs]
    # np.nanmedian warns and gives NaN when all pairs are NaN; NaN -> the floor
    rv = spearman_brown(np.nanmedian(rv_pairs), k) if not np.all(np.isnan(rv_pairs)) else np.nan
    rvh = spearman_brown(np.nanmedian(rvh_pairs), k) if not np.all(np.isnan(rvh_pairs)) else np.nan
    rv = floors[0] if np.isnan(rv) else max(rv, floors[0])
    rvh = floors[1] if np.isnan(rvh) else max(rvh, floors[1])
    return dict(r_test=r_pos, r_prior_zero=r, r2_test=r_pos ** 2,
                r2_test_c=r_pos ** 2 / (rv * rvh), alpha=alphas[idx[0]], rv=rv, rv_hat=rvh)
