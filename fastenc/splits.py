"""Cross-validation splits of the 165 sounds (METHOD §2).

The reference study draws its 10 splits from one legacy NumPy stream::

    rs = numpy.random.RandomState(0)
    for each split: train = rs.permutation(165)[:83]; rs.permutation(82)

The second permutation only advances the stream (the study drew, and discarded,
a shuffle of the test indices). The same splits serve every model, layer and target.
"""
from __future__ import annotations

import numpy as np

__all__ = ["seed_splits"]


def seed_splits(n_stimuli: int = 165, n_train: int = 83, n_splits: int = 10, seed: int = 0) -> np.ndarray:
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
