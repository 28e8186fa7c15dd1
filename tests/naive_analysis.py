"""Slow, obvious reference loops for docs/method.md §5, written straight from its text.

Nothing here imports fastenc. These use numpy's *global* legacy stream exactly as the text says
(``np.random.seed``, ``np.random.shuffle``, ``np.random.choice``); callers should save and
restore the global state around them.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def naive_argmax_ties(sel):
    """sel (layers, voxels). Re-seed 0; per voxel in order, random choice among tied maxima.

    A voxel with any NaN gets -1 and no draw (fastenc's documented NaN rule)."""
    np.random.seed(0)
    n_layers, n_vox = sel.shape
    best = []
    for v in range(n_vox):
        col = [sel[l, v] for l in range(n_layers)]
        if any(math.isnan(c) for c in col):
            best.append(-1)
            continue
        mx = max(col)
        tied = [l for l in range(n_layers) if col[l] == mx]
        if len(tied) >= 2:
            best.append(int(np.random.choice(np.array(tied))))
        else:
            best.append(tied[0])
    return best


def _clip(x, clip):
    if clip and not math.isnan(x) and x > 1:
        return 1.0
    return x


def naive_best_layer(values, subj_idx, clip=True, n_iterations=10):
    """values (layers, voxels, 10). Returns (subject -> score, per-iteration dict, voxel scores)."""
    n_layers, n_vox, _ = values.shape
    subjects = sorted(set(subj_idx.tolist()))
    per_iter = []
    vox_all = []
    for i in range(n_iterations):
        np.random.seed(i)
        sel = np.empty((n_layers, n_vox))
        rd = np.empty((n_layers, n_vox))
        for l in range(n_layers):
            for v in range(n_vox):
                mask = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], dtype=float)
                np.random.shuffle(mask)
                sel[l, v] = _clip(float(np.median(values[l, v][mask == 1])), clip)
                rd[l, v] = _clip(float(np.median(values[l, v][mask == 0])), clip)
        best = naive_argmax_ties(sel)
        vox = [rd[best[v], v] if best[v] >= 0 else float("nan") for v in range(n_vox)]
        vox_all.append(vox)
        per_iter.append({s: float(np.median([vox[v] for v in range(n_vox) if subj_idx[v] == s]))
                         for s in subjects})
    scores = {s: sum(d[s] for d in per_iter) / n_iterations for s in subjects}
    return scores, per_iter, np.array(vox_all)


def naive_masks(seed, n):
    np.random.seed(seed)
    out = []
    for _ in range(n):
        mask = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1], dtype=float)
        np.random.shuffle(mask)
        out.append(mask)
    return np.array(out)


def naive_within_subject_sem(m):
    """m: list of rows (subjects) of conditions."""
    n = len(m)
    k = len(m[0])
    dm = [[m[s][c] - sum(m[s]) / k for c in range(k)] for s in range(n)]
    out = []
    for c in range(k):
        col = [dm[s][c] for s in range(n)]
        mu = sum(col) / n
        sd = math.sqrt(sum((x - mu) ** 2 for x in col) / n)
        out.append(sd / math.sqrt(n - 1))
    return out


def naive_roi(values_med, subj_idx, roi_labels, rois=("Primary", "Anterior", "Lateral", "Posterior")):
    """values_med (layers, voxels) clipped medians -> {(subj, roi): median rel pos}."""
    n_layers = values_med.shape[0]
    best = naive_argmax_ties(values_med)
    out = {}
    for s in sorted(set(subj_idx.tolist())):
        for roi in rois:
            rel = [best[v] / (n_layers - 1) for v in range(len(best))
                   if subj_idx[v] == s and roi_labels[v] == roi]
            if rel:
                out[(s, roi)] = float(np.median(rel))
    return out


def naive_bootstrap(v1, v2, n_boot=10000, seed=0):
    np.random.seed(seed)
    means = []
    for _ in range(n_boot):
        means.append(np.mean(np.random.choice(v2, size=len(v2), replace=True)))
    m1 = np.mean(v1)
    return sum(1 for m in means if m > m1) / n_boot, np.array(means)


def naive_wilcoxon_approx(x, y):
    """Signed-rank statistic (min of W+, W-) and two-sided normal-approximation p value,
    zeros dropped, average ranks for ties, tie-corrected variance, no continuity correction."""
    d = [a - b for a, b in zip(x, y) if a - b != 0]
    n = len(d)
    r = stats.rankdata([abs(v) for v in d])
    wp = sum(ri for ri, v in zip(r, d) if v > 0)
    wm = sum(ri for ri, v in zip(r, d) if v < 0)
    t = min(wp, wm)
    mn = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24
    _, counts = np.unique(r, return_counts=True)
    var -= sum(c ** 3 - c for c in counts) / 48
    z = (t - mn) / math.sqrt(var)
    return t, 2 * stats.norm.sf(abs(z))


def naive_roi_summary(rel_pos, sem="subjects"):
    """rel_pos: {model: {subj: value}} for one ROI and one randnetw panel (same participants for
    every model). Returns {model: (mean over participants, within-subject SEM over the models)}:
    per participant subtract its mean over the models; population std over participants; divide
    by sqrt(n_participants - 1) ("subjects") or sqrt(n_models - 1) ("models", the study's RSA)."""
    models = list(rel_pos)
    subjects = sorted(rel_pos[models[0]])
    n_s, n_m = len(subjects), len(models)
    out = {}
    subj_mean = {s: sum(rel_pos[m][s] for m in models) / n_m for s in subjects}
    for m in models:
        mean = sum(rel_pos[m][s] for s in subjects) / n_s
        dm = [rel_pos[m][s] - subj_mean[s] for s in subjects]
        mu = sum(dm) / n_s
        sd = math.sqrt(sum((x - mu) ** 2 for x in dm) / n_s)
        div = math.sqrt((n_s if sem == "subjects" else n_m) - 1)
        out[m] = (mean, sd / div)
    return out


def naive_component_permutation(v1, v2, n_perm=10000, seed=0):
    """The study's pairwise_model_comparison_comp_boostrap loop on the global stream.

    Returns (null differences, p from (k + 1)/(N + 1) with k = #null >= observed, the study's
    fraction of null > observed)."""
    np.random.seed(seed)
    true_delta = np.mean(v1) - np.mean(v2)
    null = []
    for _ in range(n_perm):
        both = np.concatenate([v1, v2])
        np.random.shuffle(both)
        null.append(np.mean(both[:len(v1)]) - np.mean(both[len(v1):]))
    k_ge = sum(1 for x in null if x >= true_delta)
    k_gt = sum(1 for x in null if x > true_delta)
    return np.array(null), (k_ge + 1) / (n_perm + 1), k_gt / n_perm


def naive_component_plot_layer(best_names):
    """The layer the study plotted per component (predicted vs measured, Fig. 4), as its text
    describes the choice: ``best_names`` is one list per component (in component order) of the best
    layer's *name* in each iteration. Count the names (pandas, sorted by name); global stream seeded
    0 once for the model version; where the top count is above 1, ``np.random.choice`` among the
    names with the top count, else the first name."""
    import pandas as pd
    np.random.seed(0)
    out = []
    for names in best_names:
        counts = pd.Series(names, dtype=object).to_frame("layer").groupby("layer").size()
        if counts.max() > 1:
            out.append(str(np.random.choice(counts.index[counts == counts.max()].values)))
        else:
            out.append(str(counts.index[0]))
    return out
