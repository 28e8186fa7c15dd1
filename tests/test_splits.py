"""Split helpers for other datasets (k-fold, repeated random, leave-one-group-out), the
generalised reliability floors, and score_layer on them against brute-force references."""
import numpy as np
import pytest
from scipy import stats

import fastenc
from fastenc.scoring import critical_r

from . import naive


@pytest.mark.parametrize("n, k", [(10, 2), (101, 5), (1000, 7), (12, 12)])
def test_kfold_every_stimulus_tested_once(n, k):
    m = fastenc.kfold_splits(n, k, seed=3)
    assert m.shape == (k, n) and m.dtype == bool
    assert np.array_equal((~m).sum(axis=0), np.ones(n))          # each stimulus in one test fold
    sizes = (~m).sum(axis=1)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == n
    assert np.array_equal(m, fastenc.kfold_splits(n, k, seed=3))   # deterministic
    assert not np.array_equal(m, fastenc.kfold_splits(n, k, seed=4)) or k == n


def test_kfold_unshuffled_is_contiguous():
    m = fastenc.kfold_splits(7, 3, seed=None)
    assert [np.flatnonzero(~row).tolist() for row in m] == [[0, 1, 2], [3, 4], [5, 6]]


def test_shuffle_splits():
    m = fastenc.shuffle_splits(50, 30, n_splits=4, seed=1)
    assert m.shape == (4, 50) and np.all(m.sum(axis=1) == 30)
    assert np.array_equal(m, fastenc.shuffle_splits(50, 30, n_splits=4, seed=1))
    assert len({row.tobytes() for row in m}) == 4


def test_group_splits_never_straddle():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 6, size=90)
    m = fastenc.group_splits(groups)
    assert m.shape == (6, 90)
    assert np.array_equal((~m).sum(axis=0), np.ones(90))
    for row in m:
        for g in np.unique(groups):
            assert len(set(row[groups == g])) == 1                  # a group is all train or all test


@pytest.mark.parametrize("call, match", [
    (lambda: fastenc.kfold_splits(10, 11), "k must be"),
    (lambda: fastenc.kfold_splits(10, 1), "k must be"),
    (lambda: fastenc.group_splits(["a"] * 5), "one group"),
    (lambda: fastenc.group_splits([1.0, np.nan, 2.0]), "NaN"),
    (lambda: fastenc.shuffle_splits(10, 10), "n_train"),
])
def test_split_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("n", [10, 50, 83, 82, 400, 1500])
def test_critical_r_matches_t_distribution(n):
    r = critical_r(n)
    assert r == pytest.approx(naive.critical_r_bisect(n), abs=1e-10)
    tval = r * np.sqrt((n - 2) / (1 - r * r))
    assert stats.t.sf(tval, n - 2) == pytest.approx(0.05, abs=1e-12)


def test_study_floors_are_rounded_critical_r():
    assert round(critical_r(83), 3) == fastenc.scoring.RV_FLOOR
    assert round(critical_r(82), 3) == fastenc.scoring.RV_HAT_FLOOR


def _dataset(n, p, V, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    sig = X[:, :8] @ rng.standard_normal((8, V)) * np.linspace(0, 0.6, V)
    return X, sig[:, :, None] + rng.standard_normal((n, V, k)) + 2.0


@pytest.mark.parametrize("n, p, kind", [(63, 40, "kfold"), (500, 60, "group")])
def test_other_splits_two_repetitions_match_brute_force(n, p, kind):
    """n_train 50 (5-fold of 63 -> 50/51) and 400 (grouped, 5 groups of 100); 2 repetitions."""
    X, Y = _dataset(n, p, V=3, k=2, seed=n)
    if kind == "kfold":
        S = fastenc.kfold_splits(n, 5, seed=0)
    else:
        S = fastenc.group_splits(np.repeat(np.arange(5), 100))
    s = fastenc.score_layer(X, Y, splits=S)
    train, test = np.flatnonzero(S[0]), np.flatnonzero(~S[0])
    floors = (naive.critical_r_bisect(len(train)), naive.critical_r_bisect(len(test)))
    assert s.rv_floor[0] == pytest.approx(floors[0], abs=1e-9)
    for v in range(Y.shape[1]):
        ref = naive.score_voxel_split(X, Y[:, v, :], train, test, floors=floors)
        for key in ("r_test", "r2_test", "r2_test_c", "rv", "rv_hat"):
            assert getattr(s, key)[v, 0] == pytest.approx(ref[key], abs=1e-8), (key, v)


@pytest.mark.slow
def test_kfold_1500_train_matches_brute_force():
    X, Y = _dataset(1875, 30, V=2, k=2, seed=5)   # 5-fold: 1,500 train stimuli
    S = fastenc.kfold_splits(1875, 5, seed=0)
    s = fastenc.score_layer(X, Y, splits=S[:1])
    train, test = np.flatnonzero(S[0]), np.flatnonzero(~S[0])
    floors = (naive.critical_r_bisect(len(train)), naive.critical_r_bisect(len(test)))
    for v in range(2):
        ref = naive.score_voxel_split(X, Y[:, v, :], train, test, floors=floors)
        for key in ("r_test", "r2_test_c", "rv_hat"):
            assert getattr(s, key)[v, 0] == pytest.approx(ref[key], abs=1e-8), (key, v)


def test_one_repetition_is_uncorrected():
    X, Y = _dataset(60, 20, V=3, k=1, seed=2)
    S = fastenc.kfold_splits(60, 4)
    s = fastenc.score_layer(X, Y, splits=S)
    assert not s.noise_corrected and s.r2_test_c is None
    plain = fastenc.score_layer(X, Y[:, :, 0], splits=S)
    np.testing.assert_array_equal(s.r_test, plain.r_test)


def test_study_splits_keep_rounded_floors():
    X, Y = _dataset(165, 20, V=2, k=3, seed=3)
    s = fastenc.score_layer(X, Y)
    assert np.all(s.rv_floor == 0.182) and np.all(s.rv_hat_floor == 0.183)


def test_too_many_train_stimuli_is_a_clear_error():
    n = fastenc.scoring.MAX_TRAIN + 20
    X = np.zeros((n, 2)); Y = np.zeros((n, 1))
    S = np.ones((1, n), dtype=bool); S[0, :10] = False
    with pytest.raises(ValueError, match="inner k-fold"):
        fastenc.score_layer(X, Y, splits=S)
