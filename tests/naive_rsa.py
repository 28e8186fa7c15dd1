"""Slow, obvious RSA references written straight from docs/method.md §2 and §6.

Nothing here imports fastenc: pure numpy / scipy loops, the way the reference study
computed things (``np.corrcoef`` on z-scored features, ``scipy.stats.spearmanr`` /
``pearsonr`` on ``np.triu_indices(n, 1)`` triangles, one layer / participant / split at
a time).
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy import stats

CATEGORY_ORDER = ["Music", "Song", "EngSpeech", "ForSpeech", "HumVoc", "AniVoc", "HumNonVoc",
                  "AniNonVoc", "Nature", "Mechanical", "EnvSound"]


def study_split_masks(n_stimuli=165, n_train=83, n_splits=10, seed=0):
    """docs/method.md §2: boolean train masks from the legacy RandomState stream."""
    rs = np.random.RandomState(seed)
    masks = np.zeros((n_splits, n_stimuli), dtype=bool)
    for s in range(n_splits):
        train = rs.permutation(n_stimuli)[:n_train]
        rs.permutation(n_stimuli - n_train)
        masks[s, train] = True
    return masks


def category_reorder(categories, order=CATEGORY_ORDER):
    """Indices grouping sounds by category (stable within category), as the study does."""
    out = []
    for c in order:
        out += [i for i, x in enumerate(categories) if x == c]
    return np.array(out)


def zscore_train_apply(X_train, X_eval):
    """StandardScaler(with_std=True) fit on train rows, applied to eval rows (zero std → 1)."""
    mu = X_train.mean(0)
    sd = X_train.std(0)
    sd = np.where(sd == 0, 1.0, sd)
    return (X_eval - mu) / sd


def rsm(X_train, X_eval):
    """Pearson correlation between eval sounds across z-scored features."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(zscore_train_apply(X_train, X_eval))


def triu(M):
    return M[np.triu_indices_from(M, k=1)]


def spearman_mats(a, b):
    return stats.spearmanr(triu(a), triu(b))[0]


def pearson_mats(a, b):
    return stats.pearsonr(triu(a), triu(b))[0]


def cv_best_layer(layers, participants, masks, categories=None, corrected=False):
    """The study's cross-validated RSA for one model, loop by loop.

    Returns a dict with train_corr / test_corr (P, S, L), best_layer (P, S),
    split_score (P, S), score (P,), model_score, nc_splits (P, S), nc (P,), model_nc.
    """
    if categories is not None:
        order = category_reorder(categories)
        layers = [X[order] for X in layers]
        participants = [Y[order] for Y in participants]
    P, S, L = len(participants), len(masks), len(layers)
    train_corr = np.zeros((P, S, L))
    test_corr = np.zeros((P, S, L))
    part_test = [[None] * S for _ in range(P)]
    for p, Y in enumerate(participants):
        for s, mask in enumerate(masks):
            y_tr, y_te = Y[mask], Y[~mask]
            p_train = rsm(y_tr, y_tr)
            p_test = rsm(y_tr, y_te)
            part_test[p][s] = p_test
            for l, X in enumerate(layers):
                x_tr, x_te = X[mask], X[~mask]
                train_corr[p, s, l] = spearman_mats(rsm(x_tr, x_tr), p_train)
                test_corr[p, s, l] = spearman_mats(rsm(x_tr, x_te), p_test)
    best = np.zeros((P, S), dtype=int)
    split_score = np.zeros((P, S))
    for p in range(P):
        for s in range(S):
            best[p, s] = np.nanargmax(train_corr[p, s])
            split_score[p, s] = test_corr[p, s, best[p, s]]
    score = np.median(split_score, axis=1)
    nc_splits = np.zeros((P, S))
    for p in range(P):
        for s in range(S):
            others = np.array([part_test[q][s] for q in range(P) if q != p]).mean(0)
            f = spearman_mats if corrected else pearson_mats
            nc_splits[p, s] = f(part_test[p][s], others)
    nc = np.median(nc_splits, axis=1)
    return dict(train_corr=train_corr, test_corr=test_corr, best_layer=best,
                split_score=split_score, score=score, model_score=score.mean(),
                nc_splits=nc_splits, nc=nc, model_nc=nc.mean())


def permutation_null(a, b, perms, method="spearman"):
    """Statistic with b's rows and columns permuted, one scipy call per permutation."""
    f = spearman_mats if method == "spearman" else pearson_mats
    return np.array([f(a, b[np.ix_(p, p)]) for p in perms])


def exact_permutation_p(a, b, method="spearman"):
    """Fraction of all n! permutations whose statistic is >= the observed one."""
    n = a.shape[0]
    perms = np.array(list(itertools.permutations(range(n))))
    null = permutation_null(a, b, perms, method)
    obs = (spearman_mats if method == "spearman" else pearson_mats)(a, b)
    return np.mean(null >= obs - 1e-12), obs, null


def sound_bootstrap(a, b, idx_rows, method="spearman"):
    """Correlation on resampled sounds, dropping pairs of a sound with itself."""
    f = stats.spearmanr if method == "spearman" else stats.pearsonr
    out = []
    for idx in idx_rows:
        va, vb = [], []
        n = len(idx)
        for i in range(n):
            for j in range(i + 1, n):
                if idx[i] != idx[j]:
                    va.append(a[idx[i], idx[j]])
                    vb.append(b[idx[i], idx[j]])
        out.append(f(va, vb)[0])
    return np.array(out)


def all_sounds_best_layer(layers, participant):
    """The study's all_data_rsa_for_best_layer: z-score with all sounds, Pearson RSM, Spearman of
    each layer's RSM with the participant's; nanargmax / (L - 1)."""
    P = rsm(participant, participant)
    corr = [spearman_mats(rsm(X, X), P) for X in layers]
    best = int(np.nanargmax(corr))
    return np.array(corr), best, best / (len(layers) - 1)


def roi_vs_roi(rois, masks=None):
    """rois: {roi: {participant: (n, v) array}}. Per participant (present in both ROIs), split
    and pair of ROIs, the Spearman of the two train RSMs; mean over participants and splits.
    ``masks`` None = one split with all sounds in train (the study)."""
    names = list(rois)
    n = next(iter(next(iter(rois.values())).values())).shape[0]
    if masks is None:
        masks = np.ones((1, n), dtype=bool)
    out = np.full((len(names), len(names)), np.nan)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            vals = []
            for pid in rois[a]:
                if pid not in rois[b]:
                    continue
                for m in masks:
                    ya, yb = rois[a][pid][m], rois[b][pid][m]
                    vals.append(spearman_mats(rsm(ya, ya), rsm(yb, yb)))
            if vals:
                out[i, j] = sum(vals) / len(vals)
    return out


def study_rsa_best_layer_summary(model_participant_matrix):
    """get_mean_and_sem_best_layer of the study: (models, participants) -> mean over participants
    and within-participant SEM (nanmean over models subtracted, nanstd over participants,
    divided by sqrt(n_models - 1))."""
    M = np.asarray(model_participant_matrix, dtype=float)
    n_models, n_part = M.shape
    means, errs = [], []
    for k in range(n_models):
        means.append(sum(M[k]) / n_part)
        dm = [M[k, p] - np.nanmean(M[:, p]) for p in range(n_part)]
        mu = sum(dm) / n_part
        errs.append(np.sqrt(sum((x - mu) ** 2 for x in dm) / n_part) / np.sqrt(n_models - 1))
    return np.array(means), np.array(errs)
