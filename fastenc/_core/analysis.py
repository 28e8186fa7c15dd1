"""Numba kernels of the best-layer-on-independent-splits analysis (docs/method.md §5).

Wrapped by :mod:`fastenc.analysis`: the replay of numpy's legacy 1-D shuffle of the split mask
on the raw MT19937 words, and the selection / readout medians of every layer x voxel under
the shuffled masks. Both are serial (no ``prange``): they run inside the caller's thread
limits and need none of their own.
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["fisher_yates_masks", "median5", "selection_readout_bits"]


@njit(cache=True, nogil=True)
def fisher_yates_masks(raw, out, start, n_todo):  # pragma: no cover - jitted
    """Replay numpy's legacy 1-D shuffle of SPLIT_MASK on the raw 32-bit stream ``raw``.

    Writes up to ``n_todo`` masks as 10-bit integers (bit t = mask[t]) into ``out[start:]``;
    stops before a shuffle that would run past the end of ``raw``. Returns (n_done, n_used).
    """
    pos = 0
    k = 0
    a = np.empty(10, dtype=np.uint8)
    n_raw = raw.shape[0]
    while k < n_todo:
        for t in range(10):
            a[t] = t & 1
        p = pos
        ok = True
        for i in range(9, 0, -1):
            m = i
            m |= m >> 1
            m |= m >> 2
            m |= m >> 4
            while True:
                if p >= n_raw:
                    ok = False
                    break
                v = raw[p] & np.uint32(m)
                p += 1
                if v <= i:
                    break
            if not ok:
                break
            j = v
            tmp = a[j]
            a[j] = a[i]
            a[i] = tmp
        if not ok:
            break
        bits = 0
        for t in range(10):
            if a[t]:
                bits |= 1 << t
        out[start + k] = bits
        pos = p
        k += 1
    return k, pos


@njit(cache=True, nogil=True)
def median5(x):  # pragma: no cover - jitted
    """Median of 5 values (the 3rd smallest, as np.median); NaN if any value is NaN."""
    for t in range(5):
        if np.isnan(x[t]):
            return np.nan
    for a in range(1, 5):  # insertion sort
        key = x[a]
        b = a - 1
        while b >= 0 and x[b] > key:
            x[b + 1] = x[b]
            b -= 1
        x[b + 1] = key
    return x[2]


@njit(cache=True, nogil=True)
def selection_readout_bits(values, bits, clip):  # pragma: no cover - jitted
    """Selection and readout medians (``fastenc.analysis._selection_readout``) from the 10-bit masks (layer-major), 10 splits."""
    L, V, S = values.shape
    sel = np.empty((L, V))
    rd = np.empty((L, V))
    xs = np.empty(5)
    xr = np.empty(5)
    for l in range(L):
        for v in range(V):
            b = bits[l * V + v]
            ns = 0
            nr = 0
            for t in range(S):
                if (b >> t) & 1:
                    xs[ns] = values[l, v, t]
                    ns += 1
                else:
                    xr[nr] = values[l, v, t]
                    nr += 1
            a = median5(xs)
            c = median5(xr)
            if clip:
                if a > 1.0:
                    a = 1.0
                if c > 1.0:
                    c = 1.0
            sel[l, v] = a
            rd[l, v] = c
    return sel, rd
