"""Numba kernels for batched exact leave-one-out (LOO) ridge regression.

Everything lives in the n_train-dimensional sample space (docs/method.md §3). For one split the
caller (``fastenc.ridge``) supplies, from one eigendecomposition of the centred train Gram:

* ``Q`` (n, m): eigenvectors of the centred train Gram restricted to the complement of the
  constant vector (m = n - 1; the constant direction belongs to the intercept and gets no
  ridge weight), one per column;
* ``lam`` (m,): their eigenvalues, exactly 0 on the numerical null space;
* per distinct alpha group (``fastenc.ridge.alpha_groups``), a triangular factor of the
  quadratic form that gives the LOO error as a function of ``z = Q^T y``
  (``fastenc.ridge.loo_factors``);
* ``Pt`` (m, n_test): ``(X_test_c Xc^T Q)^T``, to predict test rows.

With ``z = Q^T y`` the LOO residuals are ``e = Q (d * z) / (1 - diag H)``; their sum of
squares is a quadratic form in ``z``, so scoring one alpha for a block of targets is one
small triangular matrix product plus a fused square-sum-compare. Targets are processed in fixed-size blocks, each written by one
thread, and BLAS is called single-threaded inside, so results do not depend on the number
of threads.
"""
from __future__ import annotations

import llvmlite.binding as ll
import numpy as np
from numba import njit, prange, types
from numba.extending import get_cython_function_address

__all__ = ["loo_ridge_block_range"]

# BLAS dtrmm (triangular matrix product) from SciPy's bundled BLAS, called by symbol name so
# that kernels using it stay cacheable (cache=True). Fortran calling convention: all pointers.
ll.add_symbol("fastenc_cython_dtrmm", get_cython_function_address("scipy.linalg.cython_blas", "dtrmm"))
_dtrmm = types.ExternalFunction("fastenc_cython_dtrmm", types.void(*([types.voidptr] * 11)))


@njit(cache=True)
def _rows_times_upper_t(T, B):
    """In place, ``B[j] := T @ B[j]`` for every row of ``B`` (nb, m), ``T`` (m, m) upper triangular.

    In column-major terms ``B`` is (m, nb) and ``T`` (C order) is the lower-triangular ``T^T``:
    ``dtrmm(side='L', uplo='L', transa='T')`` computes ``T @ B``.
    """
    side = np.array([76], np.uint8)   # 'L'
    uplo = np.array([76], np.uint8)   # 'L'
    transa = np.array([84], np.uint8)  # 'T'
    diag = np.array([78], np.uint8)   # 'N'
    mm = np.array([B.shape[1]], np.int32)
    nn = np.array([B.shape[0]], np.int32)
    one = np.array([1.0])
    lda = np.array([T.shape[1]], np.int32)
    ldb = np.array([B.shape[1]], np.int32)
    _dtrmm(side.ctypes, uplo.ctypes, transa.ctypes, diag.ctypes, mm.ctypes, nn.ctypes,
           one.ctypes, T.ctypes, lda.ctypes, B.ctypes, ldb.ctypes)


@njit(cache=True, error_model="numpy")
def _select_alpha_block(Yc, Z, q, Tri, Perm, Dd, Do, use_delta, n_groups, per, W, R,
                        best_group, best_excess):
    """Best alpha group per target of one block (first group wins exact ties).

    The criterion is the LOO sum of squared errors in excess of its alpha -> infinity limit
    (``e_inf = yc / q``: predicting with the train mean), a quadratic form in ``z = Q^T y``
    scored through a triangular factor per group (``fastenc.ridge.loo_factors``):

    * below the spectrum, ``||Tri z||^2 - ||e_inf||^2`` with ``Tri`` the R factor of
      ``diag(1 / (1 - H_ii)) Q diag(d)`` (``Perm`` identity, ``Dd`` = 1, ``Do`` = 0);
    * above it, ``w^T D w`` with ``w = Tri z[Perm]`` from the Bunch–Kaufman factorization
      of the excess matrix itself (``D`` block diagonal: ``Dd`` its diagonal, ``Do`` its
      superdiagonal). The excess is then exact to rounding even when it is 1e-40 of the
      total; without this, the near-flat top of the curve is decided by rounding noise and
      can pick an alpha whose prediction is the intercept plus a few ulps of noise.

    A triangular product costs half a full one. With ``per > 1`` the rows come in groups
    ``[mean, rep_1, ..., rep_{per-1}]`` where the first row is the mean of the others: the
    factored residuals are linear in the target, so the mean row's are the mean of the
    repetitions' (one product saved in ``per``). ``W`` holds the fitted rows only.
    """
    nb, m = Z.shape
    n = Yc.shape[1]
    einf = np.empty(nb)
    for j in range(nb):
        best_excess[j] = np.inf
        best_group[j] = 0
        s = 0.0
        for i in range(n):
            e = Yc[j, i] / q[i]
            s += e * e
        einf[j] = s
    nfit = W.shape[0]
    for g in range(n_groups):
        delta = use_delta[g]
        # the fitted rows (all rows, or the repetition rows of each group), permuted
        c = 0
        for j in range(nb):
            if per == 1 or j % per != 0:
                for k in range(m):
                    W[c, k] = Z[j, Perm[g, k]]
                c += 1
        _rows_times_upper_t(Tri[g], W)
        # rows of R: copies of the fitted rows, and the mean rows as their average
        if per > 1:
            c = 0
            inv = 1.0 / (per - 1)
            for v in range(nb // per):
                j = v * per
                for i in range(m):
                    acc = 0.0
                    for r in range(per - 1):
                        acc += W[c + r, i]
                        R[j + 1 + r, i] = W[c + r, i]
                    R[j, i] = acc * inv
                c += per - 1
        else:
            for j in range(nfit):
                for i in range(m):
                    R[j, i] = W[j, i]
        for j in range(nb):
            s = 0.0
            if delta:
                for k in range(m - 1):
                    s += R[j, k] * (Dd[g, k] * R[j, k] + 2.0 * Do[g, k] * R[j, k + 1])
                s += Dd[g, m - 1] * R[j, m - 1] * R[j, m - 1]
            else:
                for k in range(m):
                    s += R[j, k] * R[j, k]
                s -= einf[j]
            if s < best_excess[j]:
                best_excess[j] = s
                best_group[j] = g
    for j in range(nb):
        best_excess[j] += einf[j]


@njit(parallel=True, cache=True, error_model="numpy")
def loo_ridge_block_range(Yt, train_idx, Q, q, lam, Tri, Perm, Dd, Do, use_delta, n_groups, group_alpha,
                          Pt, add_intercept, per, block, start, stop,
                          group_out, mse_out, pred_out, ybar_out):
    """Select alpha by exact LOO and predict the test rows, for targets ``start:stop``.

    Parameters
    ----------
    Yt : (T, N) float64
        Targets, one per row, over all N stimuli.
    train_idx : int64 array (n,)
        Stimulus indices of the train rows of the split.
    Q, q, lam, Tri, Perm, Dd, Do, use_delta, n_groups, Pt
        Split factors (see module docstring and ``_select_alpha_block``); ``q`` holds the
        row sums of ``Q**2``; ``Tri`` ... ``use_delta`` hold ``n_groups`` alpha groups
        (``fastenc.ridge.loo_factors``). ``Pt`` has one column per output row.
    group_alpha : (g,) float64
        Alpha value that represents each group (the first of the group in grid order).
    per : int
        1, or the size of target groups ``[mean, rep_1, ...]`` whose first row is the mean of
        the others (``block``, ``start`` and ``stop`` must then be multiples of ``per``).
    block : int
        Targets per block; fixed, so that results do not depend on the thread count.
    start, stop : int
        Work range of targets (rows of ``Yt``) handled by this call.
    group_out : (T,) int64, mse_out : (T,) float64
        Chosen group and its LOO sum of squared errors, per target (written in range).
    add_intercept : bool
        Add the target's train mean to the output (test predictions). With ``Pt = Qt`` and
        ``add_intercept=False`` the output is instead the dual coefficients.
    pred_out : (T, n_out) float64
        ``(z / (lam + alpha)) @ Pt`` at the chosen alpha (+ intercept).
    ybar_out : (T,) float64
        Train mean of each target (the intercept).
    """
    n = train_idx.shape[0]
    n_out = Pt.shape[1]
    m = Q.shape[1]
    n_blocks = (stop - start + block - 1) // block
    for b in prange(n_blocks):
        j0 = start + b * block
        j1 = min(j0 + block, stop)
        nb = j1 - j0
        Yc = np.empty((nb, n))
        for j in range(nb):
            s = 0.0
            for i in range(n):
                Yc[j, i] = Yt[j0 + j, train_idx[i]]
                s += Yc[j, i]
            mean = s / n
            ybar_out[j0 + j] = mean
            for i in range(n):
                Yc[j, i] -= mean
        # z = Q^T y for every target of the block: (nb, n) x (n, m)
        Z = np.dot(Yc, Q)
        nfit = nb - nb // per if per > 1 else nb
        W = np.empty((nfit, m))
        R = np.empty((nb, m))
        bg = np.empty(nb, dtype=np.int64)
        bm = np.empty(nb)
        _select_alpha_block(Yc, Z, q, Tri, Perm, Dd, Do, use_delta, n_groups, per, W, R, bg, bm)
        W = np.empty((nb, m))
        # dual weights at the chosen alpha, null-space components dropped
        for j in range(nb):
            a = group_alpha[bg[j]]
            for k in range(m):
                if lam[k] > 0.0:
                    W[j, k] = Z[j, k] / (lam[k] + a)
                else:
                    W[j, k] = 0.0
        P = np.dot(W, Pt)
        for j in range(nb):
            group_out[j0 + j] = bg[j]
            mse_out[j0 + j] = bm[j]
            yb = ybar_out[j0 + j] if add_intercept else 0.0
            for i in range(n_out):
                pred_out[j0 + j, i] = yb + P[j, i]
