"""Numba kernels for correlations and the Spearman–Brown noise correction (docs/method.md §4)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["pearson_rows", "spearman_brown", "corrected_reliability", "train_reliability", "split_scores"]


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
    idx = np.arange(n)
    out = np.empty(k)
    for j in prange(k):
        out[j] = _pearson_gather(A[j], idx, B[j], idx)
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
    out = np.empty(pairs.shape[0])
    for j in prange(pairs.shape[0]):
        out[j] = _sb_floor(pairs[j], n_reps, floor)
    return out


@njit(cache=True, error_model="numpy")
def _pearson_gather(a, a_idx, b, b_idx):
    """Pearson r of ``a[a_idx]`` and ``b[b_idx]`` (1-D; index arrays of equal length); NaN if constant."""
    n = a_idx.shape[0]
    ma = 0.0
    mb = 0.0
    for i in range(n):
        ma += a[a_idx[i]]
        mb += b[b_idx[i]]
    ma /= n
    mb /= n
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for i in range(n):
        da = a[a_idx[i]] - ma
        db = b[b_idx[i]] - mb
        sab += da * db
        saa += da * da
        sbb += db * db
    if saa == 0.0 or sbb == 0.0:
        return np.nan
    return sab / np.sqrt(saa * sbb)


@njit(cache=True, error_model="numpy")
def _sb_floor(pairs, n_reps, floor):
    """``max(SB(nanmedian(pairs)), floor)``, ``floor`` when all pairs are NaN (1-D ``pairs``)."""
    m = pairs.shape[0]
    vals = np.empty(m)
    c = 0
    for i in range(m):
        if not np.isnan(pairs[i]):
            vals[c] = pairs[i]
            c += 1
    if c == 0:
        return floor
    v = np.sort(vals[:c])
    med = v[c // 2] if c % 2 == 1 else 0.5 * (v[c // 2 - 1] + v[c // 2])
    sb = spearman_brown(med, n_reps)
    if np.isnan(sb) or not sb > floor:
        return floor
    return sb


@njit(parallel=True, cache=True, error_model="numpy")
def train_reliability(Yt, train_idx, n_voxels, n_reps, floor):
    """Per voxel: floored Spearman–Brown of the median Pearson r between repetition pairs.

    ``Yt`` rows are laid out per voxel as ``[mean, rep_0, ..., rep_{R-1}]`` (see
    ``fastenc.scoring.Targets``); correlations over the stimuli ``train_idx``.
    """
    per = n_reps + 1
    n_pairs = n_reps * (n_reps - 1) // 2
    out = np.empty(n_voxels)
    for v in prange(n_voxels):
        pairs = np.empty(n_pairs)
        c = 0
        for a in range(n_reps):
            for b in range(a + 1, n_reps):
                pairs[c] = _pearson_gather(Yt[v * per + 1 + a], train_idx, Yt[v * per + 1 + b], train_idx)
                c += 1
        out[v] = _sb_floor(pairs, float(n_reps), floor)
    return out


@njit(parallel=True, cache=True, error_model="numpy")
def split_scores(pred, Yt, test_idx, n_main, per, n_reps, floor_hat, r_out, rvh_out):
    """Test scores of one split, fused: one pass over the predictions.

    ``pred`` (T, n_test) are test predictions of the targets ``Yt`` (T, N) laid out in groups
    of ``per`` rows (``[mean, rep_0, ...]`` with repetitions, else single rows). Writes
    ``r_out[v]``: Pearson r of the first row of group ``v`` with its test data (NaN if either is
    constant), and with repetitions ``rvh_out[v]``: floored Spearman–Brown of the median Pearson r
    between the repetition fits' predictions.
    """
    n_test = test_idx.shape[0]
    ar = np.arange(n_test)
    n_pairs = n_reps * (n_reps - 1) // 2
    for v in prange(n_main):
        base = v * per
        r_out[v] = _pearson_gather(pred[base], ar, Yt[base], test_idx)
        if n_reps > 0:
            pairs = np.empty(n_pairs)
            c = 0
            for a in range(n_reps):
                for b in range(a + 1, n_reps):
                    pairs[c] = _pearson_gather(pred[base + 1 + a], ar, pred[base + 1 + b], ar)
                    c += 1
            rvh_out[v] = _sb_floor(pairs, float(n_reps), floor_hat)
