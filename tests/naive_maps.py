"""Slow, obvious references for the voxel maps and effective dimensionality (docs/method.md §9).

Nothing here imports fastenc. Explicit loops over voxels, coordinates and models; the tie rule is
scripted the way the study's ``layer_position_argmax`` runs it (``np.random.seed(0)``, then
``np.random.choice`` of the tied layers for *every* voxel, even an untied one), so the claim "a
draw only where two or more layers tie" is checked rather than assumed. Callers save and restore
numpy's global state around :func:`naive_best_layer`.
"""
from __future__ import annotations

import math
import statistics

import numpy as np


def _median(xs):
    return statistics.median(list(xs))


def naive_best_layer(values, clip=True):
    """values (layers, voxels, splits) -> list of (0-based best layer, clipped median there)."""
    n_layers, n_vox, n_splits = values.shape
    np.random.seed(0)
    out = []
    for v in range(n_vox):
        meds = []
        for l in range(n_layers):
            m = _median(float(values[l, v, s]) for s in range(n_splits))
            if clip and m > 1:
                m = 1.0
            meds.append(m)
        mx = max(meds)
        tied = [l for l in range(n_layers) if meds[l] == mx]
        pick = int(np.random.choice(np.flatnonzero(np.array([m == mx for m in meds]))))
        assert pick in tied
        out.append((pick, meds[pick]))
    return out


def naive_subject_surface(rows, value):
    """rows: list of dicts (subj_idx, hemi, x_ras, y_ras, value).

    Returns {(hemi, "x_y"): (median over all voxels there, n distinct subjects, n voxels)}."""
    groups = {}
    for r in rows:
        key = (str(r["hemi"]), f"{int(r['x_ras'])}_{int(r['y_ras'])}")
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        vals = [float(r[value]) for r in rs]
        subjects = set(r["subj_idx"] for r in rs)
        out[key] = (_median(vals), len(subjects), len(rs))
    return out


def naive_subject_surface_per_subject(rows, value):
    """As above but each subject first contributes the median of its own voxels there."""
    groups = {}
    for r in rows:
        key = (str(r["hemi"]), f"{int(r['x_ras'])}_{int(r['y_ras'])}")
        groups.setdefault(key, {}).setdefault(r["subj_idx"], []).append(float(r[value]))
    return {key: _median(_median(v) for v in per.values()) for key, per in groups.items()}


def naive_model_surface(per_model):
    """per_model: list of {key: value}. Median over models per key (NaN skipped)."""
    keys = per_model[0].keys()
    out = {}
    for k in keys:
        vals = [d[k] for d in per_model if not math.isnan(d[k])]
        out[k] = _median(vals) if vals else float("nan")
    return out


def naive_ed(X, demean_units=True, scale_units=False, center_sounds=True):
    """ED from numpy's eigenvalues of the units x units covariance (same non-zero spectrum as the
    sounds x sounds matrix np.cov(X) of the study)."""
    A = np.array(X, dtype=np.float64)
    n, p = A.shape
    if demean_units or scale_units:
        for j in range(p):
            col = A[:, j].copy()
            mu = col.sum() / n
            if demean_units:
                A[:, j] = col - mu
            if scale_units:
                sd = math.sqrt(((col - mu) ** 2).sum() / n)
                if sd > 0:
                    A[:, j] = A[:, j] / sd
    if center_sounds:
        for i in range(n):
            A[i, :] = A[i, :] - A[i, :].mean()
    C = A.T @ A / max(p - 1, 1)  # units x units
    lam = np.linalg.eigvalsh(C)
    return float(lam.sum() ** 2 / (lam ** 2).sum())


def study_cov_ed(X, demean_units=True):
    """The study's own line: eigvals of np.cov on the (optionally unit-centred) sounds x units."""
    A = np.array(X, dtype=np.float64)
    if demean_units:
        A = A - A.mean(axis=0)
    S = np.linalg.eigvals(np.cov(A))
    S = np.real(np.sort(S)[::-1])
    return float(S.sum() ** 2 / (S ** 2).sum())
