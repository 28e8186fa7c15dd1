"""Numba kernels for representational similarity analysis (docs/method.md §6).

Building blocks, each a small ``@njit(cache=True)`` function:

* :func:`zscore_stats` — per-feature mean and inverse scale from a set of train rows
  (population std; a zero-variance feature gets scale 1, i.e. it is only centred);
* :func:`corr_rows` — apply those statistics to a set of rows, then centre each row
  across features and scale it to unit norm, so that ``W @ W.T`` is the Pearson
  correlation between the rows (an RSM). A row that is constant after z-scoring is
  flagged (its correlations are NaN);
* :func:`rsm_rows` — the RSM of some rows with other rows' statistics (one BLAS call);
* :func:`split_triangles` — standardized triangles of train and test RSMs for all
  splits of one layer or participant, one parallel region, one split per iteration;
* :func:`upper_std` — strict upper triangles of many square matrices, optionally
  replaced by their average ranks, centred and scaled to unit norm, so that the
  Spearman (Pearson) correlation between matrices is a dot product of these rows;
* :func:`sym_ranks2`, :func:`perm_dot_int`, :func:`perm_dot` — permutation tests: the
  fixed matrix's (rank) triangle against the other matrix's, gathered at permuted rows
  and columns. Spearman runs on exact integers (twice the average ranks);
* :func:`boot_sounds` — Spearman/Pearson on bootstrap resamples of sounds.

All parallel loops write one output slot per iteration and reduce in a fixed order
inside the iteration, so results do not depend on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "zscore_stats",
    "corr_rows",
    "rsm_rows",
    "split_triangles",
    "rank_average",
    "upper_std",
    "full_std",
    "sym_ranks2",
    "perm_dot_int",
    "perm_dot",
    "boot_sounds",
]

_EPS = np.finfo(np.float64).eps


@njit(cache=True, error_model="numpy")
def zscore_stats(X, rows):
    """Mean and inverse population std of each column of ``X[rows]``.

    A column whose variance is within rounding of zero (the rule of scikit-learn's
    ``StandardScaler``: ``var <= n*eps*var + (n*mean*eps)**2``) gets inverse scale 1,
    i.e. it is only centred.

    Parameters
    ----------
    X : (n, p) float array (float32 or float64)
    rows : (k,) int64 row indices (k >= 1)

    Returns
    -------
    mu : (p,) float64, inv_sd : (p,) float64

    Examples
    --------
    >>> import numpy as np
    >>> mu, inv = zscore_stats(np.array([[1., 5.], [3., 5.]]), np.array([0, 1]))
    >>> mu.tolist(), inv.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """
    p = X.shape[1]
    k = rows.shape[0]
    mu = np.zeros(p)
    acc = np.zeros(p)
    inv = np.ones(p)
    for r in range(k):
        i = rows[r]
        for j in range(p):
            mu[j] += X[i, j]
    for j in range(p):
        mu[j] /= k
    for r in range(k):
        i = rows[r]
        for j in range(p):
            d = X[i, j] - mu[j]
            acc[j] += d * d
    for j in range(p):
        var = acc[j] / k
        bound = k * _EPS * var + (k * mu[j] * _EPS) ** 2
        if var > bound:
            inv[j] = 1.0 / np.sqrt(var)
    return mu, inv


@njit(cache=True, error_model="numpy")
def corr_rows(X, rows, mu, inv_sd, W, ok):
    """Z-score ``X[rows]`` with ``(mu, inv_sd)``, then centre and unit-normalise each row.

    ``W[r] @ W[s]`` is then the Pearson correlation (across features) between the
    z-scored sounds ``rows[r]`` and ``rows[s]``. A row that is constant after
    z-scoring is written as zeros and flagged ``ok[r] = False``.

    Parameters
    ----------
    X : (n, p) float array
    rows : (k,) int64
    mu, inv_sd : (p,) float64, from :func:`zscore_stats`
    W : (k, p) float64, output
    ok : (k,) bool, output
    """
    k = rows.shape[0]
    p = X.shape[1]
    for r in range(k):
        i = rows[r]
        s = 0.0
        for j in range(p):
            z = (X[i, j] - mu[j]) * inv_sd[j]
            W[r, j] = z
            s += z
        m = s / p
        ss = 0.0
        for j in range(p):
            d = W[r, j] - m
            W[r, j] = d
            ss += d * d
        if ss > 0.0 and np.isfinite(ss):
            f = 1.0 / np.sqrt(ss)
            for j in range(p):
                W[r, j] *= f
            ok[r] = True
        else:
            for j in range(p):
                W[r, j] = 0.0
            ok[r] = False


@njit(cache=True, error_model="numpy")
def rsm_rows(X, train_rows, eval_rows):
    """RSM over ``X[eval_rows]`` z-scored with the statistics of ``X[train_rows]``.

    Rows constant after z-scoring give NaN rows and columns; unit diagonal otherwise;
    values clipped to [-1, 1]. The product ``W @ W.T`` is one BLAS call.
    """
    mu, inv = zscore_stats(X, train_rows)
    k = eval_rows.shape[0]
    W = np.empty((k, X.shape[1]))
    ok = np.empty(k, dtype=np.bool_)
    corr_rows(X, eval_rows, mu, inv, W, ok)
    R = np.dot(W, W.T)
    for i in range(k):
        for j in range(k):
            if not (ok[i] and ok[j]):
                R[i, j] = np.nan
            elif i == j:
                R[i, j] = 1.0
            else:
                R[i, j] = min(1.0, max(-1.0, R[i, j]))
    return R


@njit(parallel=True, cache=True, error_model="numpy")
def split_triangles(X, tr_rows, n_tr, te_rows, n_te, ranks, keep_test):
    """Standardized (rank) triangles of the train and test RSMs of X for many splits.

    One parallel region per call, one split per iteration (all work of a split is
    serial inside its iteration, BLAS included), so results do not depend on the
    thread count and small parallel regions do not pile up.

    Parameters
    ----------
    X : (n, p) float array, finite
    tr_rows, te_rows : (S, n) int64
        Train / test sound indices of split s in ``[s, :n_tr[s]]`` / ``[s, :n_te[s]]``.
    n_tr, n_te : (S,) int64
    ranks : bool
        Average ranks (Spearman) or raw values (Pearson).
    keep_test : bool
        Also return the test RSMs.

    Returns
    -------
    Utr : (S, max m_tr) float64, Ute : (S, max m_te) float64
        ``upper_std`` row of each split's train (test) RSM, zero-padded past its length
        ``k(k-1)/2`` (all-NaN if the triangle holds a NaN or is constant).
    Rte : (S, max n_te, max n_te) float64 (NaN-padded) if ``keep_test`` else (0, 0, 0)
    """
    S = tr_rows.shape[0]
    ktr = 0
    kte = 0
    for s in range(S):
        ktr = max(ktr, n_tr[s])
        kte = max(kte, n_te[s])
    Utr = np.zeros((S, ktr * (ktr - 1) // 2))
    Ute = np.zeros((S, kte * (kte - 1) // 2))
    if keep_test:
        Rte = np.full((S, kte, kte), np.nan)
    else:
        Rte = np.empty((0, 0, 0))
    for s in prange(S):
        rows_tr = tr_rows[s, :n_tr[s]]
        rows_te = te_rows[s, :n_te[s]]
        R = rsm_rows(X, rows_tr, rows_tr)
        _tri_std(R, ranks, Utr[s])
        R = rsm_rows(X, rows_tr, rows_te)
        _tri_std(R, ranks, Ute[s])
        if keep_test:
            k = rows_te.shape[0]
            for i in range(k):
                for j in range(k):
                    Rte[s, i, j] = R[i, j]
    return Utr, Ute, Rte


@njit(cache=True)
def rank_average(v, out):
    """Average ranks (1-based, ties get the mean of their ranks) of ``v`` into ``out``.

    Same as ``scipy.stats.rankdata(v, method="average")`` for finite ``v``.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.empty(4); rank_average(np.array([3., 1., 3., 2.]), out); out.tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    m = v.shape[0]
    order = np.argsort(v)  # quicksort: tie groups get the average rank whatever their order
    i = 0
    while i < m:
        j = i
        vi = v[order[i]]
        while j + 1 < m and v[order[j + 1]] == vi:
            j += 1
        r = 0.5 * (i + j) + 1.0
        for t in range(i, j + 1):
            out[order[t]] = r
        i = j + 1


@njit(cache=True)
def _standardize(v):
    """Centre ``v`` in place and scale it to unit norm; all-NaN if constant or non-finite."""
    m = v.shape[0]
    s = 0.0
    for t in range(m):
        s += v[t]
    mean = s / m
    ss = 0.0
    for t in range(m):
        d = v[t] - mean
        v[t] = d
        ss += d * d
    if ss > 0.0 and np.isfinite(ss):
        f = 1.0 / np.sqrt(ss)
        for t in range(m):
            v[t] *= f
    else:
        for t in range(m):
            v[t] = np.nan


@njit(cache=True)
def _tri_std(R, ranks, out):
    """Standardized (rank) strict upper triangle of the square ``R`` into ``out[:m]``.

    All of ``out`` is NaN when the triangle holds a NaN/inf or is constant.
    """
    n = R.shape[0]
    m = n * (n - 1) // 2
    v = np.empty(m)
    t = 0
    bad = False
    for i in range(n):
        for j in range(i + 1, n):
            x = R[i, j]
            if not np.isfinite(x):
                bad = True
            v[t] = x
            t += 1
    if not bad:
        if ranks:
            rk = np.empty(m)
            rank_average(v, rk)
            v = rk
        _standardize(v)
        bad = np.isnan(v[0]) if m > 0 else True
    if bad:
        for t in range(out.shape[0]):
            out[t] = np.nan
    else:
        for t in range(m):
            out[t] = v[t]


@njit(parallel=True, cache=True)
def upper_std(R, ranks):
    """Standardized strict upper triangles of many square matrices.

    Parameters
    ----------
    R : (K, n, n) float64
    ranks : bool
        Replace the values by their average ranks first (Spearman); otherwise Pearson.

    Returns
    -------
    (K, n*(n-1)/2) float64
        Row-major upper triangle (``np.triu_indices(n, 1)`` order), centred, unit norm.
        A row is all-NaN when its triangle holds a NaN/inf or is constant, so that every
        correlation computed from it is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.array([[[1., .2, .5], [.2, 1., .9], [.5, .9, 1.]]])
    >>> U = upper_std(A, True)
    >>> round(float(U[0] @ U[0]), 12)
    1.0
    """
    K, n, _ = R.shape
    m = n * (n - 1) // 2
    out = np.empty((K, m))
    for k in prange(K):
        _tri_std(R[k], ranks, out[k])
    return out


@njit(cache=True)
def full_std(R, ranks):
    """Symmetric (n, n) matrix holding the standardized (rank) upper triangle of ``R``.

    Entry ``(i, j)`` and ``(j, i)`` hold the value of pair ``i < j`` of
    :func:`upper_std`; the diagonal is 0. Because permuting the rows and columns of a
    matrix together only permutes the multiset of its strict-upper-triangle values
    (read through the symmetric fill), the ranks, mean and norm of a permuted matrix's
    triangle are those of the original: a permuted standardized triangle is a gather
    from this matrix.
    """
    n = R.shape[0]
    u = upper_std(R.reshape((1, n, n)), ranks)[0]
    F = np.zeros((n, n))
    t = 0
    for i in range(n):
        for j in range(i + 1, n):
            F[i, j] = u[t]
            F[j, i] = u[t]
            t += 1
    return F


@njit(cache=True)
def sym_ranks2(R):
    """Twice the average ranks of the strict upper triangle of ``R``, symmetric-filled.

    Returns an (n, n) int64 matrix ``M`` with ``M[i, j] = M[j, i] = 2 * rank`` of pair
    ``i < j`` among the ``m = n(n-1)/2`` triangle values (average ranks for ties, so
    ``2 * rank`` is an integer) and 0 on the diagonal. The mean of ``2 * rank`` over the
    triangle is exactly ``m + 1``. Input must be finite.

    Examples
    --------
    >>> import numpy as np
    >>> sym_ranks2(np.array([[0., 3., 1.], [3., 0., 1.], [1., 1., 0.]]))[0].tolist()
    [0, 6, 3]
    """
    n = R.shape[0]
    m = n * (n - 1) // 2
    v = np.empty(m)
    t = 0
    for i in range(n):
        for j in range(i + 1, n):
            v[t] = R[i, j]
            t += 1
    rk = np.empty(m)
    rank_average(v, rk)
    M = np.zeros((n, n), dtype=np.int64)
    t = 0
    for i in range(n):
        for j in range(i + 1, n):
            r2 = np.int64(2.0 * rk[t])
            M[i, j] = r2
            M[j, i] = r2
            t += 1
    return M


@njit(parallel=True, cache=True)
def perm_dot_int(A, F, perms):
    """Integer ``sum_{i<j} A[i, j] * F[perms[q, i], perms[q, j]]`` for every permutation q.

    Used with ``A``, ``F`` = :func:`sym_ranks2` of two matrices (cast to int16 when
    ``2 m`` fits, which makes the gathers cheap): the sums are exact integers (int64
    accumulation), so the Spearman statistic of each permutation is exact up to one
    final division, null values tie with the observed value exactly, and the result
    is independent of the thread count and of summation order.

    Parameters
    ----------
    A, F : (n, n) integer arrays (int16 or int32), symmetric
    perms : (N, n) integer array (int16 or int32), one permutation per row

    Returns
    -------
    (N,) int64
    """
    N, n = perms.shape
    out = np.empty(N, dtype=np.int64)
    for q in prange(N):
        p = perms[q]
        acc = np.int64(0)
        for i in range(n - 1):
            Fi = F[p[i]]
            Ai = A[i]
            s = np.int64(0)
            for j in range(i + 1, n):
                s += np.int64(Ai[j]) * np.int64(Fi[p[j]])
            acc += s
        out[q] = acc
    return out


@njit(parallel=True, cache=True, fastmath=True)
def perm_dot(A, F, perms):
    """Float ``sum_{i<j} A[i, j] * F[perms[q, i], perms[q, j]]`` for every permutation q.

    With ``A``, ``F`` = :func:`full_std` of two matrices this is their Pearson (or
    Spearman) correlation with ``F``'s rows and columns permuted. Inputs must be
    finite (``fastmath``); each permutation's sum runs in a fixed order inside one
    iteration, so results do not depend on the thread count.

    Parameters
    ----------
    A, F : (n, n) float64, symmetric
    perms : (N, n) integer array

    Returns
    -------
    (N,) float64
    """
    N, n = perms.shape
    out = np.empty(N)
    for q in prange(N):
        p = perms[q]
        acc = 0.0
        for i in range(n - 1):
            Fi = F[p[i]]
            Ai = A[i]
            s = 0.0
            for j in range(i + 1, n):
                s += Ai[j] * Fi[p[j]]
            acc += s
        out[q] = acc
    return out


@njit(parallel=True, cache=True)
def boot_sounds(a, b, idx, ranks):
    """Correlation of two matrices' triangles on bootstrap resamples of sounds.

    For resample ``q`` with sounds ``s = idx[q]`` the pairs are ``(s[i], s[j])`` for
    ``i < j`` with ``s[i] != s[j]`` (a resampled sound is never paired with itself).

    Parameters
    ----------
    a, b : (n, n) float64, finite
    idx : (B, n) int64
    ranks : bool (Spearman when True, Pearson otherwise)

    Returns
    -------
    (B,) float64; NaN where a resample's values are constant or it has < 2 pairs.
    """
    B, n = idx.shape
    m = n * (n - 1) // 2
    out = np.empty(B)
    for q in prange(B):
        va = np.empty(m)
        vb = np.empty(m)
        t = 0
        for i in range(n):
            si = idx[q, i]
            for j in range(i + 1, n):
                sj = idx[q, j]
                if si != sj:
                    va[t] = a[si, sj]
                    vb[t] = b[si, sj]
                    t += 1
        if t < 2:
            out[q] = np.nan
            continue
        xa = va[:t].copy()
        xb = vb[:t].copy()
        if ranks:
            rank_average(va[:t], xa)
            rank_average(vb[:t], xb)
        _standardize(xa)
        _standardize(xb)
        s = 0.0
        for u in range(t):
            s += xa[u] * xb[u]
        out[q] = min(1.0, max(-1.0, s))
    return out
