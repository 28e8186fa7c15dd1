"""Numba kernels for correlations and the Spearman–Brown noise correction (METHOD §4)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["pearson_rows", "spearman_brown", "corrected_reliability"]


@njit(parallel=True, cache=True, error_model="numpy")
def pearson_rows(A, B):
    """Pearson correlation between matching rows of ``A`` and ``B`` (both (k, n)).

    Returns NaN for a row where either input is constant (zero variance).

    Examples
    --------
    >>> import numpy as np
    >>> r = pearson_rows(np.array([[1., 2., 3.]]), np.array([[2., 4., 7.]]))
    >>> round(float(r[0]), 6)
    0.993399
    """
    k, n = A.shape
    out = np.empty(k)
    for j in prange(k):
        ma = 0.0
        mb = 0.0
        for i in range(n):
            ma += A[j, i]
            mb += B[j, i]
        ma /= n
        mb /= n
        sab = 0.0
        saa = 0.0
        sbb = 0.0
        for i in range(n):
            da = A[j, i] - ma
            db = B[j, i] - mb
            sab += da * db
            saa += da * da
            sbb += db * db
        if saa == 0.0 or sbb == 0.0:
            out[j] = np.nan
        else:
            out[j] = sab / np.sqrt(saa * sbb)
    return out


@njit(cache=True, error_model="numpy")
def spearman_brown(rho, n_reps):
    """Spearman–Brown step-up of a reliability ``rho`` to ``n_reps`` repetitions.

    ``n * rho / (1 + (n - 1) * rho)``; no guard for ``rho <= -1/(n-1)`` (as in the study).
    """
    return n_reps * rho / (1.0 + (n_reps - 1.0) * rho)


@njit(parallel=True, cache=True, error_model="numpy")
def corrected_reliability(pairs, n_reps, floor):
    """Per row: ``max(SB(nanmedian(pairs[row])), floor)``, and ``floor`` where all are NaN.

    ``pairs`` is (k, n_pairs) of pairwise correlations between repetitions.
    """
    k, m = pairs.shape
    out = np.empty(k)
    for j in prange(k):
        vals = np.empty(m)
        c = 0
        for i in range(m):
            if not np.isnan(pairs[j, i]):
                vals[c] = pairs[j, i]
                c += 1
        if c == 0:
            out[j] = floor
            continue
        v = np.sort(vals[:c])
        med = v[c // 2] if c % 2 == 1 else 0.5 * (v[c // 2 - 1] + v[c // 2])
        sb = spearman_brown(med, n_reps)
        out[j] = sb if sb > floor else floor  # NaN (rho = -1/(n-1) gives -inf, kept below)
        if np.isnan(sb):
            out[j] = floor
    return out
