"""Peer implementations of the same work as ``fastenc.score_layer`` (docs/method.md §3–§4, §8).

Per voxel and split the study fits 4 ridge regressions (mean of the 3 repetitions, and each
repetition), alpha chosen per target by exact leave-one-out on the 83 train sounds over the
grid 10**49 ... 10**-50, and predicts the 82 test sounds. The peers:

(a) :func:`sklearn_per_fit`     scikit-learn ``RidgeCV(alpha_per_target=False)``, one fit per
                                target, as the study ran it;
(b) :func:`sklearn_per_target`  scikit-learn ``RidgeCV(alpha_per_target=True)`` on all targets
                                of a split at once;
(c) :func:`himalaya_ridge`      himalaya ``RidgeCV`` (numpy backend, its default 5-fold cv,
                                per-target alpha), all targets of a split at once;
(c') :func:`himalaya_kernel_ridge`  himalaya ``KernelRidgeCV(kernel="linear")``, same cv, the
                                route himalaya recommends for n_samples < n_features;
(d) :func:`numpy_score_layer`   a plain numpy batched exact-LOO in the 83-dim sample space,
                                the obvious vectorised approach; it does the whole scoring
                                (incl. noise correction) and returns the same arrays as
                                ``fastenc.score_layer``, so it doubles as a cross-check.

(a)–(c) do fit + test prediction only (the correlations of the noise correction are a few
milliseconds per split and are the same code for every method).
"""
from __future__ import annotations

import warnings

import numpy as np

STUDY_ALPHAS = 10.0 ** np.arange(49, -51, -1, dtype=np.float64)

RV_FLOOR = 0.182
RV_HAT_FLOOR = 0.183


def study_splits(n_splits=10):
    """The study's (train, test) index arrays (docs/method.md §2), written out independently."""
    rs = np.random.RandomState(0)
    out = []
    for _ in range(n_splits):
        train = rs.permutation(165)[:83]
        rs.permutation(82)
        out.append((np.sort(train), np.setdiff1d(np.arange(165), train)))
    return out


def stack_targets(Y):
    """(stimuli, voxels, 3) → (stimuli, 4*voxels): per voxel [mean, rep0, rep1, rep2]."""
    Y = np.asarray(Y, dtype=np.float64)
    return np.concatenate([Y.mean(axis=2)[:, :, None], Y], axis=2).reshape(Y.shape[0], -1)


# ---------------------------------------------------------------------------------------
# (a) scikit-learn, one RidgeCV per target (the study)
# ---------------------------------------------------------------------------------------
def sklearn_per_fit(X, Y4, jobs, splits, alphas=STUDY_ALPHAS):
    """Run ``RidgeCV(alpha_per_target=False)`` once per (target column, split) in ``jobs``.

    ``jobs`` is a list of (target column of ``Y4``, split index). Returns the predictions.
    """
    from sklearn.linear_model import RidgeCV

    X = np.asarray(X, dtype=np.float64)
    out = []
    for t, s in jobs:
        train, test = splits[s]
        m = RidgeCV(alphas=alphas, alpha_per_target=False).fit(X[train], Y4[train, t])
        out.append(m.predict(X[test]))
    return out


# ---------------------------------------------------------------------------------------
# (b) scikit-learn, all targets of a split at once, alpha per target
# ---------------------------------------------------------------------------------------
def sklearn_per_target(X, Y4, split, alphas=STUDY_ALPHAS):
    """One split, all columns of ``Y4``: ``RidgeCV(alpha_per_target=True)`` fit + predict."""
    from sklearn.linear_model import RidgeCV

    X = np.asarray(X, dtype=np.float64)
    train, test = split
    m = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X[train], Y4[train])
    return m.predict(X[test])


# ---------------------------------------------------------------------------------------
# (c) himalaya
# ---------------------------------------------------------------------------------------
def himalaya_ridge(X, Y4, split, alphas=STUDY_ALPHAS):
    """One split, all columns of ``Y4``: himalaya ``RidgeCV`` (numpy backend, default cv=5)."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    set_backend("numpy", on_error="raise")
    X = np.asarray(X, dtype=np.float64)
    train, test = split
    m = RidgeCV(alphas=alphas, fit_intercept=True, solver_params=dict(warn=False)).fit(X[train], Y4[train])
    return np.asarray(m.predict(X[test]))


def himalaya_kernel_ridge(X, Y4, split, alphas=STUDY_ALPHAS):
    """One split, all columns of ``Y4``: himalaya ``KernelRidgeCV(kernel="linear")`` (numpy, cv=5).

    Not in the brief's list, but what himalaya itself recommends when n_samples < n_features
    (its RidgeCV warns so): the same model solved in the sample space.
    """
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV

    set_backend("numpy", on_error="raise")
    X = np.asarray(X, dtype=np.float64)
    train, test = split
    m = KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True).fit(X[train], Y4[train])
    return np.asarray(m.predict(X[test]))


# ---------------------------------------------------------------------------------------
# (d) plain numpy batched exact LOO in the sample space
# ---------------------------------------------------------------------------------------
def complement_basis(n):
    """Orthonormal basis (n, n-1) of the complement of the constant vector (via QR)."""
    A = np.eye(n)
    A[:, 0] = 1.0
    Qf, _ = np.linalg.qr(A)
    return Qf[:, 1:]


def numpy_loo_split(X, Y, train, test, alphas=STUDY_ALPHAS, chunk=8192, return_lam_max=False):
    """Exact-LOO ridge for all columns of ``Y`` on one split; returns (alpha index, test predictions).

    ``chunk`` bounds the targets handled at once (memory: a few (83, chunk) float64 arrays).
    With ``return_lam_max`` the largest eigenvalue of the centred train Gram is returned too.

    Centre with the train means; K = Xc Xc^T (83 x 83); restrict K to the complement of the
    constant vector (which belongs to the unpenalised intercept, docs/method.md §3) and
    eigendecompose it: K = Q diag(lam) Q^T with Q (n, n-1) orthogonal to 1. Then
    I - H = Q diag(alpha / (lam + alpha)) Q^T, so with Z = Q^T y the LOO residuals are
    e = Q (d * Z) / diag(I - H), d = alpha / (lam + alpha): one (n x m) @ (m x targets)
    product per alpha. The first alpha in grid order wins ties (strict ``<``).
    """
    X = np.asarray(X, dtype=np.float64)
    Xtr = X[train]
    xm = Xtr.mean(axis=0)
    Xc = Xtr - xm
    n = Xc.shape[0]
    B = complement_basis(n)
    K = Xc @ Xc.T
    lam, U = np.linalg.eigh(B.T @ K @ B)
    lam = np.where(lam > n * np.finfo(float).eps * lam.max(), lam, 0.0)  # numerical null space
    Q = B @ U                                   # (n, m)
    P = (X[test] - xm) @ Xc.T @ Q               # (n_test, m): test predictions = P @ (Z / (lam + a))
    Q2 = Q ** 2
    T = Y.shape[1]
    best_idx = np.zeros(T, dtype=np.int64)
    pred = np.empty((len(test), T))
    for c0 in range(0, T, chunk):
        c1 = min(c0 + chunk, T)
        Ytr = Y[train, c0:c1]
        ybar = Ytr.mean(axis=0)
        Z = Q.T @ (Ytr - ybar)                  # (m, targets)
        best = np.full(c1 - c0, np.inf)
        bidx = np.zeros(c1 - c0, dtype=np.int64)
        for a_i, a in enumerate(alphas):
            d = a / (lam + a)                   # (m,)
            diag = Q2 @ d                       # diag(I - H), (n,)
            E = (Q @ (d[:, None] * Z)) / diag[:, None]
            sse = np.einsum("ij,ij->j", E, E)
            better = sse < best
            best[better] = sse[better]
            bidx[better] = a_i
        inv = np.where(lam[:, None] > 0, 1.0 / (lam[:, None] + alphas[bidx][None, :]), 0.0)
        pred[:, c0:c1] = P @ (inv * Z)          # centred prediction (the fitted part)
        best_idx[c0:c1] = bidx
    if return_lam_max:
        return best_idx, pred, float(lam.max())
    return best_idx, pred


def pearson_cols(A, B):
    """Column-wise Pearson r (NaN where a column is constant)."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    num = np.einsum("ij,ij->j", A, B)
    den = np.sqrt(np.einsum("ij,ij->j", A, A) * np.einsum("ij,ij->j", B, B))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def corrected(pairs, floor, n_reps=3):
    """max(SB(nanmedian over pairs), floor); NaN → floor (docs/method.md §4)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: handled below
        med = np.nanmedian(pairs, axis=1)
        sb = n_reps * med / (1.0 + (n_reps - 1.0) * med)
    return np.where(np.isnan(sb), floor, np.maximum(sb, floor))


def numpy_score_layer(X, Y, n_splits=10, alphas=STUDY_ALPHAS, chunk=8192):
    """docs/method.md §3–§4 for one layer with :func:`numpy_loo_split`; arrays (voxels, splits).

    Returns a dict with the arrays of ``fastenc.LayerScores`` (r_test, r_prior_zero, r2_test,
    r2_test_c, alpha, alpha_index, rv, rv_hat), plus ``alpha_index_all`` (voxels, 4, splits:
    the chosen alpha of the mean and of each repetition fit) and ``lam_max`` (splits,).

    Where the LOO curve is flat to rounding at the top of the grid (pure-noise targets,
    alpha >> lam_max), the plain ``sse`` comparison picks an arbitrary alpha of the flat run
    (often 1e20 or so instead of 1e49). The test r does not depend on that choice: the
    centred prediction is ``Xc_test Xc^T yc / alpha`` to first order for every alpha of that
    run, so its correlation is the same to rounding (docs/method.md §3: correlate the centred
    prediction, never the intercept plus a vanishing fitted part).
    """
    V, R = Y.shape[1], Y.shape[2]
    Y4 = stack_targets(Y)
    pairs = [(0, 1), (1, 2), (0, 2)]
    r_raw = np.zeros((V, n_splits))
    a_all = np.zeros((V, R + 1, n_splits), dtype=np.int64)
    lam_max = np.zeros(n_splits)
    rv = np.zeros((V, n_splits))
    rvh = np.zeros((V, n_splits))
    for s, (train, test) in enumerate(study_splits(n_splits)):
        idx, pred, lam_max[s] = numpy_loo_split(X, Y4, train, test, alphas, chunk=chunk, return_lam_max=True)
        P = pred.reshape(len(test), V, R + 1)
        Yte = Y4[test].reshape(len(test), V, R + 1)
        r_raw[:, s] = np.nan_to_num(pearson_cols(P[:, :, 0], Yte[:, :, 0]), nan=0.0)
        a_all[:, :, s] = idx.reshape(V, R + 1)
        Ytr = Y[train]
        rv[:, s] = corrected(np.column_stack([pearson_cols(Ytr[:, :, a], Ytr[:, :, b]) for a, b in pairs]), RV_FLOOR)
        rvh[:, s] = corrected(np.column_stack([pearson_cols(P[:, :, 1 + a], P[:, :, 1 + b]) for a, b in pairs]),
                              RV_HAT_FLOOR)
    r = np.maximum(r_raw, 0.0)
    a_idx = a_all[:, 0, :]
    return dict(r_test=r, r_prior_zero=r_raw, r2_test=r ** 2, r2_test_c=r ** 2 / (rv * rvh),
                alpha_index=a_idx, alpha=alphas[a_idx], rv=rv, rv_hat=rvh,
                alpha_index_all=a_all, lam_max=lam_max)
