"""Benchmarks of fastenc.rsa against the scipy loops the study used, and rsatoolbox.

Run (prints a summary; ~1 min with the defaults)::

    python -m pytest bench/bench_rsa.py -p no:cacheprovider -s
    python bench/bench_rsa.py            # same summary without pytest-benchmark

Sizes (environment variables): ``FASTENC_BENCH_PERMS`` (10000),
``FASTENC_BENCH_SCIPY_PERMS`` (200, extrapolated), ``FASTENC_BENCH_LAYERS`` (10),
``FASTENC_BENCH_UNITS`` (2000), ``FASTENC_BENCH_PARTICIPANTS`` (8),
``FASTENC_BENCH_VOXELS`` (960).

Baselines
---------
* permutation test, scipy: one ``scipy.stats.spearmanr`` on the permuted triangle per
  permutation (what the study's ``correlate_two_matrices_rsa`` would do in a loop),
  timed on ``FASTENC_BENCH_SCIPY_PERMS`` permutations and extrapolated linearly.
* permutation test, rsatoolbox: no built-in condition-label permutation test; the
  closest is ``rsatoolbox.rdm.permute_rdms`` + ``rsatoolbox.rdm.compare(method="spearman")``
  on a batch of permuted RDMs (vectorised), timed on 500 permutations and extrapolated.
* cross-validated best layer: the study's loop (``StandardScaler`` fit on train sounds,
  ``np.corrcoef`` RSMs once per layer/participant and split, one ``spearmanr`` per
  layer × participant × split for train and test, ``np.nanargmax``) against
  ``fastenc.rsa.cv_best_layer`` without noise ceiling (the study computed it elsewhere).
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
from scipy import stats

from fastenc import rsa

N_SOUNDS = 165
N_PERMS = int(os.environ.get("FASTENC_BENCH_PERMS", 10000))
N_SCIPY_PERMS = int(os.environ.get("FASTENC_BENCH_SCIPY_PERMS", 200))
N_RSATB_PERMS = 500
N_LAYERS = int(os.environ.get("FASTENC_BENCH_LAYERS", 10))
N_UNITS = int(os.environ.get("FASTENC_BENCH_UNITS", 2000))
N_PART = int(os.environ.get("FASTENC_BENCH_PARTICIPANTS", 8))
N_VOX = int(os.environ.get("FASTENC_BENCH_VOXELS", 960))

SUMMARY: dict[str, dict] = {}


def _matrices(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_SOUNDS, 300))
    return rsa.similarity_matrix(X), rsa.similarity_matrix(X + 2 * rng.normal(size=X.shape))


def _cv_data(seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(N_SOUNDS, 20))
    layers = [latent @ rng.normal(size=(20, N_UNITS)) + (1 + l % 4) * rng.normal(size=(N_SOUNDS, N_UNITS))
              for l in range(N_LAYERS)]
    parts = [latent @ rng.normal(size=(20, N_VOX)) + 3 * rng.normal(size=(N_SOUNDS, N_VOX))
             for _ in range(N_PART)]
    return layers, parts


# ----------------------------------------------------------------------------- baselines
def scipy_permutation_loop(a, b, perms):
    iu = np.triu_indices(a.shape[0], 1)
    va = a[iu]
    null = np.empty(len(perms))
    for q, p in enumerate(perms):
        null[q] = stats.spearmanr(va, b[np.ix_(p, p)][iu])[0]
    return null


def rsatoolbox_permutation_batch(a, b, perms):
    import rsatoolbox
    from rsatoolbox.rdm.rdms import permute_rdms

    ref = rsatoolbox.rdm.RDMs(1 - a[None])
    base = rsatoolbox.rdm.RDMs(1 - b[None])
    mats = np.stack([permute_rdms(base, p=np.asarray(p, dtype=int)).get_matrices()[0]
                     for p in perms])
    return rsatoolbox.rdm.compare(ref, rsatoolbox.rdm.RDMs(mats), method="spearman")[0]


def study_cv_loop(layers, parts, masks):
    """The reference study's RSA best-layer loop (no noise ceiling)."""
    from sklearn.preprocessing import StandardScaler

    def rsms(X, mask):
        sc = StandardScaler().fit(X[mask])
        return np.corrcoef(sc.transform(X[mask])), np.corrcoef(sc.transform(X[~mask]))

    S = len(masks)
    lay = [[rsms(X, m) for m in masks] for X in layers]
    par = [[rsms(Y, m) for m in masks] for Y in parts]
    iu_tr = np.triu_indices(int(masks[0].sum()), 1)
    iu_te = np.triu_indices(int((~masks[0]).sum()), 1)
    scores = np.empty((len(parts), S))
    for p in range(len(parts)):
        for s in range(S):
            tr = [stats.spearmanr(lay[l][s][0][iu_tr], par[p][s][0][iu_tr])[0] for l in range(len(layers))]
            best = int(np.nanargmax(tr))
            scores[p, s] = stats.spearmanr(lay[best][s][1][iu_te], par[p][s][1][iu_te])[0]
    return np.median(scores, axis=1)


def _timeit(fn, repeat=1):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _record(name, fast_s, base_s, note):
    SUMMARY[name] = dict(fastenc_s=fast_s, baseline_s=base_s, ratio=base_s / fast_s, note=note)


def print_summary():
    print("\nfastenc.rsa benchmark summary (this machine)")
    for name, d in SUMMARY.items():
        print(f"  {name:38s} fastenc {d['fastenc_s'] * 1e3:9.1f} ms   baseline {d['baseline_s']:8.2f} s"
              f"   speed-up x{d['ratio']:8.1f}   [{d['note']}]")


# ----------------------------------------------------------------------------- pytest-benchmark
@pytest.fixture(scope="module", autouse=True)
def _summary():
    rsa.permutation_test(*_matrices(), n_permutations=10)  # compile / load cache
    yield
    print_summary()


def test_permutation_fastenc_vs_scipy(benchmark):
    a, b = _matrices()
    res = benchmark.pedantic(rsa.permutation_test, args=(a, b), kwargs=dict(n_permutations=N_PERMS),
                             rounds=5, iterations=1)
    fast = benchmark.stats.stats.min
    perms = res.permutations[:N_SCIPY_PERMS]
    t, null = _timeit(lambda: scipy_permutation_loop(a, b, perms))
    np.testing.assert_allclose(null, res.null_distribution[:N_SCIPY_PERMS], atol=1e-12)
    base = t * N_PERMS / N_SCIPY_PERMS
    note = f"scipy spearmanr loop, {N_SCIPY_PERMS} perms timed, x{N_PERMS // N_SCIPY_PERMS} extrapolated"
    _record(f"permutation test {N_PERMS} perms vs scipy", fast, base, note)
    benchmark.extra_info.update(scipy_extrapolated_s=base, ratio=base / fast, note=note)


def test_permutation_fastenc_vs_rsatoolbox(benchmark):
    pytest.importorskip("rsatoolbox")
    a, b = _matrices()
    res = benchmark.pedantic(rsa.permutation_test, args=(a, b), kwargs=dict(n_permutations=N_PERMS),
                             rounds=3, iterations=1)
    fast = benchmark.stats.stats.min
    perms = res.permutations[:N_RSATB_PERMS]
    t, null = _timeit(lambda: rsatoolbox_permutation_batch(a, b, perms))
    np.testing.assert_allclose(null, res.null_distribution[:N_RSATB_PERMS], atol=1e-10)
    base = t * N_PERMS / N_RSATB_PERMS
    note = (f"rsatoolbox permute_rdms + batched compare, {N_RSATB_PERMS} perms timed, "
            f"x{N_PERMS // N_RSATB_PERMS} extrapolated")
    _record(f"permutation test {N_PERMS} perms vs rsatoolbox", fast, base, note)
    benchmark.extra_info.update(rsatoolbox_extrapolated_s=base, ratio=base / fast, note=note)


def test_cv_best_layer_vs_study_loop(benchmark):
    from fastenc.splits import seed_splits

    layers, parts = _cv_data()
    masks = seed_splits()
    res = benchmark.pedantic(rsa.cv_best_layer, args=(layers, parts),
                             kwargs=dict(splits=masks, noise_ceiling=False), rounds=3, iterations=1)
    fast = benchmark.stats.stats.min
    t, ref = _timeit(lambda: study_cv_loop(layers, parts, masks))
    np.testing.assert_allclose(res.score, ref, atol=1e-10)
    note = f"study loop, {N_LAYERS} layers x {N_UNITS} units, {N_PART} participants x {N_VOX} voxels, 10 splits"
    _record("CV best layer (1 model)", fast, t, note)
    benchmark.extra_info.update(study_loop_s=t, ratio=t / fast, note=note)


if __name__ == "__main__":
    from fastenc.splits import seed_splits

    a, b = _matrices()
    rsa.permutation_test(a, b, n_permutations=10)
    fast, res = _timeit(lambda: rsa.permutation_test(a, b, n_permutations=N_PERMS), repeat=5)
    t, _ = _timeit(lambda: scipy_permutation_loop(a, b, res.permutations[:N_SCIPY_PERMS]))
    _record(f"permutation test {N_PERMS} perms vs scipy", fast, t * N_PERMS / N_SCIPY_PERMS,
            f"{N_SCIPY_PERMS} perms timed, extrapolated")
    t, _ = _timeit(lambda: rsatoolbox_permutation_batch(a, b, res.permutations[:N_RSATB_PERMS]))
    _record(f"permutation test {N_PERMS} perms vs rsatoolbox", fast, t * N_PERMS / N_RSATB_PERMS,
            f"{N_RSATB_PERMS} perms timed, extrapolated")
    layers, parts = _cv_data()
    masks = seed_splits()
    rsa.cv_best_layer(layers[:1], parts[:2], splits=masks)
    fast, _ = _timeit(lambda: rsa.cv_best_layer(layers, parts, splits=masks, noise_ceiling=False), repeat=3)
    t, _ = _timeit(lambda: study_cv_loop(layers, parts, masks))
    _record("CV best layer (1 model)", fast, t, "study loop")
    print_summary()
