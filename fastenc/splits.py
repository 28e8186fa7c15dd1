"""Cross-validation splits: the study's 10 splits of the 165 sounds (docs/method.md §2), and
k-fold, repeated random and leave-one-group-out splits for other datasets (all as boolean
train masks, one row per split).

The reference study draws its 10 splits from one legacy NumPy stream::

    rs = numpy.random.RandomState(0)
    for each split: train = rs.permutation(165)[:83]; rs.permutation(82)

The second permutation only advances the stream (the study drew, and discarded,
a shuffle of the test indices). The same splits serve every model, layer and target.
"""
from __future__ import annotations

import numpy as np

from .constants import N_SPLITS, N_STIMULI, N_TRAIN, SPLIT_SEED

__all__ = ["seed_splits", "kfold_splits", "shuffle_splits", "group_splits"]


def seed_splits(n_stimuli: int = N_STIMULI, n_train: int = N_TRAIN, n_splits: int = N_SPLITS,
                seed: int = SPLIT_SEED) -> np.ndarray:
    """Boolean train masks of the study's cross-validation splits.

    Parameters
    ----------
    n_stimuli : int
        Number of sounds (165 in the study).
    n_train : int
        Train sounds per split (83); the rest (82) are test sounds.
    n_splits : int
        Number of splits (10).
    seed : int
        Seed of the legacy ``numpy.random.RandomState`` stream (0 in the study).

    Returns
    -------
    ndarray of bool, shape (n_splits, n_stimuli)
        ``masks[s, i]`` is True when sound ``i`` is a train sound of split ``s``.

    Examples
    --------
    >>> masks = seed_splits()
    >>> masks.shape, int(masks[0].sum())
    ((10, 165), 83)
    >>> int(np.flatnonzero(masks[0]).sum())
    7304
    """
    if not (0 < n_train < n_stimuli):
        raise ValueError(f"n_train must be in 1..n_stimuli-1, got n_train={n_train}, n_stimuli={n_stimuli}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rs = np.random.RandomState(seed)
    masks = np.zeros((n_splits, n_stimuli), dtype=bool)
    for s in range(n_splits):
        train = rs.permutation(n_stimuli)[:n_train]
        rs.permutation(n_stimuli - n_train)  # advances the stream, as in the study
        masks[s, train] = True
    return masks


def _check_n(n_stimuli):
    n = int(n_stimuli)
    if n != n_stimuli or n < 2:
        raise ValueError(f"n_stimuli must be an integer >= 2, got {n_stimuli!r}")
    return n


def kfold_splits(n_stimuli: int, k: int = 5, seed: int | None = 0) -> np.ndarray:
    """Boolean train masks of k-fold cross-validation: every stimulus is a test stimulus once.

    The stimuli are shuffled with ``numpy.random.default_rng(seed)`` (``seed=None``: no
    shuffle, contiguous folds) and cut into ``k`` folds whose sizes differ by at most one
    (the first ``n_stimuli % k`` folds are one larger); fold ``s`` is the test set of split ``s``.

    Examples
    --------
    >>> masks = kfold_splits(10, k=5, seed=0)
    >>> masks.shape, (~masks).sum(axis=0).tolist() == [1] * 10
    ((5, 10), True)
    """
    n = _check_n(n_stimuli)
    if not 2 <= k <= n:
        raise ValueError(f"k must be in 2..n_stimuli ({n}), got k={k}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    masks = np.ones((k, n), dtype=bool)
    for s, fold in enumerate(np.array_split(order, k)):
        masks[s, fold] = False
    return masks


def shuffle_splits(n_stimuli: int, n_train: int, n_splits: int = 10, seed: int = 0) -> np.ndarray:
    """Boolean train masks of repeated random splits: ``n_train`` train stimuli each.

    Split ``s`` takes the first ``n_train`` entries of a permutation drawn from
    ``numpy.random.default_rng(seed)`` (one stream, one permutation per split). Test sets of
    different splits may overlap. (The study's own splits are :func:`seed_splits`.)

    Examples
    --------
    >>> shuffle_splits(100, 80, n_splits=3).sum(axis=1).tolist()
    [80, 80, 80]
    """
    n = _check_n(n_stimuli)
    if not 0 < n_train < n:
        raise ValueError(f"n_train must be in 1..n_stimuli-1 ({n - 1}), got {n_train}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((n_splits, n), dtype=bool)
    for s in range(n_splits):
        masks[s, rng.permutation(n)[:n_train]] = True
    return masks


def group_splits(groups) -> np.ndarray:
    """Boolean train masks of leave-one-group-out cross-validation.

    ``groups`` gives each stimulus's group (a run, a session, a stimulus identity shared by
    repeated presentations); split ``s`` tests on the ``s``-th group in sorted order and trains
    on all others, so members of one group never straddle train and test.

    Examples
    --------
    >>> group_splits(["a", "a", "b", "c", "b"]).astype(int).tolist()
    [[0, 0, 1, 1, 1], [1, 1, 0, 1, 0], [1, 1, 1, 0, 1]]
    """
    g = np.asarray(groups)
    if g.ndim != 1 or g.size < 2:
        raise ValueError(f"groups must be a 1-D sequence with one label per stimulus, got shape {g.shape}")
    if g.dtype.kind == "f" and np.isnan(g).any():
        raise ValueError("groups contains NaN: every stimulus needs a group")
    labels, inverse = np.unique(g, return_inverse=True)
    if labels.size < 2:
        raise ValueError(f"leave-one-group-out needs >= 2 groups, got one group ({labels[0]!r})")
    return inverse[None, :] != np.arange(labels.size)[:, None]
