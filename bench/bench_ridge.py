"""Benchmarks: ``fastenc.score_layer`` against peers doing the same work (docs/method.md §3–§4, §8).

Run from the repository root::

    python -m pytest bench/bench_ridge.py --benchmark-only -p no:cacheprovider

Per case (NH2015-shaped: 7,694 voxels; B2021-shaped: 26,792 voxels; X 165 x 4,096 and
Y x 3 repetitions, 10 splits, 100 alphas, 4 fits per voxel and split), in this order:

* ``test_fastenc``                  fastenc.score_layer on the whole layer (best of N rounds);
* ``test_fastenc_targets_reused``   the same with ``prepare_targets`` done once outside
                                    (how a pipeline scores many layers against one dataset);
* ``test_peer_numpy``               (d) plain numpy batched exact LOO, whole layer, measured;
* ``test_peer_sklearn_per_fit``     (a) one sklearn RidgeCV per target and split: a sample of
                                    fits is timed and extrapolated to the layer;
* ``test_peer_sklearn_alpha_per_target``  (b) sklearn RidgeCV(alpha_per_target=True), one split
                                    on a subset of targets, extrapolated;
* ``test_peer_himalaya``            (c) himalaya RidgeCV (numpy backend, cv=5), same approach;
* ``test_peer_himalaya_kernel``     (c') himalaya KernelRidgeCV(kernel="linear"), same approach;
* ``test_peak_memory``              peak RSS of fastenc.score_layer in a fresh subprocess;
* ``test_guard_numpy_matches_fastenc``  (NH2015 only) correctness guard, not a timing.

Each test puts ``layer_seconds``, ``basis`` (measured / extrapolated) and
``ratio_vs_fastenc`` (peer / fastenc) in ``benchmark.extra_info``; a summary table is printed
at the end of the session (``bench/conftest.py``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import fastenc
from benchutil import PROC_MEMORY  # noqa: E402
import peers
from conftest import BENCH_DIR, CONFIG


def _timed(fn, times):
    def run():
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        return out
    return run


def _n_voxels(Y):
    return Y.shape[1]


# ---------------------------------------------------------------------------------------
# fastenc
# ---------------------------------------------------------------------------------------
def test_fastenc(benchmark, layer, study_masks, recorder):
    case, X, Y = layer
    benchmark.group = case
    times = []
    res = benchmark.pedantic(_timed(lambda: fastenc.score_layer(X, Y, splits=study_masks,
                                                               n_threads=CONFIG.threads), times),
                             rounds=CONFIG.rounds, iterations=1, warmup_rounds=0)
    assert res.r2_test_c.shape == (_n_voxels(Y), CONFIG.splits)
    assert np.all(np.isfinite(res.r2_test_c))
    recorder.add(benchmark, case, "fastenc", min(times), f"measured, best of {len(times)}",
                 median_s=float(np.median(times)), n_voxels=_n_voxels(Y))


def test_fastenc_targets_reused(benchmark, layer, study_masks, recorder):
    case, X, Y = layer
    benchmark.group = case
    targets = fastenc.prepare_targets(Y)
    times = []
    benchmark.pedantic(_timed(lambda: fastenc.score_layer(X, targets, splits=study_masks,
                                                         n_threads=CONFIG.threads), times),
                       rounds=CONFIG.rounds, iterations=1, warmup_rounds=0)
    recorder.add(benchmark, case, "fastenc (Targets prepared once)", min(times),
                 f"measured, best of {len(times)}", median_s=float(np.median(times)))


# ---------------------------------------------------------------------------------------
# (d) numpy batched exact LOO, whole layer
# ---------------------------------------------------------------------------------------
@pytest.mark.peer
def test_peer_numpy(benchmark, layer, recorder):
    case, X, Y = layer
    benchmark.group = case
    times = []
    res = benchmark.pedantic(_timed(lambda: peers.numpy_score_layer(X, Y, n_splits=CONFIG.splits), times),
                             rounds=CONFIG.peer_rounds, iterations=1, warmup_rounds=0)
    assert res["r2_test_c"].shape == (_n_voxels(Y), CONFIG.splits)
    recorder.add(benchmark, case, "(d) numpy batched exact LOO", min(times),
                 f"measured, best of {len(times)}", median_s=float(np.median(times)))


# ---------------------------------------------------------------------------------------
# (a) sklearn, one RidgeCV per target and split (the study)
# ---------------------------------------------------------------------------------------
@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_sklearn_per_fit(benchmark, layer, recorder):
    case, X, Y = layer
    benchmark.group = case
    V = _n_voxels(Y)
    rng = np.random.default_rng(0)
    n = CONFIG.sk_fits
    vox = rng.choice(V, size=n, replace=V < n)
    kind = rng.integers(0, 4, size=n)          # mean fit or one repetition
    split = rng.integers(0, CONFIG.splits, size=n)
    Y4 = peers.stack_targets(Y[:, vox])        # columns 4*i + kind
    jobs = [(4 * i + int(kind[i]), int(split[i])) for i in range(n)]
    splits = peers.study_splits(CONFIG.splits)
    peers.sklearn_per_fit(X, Y4, jobs[:1], splits)  # import + first call, not timed
    times = []
    benchmark.pedantic(_timed(lambda: peers.sklearn_per_fit(X, Y4, jobs, splits), times),
                       rounds=CONFIG.peer_rounds, iterations=1, warmup_rounds=0)
    per_fit = min(times) / n
    n_fits = 4 * V * CONFIG.splits
    recorder.add(benchmark, case, "(a) sklearn RidgeCV, 1 fit/target", per_fit * n_fits,
                 f"extrapolated: {n} fits timed ({per_fit * 1e3:.1f} ms/fit) x {n_fits:,} fits",
                 per_fit_seconds=per_fit, n_fits_timed=n, n_fits_layer=n_fits)


# ---------------------------------------------------------------------------------------
# (b), (c): all targets of a split at once, timed on one split and a subset of targets
# ---------------------------------------------------------------------------------------
def _split_subset_peer(benchmark, layer, recorder, fn, label, warm):
    """Time ``fn`` on one split for a subset of Vs voxels and for Vs/4, extrapolate affinely.

    Time per split = a + b * targets (a: per-split fixed cost such as the SVDs of the folds,
    b: per target), fitted through the two timings; layer = splits * (a + b * 4 V). If the
    two timings are inconsistent (noise: b < 0) the larger subset is scaled proportionally.
    """
    case, X, Y = layer
    benchmark.group = case
    V = _n_voxels(Y)
    Vs = min(CONFIG.subset_voxels, V)
    Vq = max(1, Vs // 4)
    split = peers.study_splits(1)[0]
    warm()  # imports and first-call overheads, outside the timed region
    Yq = peers.stack_targets(Y[:, :Vq])
    tq = []
    for _ in range(CONFIG.peer_rounds):
        t0 = time.perf_counter()
        fn(X, Yq, split)
        tq.append(time.perf_counter() - t0)
    Y4 = peers.stack_targets(Y[:, :Vs])
    times = []
    pred = benchmark.pedantic(_timed(lambda: fn(X, Y4, split), times),
                              rounds=CONFIG.peer_rounds, iterations=1, warmup_rounds=0)
    assert np.asarray(pred).shape == (len(split[1]), 4 * Vs)
    t, t_q = min(times), min(tq)
    T, Tq, T_full = 4 * Vs, 4 * Vq, 4 * V
    if Vs == V:
        layer_s = t * CONFIG.splits
        basis = f"extrapolated: 1 split timed (all {T:,} targets) x {CONFIG.splits} splits"
    else:
        b = (t - t_q) / (T - Tq) if T > Tq else -1.0
        if b > 0:
            a = max(t - b * T, 0.0)
            layer_s = CONFIG.splits * (a + b * T_full)
            basis = (f"extrapolated: 1 split timed at {Tq:,} and {T:,} targets ({t_q:.2f} s, {t:.2f} s), "
                     f"fixed {a:.2f} s + {b * 1e3:.2f} ms/target -> {T_full:,} targets x {CONFIG.splits} splits")
        else:
            layer_s = t * (T_full / T) * CONFIG.splits
            basis = (f"extrapolated: 1 split x {T:,} targets timed ({t:.2f} s; {Tq:,} targets took {t_q:.2f} s, "
                     f"noisy), proportional to {T_full:,} targets x {CONFIG.splits} splits")
    recorder.add(benchmark, case, label, layer_s, basis, split_subset_seconds=t,
                 split_quarter_subset_seconds=t_q, n_targets_timed=T, n_targets_layer=T_full)


def _warm_with(fn, X, Y):
    return lambda: fn(X, peers.stack_targets(Y[:, :2]), peers.study_splits(1)[0])


@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_sklearn_alpha_per_target(benchmark, layer, recorder):
    _, X, Y = layer
    _split_subset_peer(benchmark, layer, recorder, peers.sklearn_per_target,
                       "(b) sklearn RidgeCV alpha_per_target", _warm_with(peers.sklearn_per_target, X, Y))


@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_himalaya(benchmark, layer, recorder):
    pytest.importorskip("himalaya")
    _, X, Y = layer
    import himalaya.ridge  # noqa: F401  (import outside the timed region; the fit itself is not warmed: it is slow)
    _split_subset_peer(benchmark, layer, recorder, peers.himalaya_ridge,
                       "(c) himalaya RidgeCV (numpy, cv=5)", lambda: None)


@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_himalaya_kernel(benchmark, layer, recorder):
    pytest.importorskip("himalaya")
    _, X, Y = layer
    _split_subset_peer(benchmark, layer, recorder, peers.himalaya_kernel_ridge,
                       "(c') himalaya KernelRidgeCV linear", _warm_with(peers.himalaya_kernel_ridge, X, Y))


# ---------------------------------------------------------------------------------------
# peak memory of fastenc.score_layer, in a fresh process
# ---------------------------------------------------------------------------------------
_MEM_CHILD = r"""
import resource, sys
""" + PROC_MEMORY + r"""
hwm_reset = reset_hwm()
import json, time
import numpy as np
import fastenc

X = np.load(sys.argv[1]); Y = np.load(sys.argv[2]); n_splits = int(sys.argv[3])
threads = int(sys.argv[4]) or None
rng = np.random.default_rng(1)
fastenc.score_layer(rng.random((165, 32)), rng.standard_normal((165, 8, 3)))  # JIT cache load
setup_peak = status_mb("VmHWM")
before = status_mb("VmRSS")
hwm_reset = reset_hwm() and hwm_reset
t0 = time.perf_counter()
fastenc.score_layer(X, Y, splits=fastenc.seed_splits()[:n_splits], n_threads=threads)
dt = time.perf_counter() - t0
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
call_peak = status_mb("VmHWM") if hwm_reset else maxrss
print(json.dumps(dict(rss_before_mb=before, call_peak_rss_mb=call_peak, call_increase_mb=call_peak - before,
                      setup_peak_rss_mb=setup_peak, process_peak_rss_mb=max(call_peak, setup_peak),
                      ru_maxrss_mb=maxrss, hwm_reset=hwm_reset, seconds=dt)))
"""


@pytest.mark.memory
def test_peak_memory(benchmark, layer, recorder, tmp_path_factory):
    """Peak RSS of a fresh process that loads X, Y and scores the layer (Linux VmHWM).

    The high-water mark is reset (``/proc/self/clear_refs``) after imports, data loading
    and the JIT cache load, so ``call_peak_rss_mb`` is the peak during the call itself
    (absolute RSS, data included) and ``call_increase_mb`` what the call added.
    ``ru_maxrss`` is reported too but is not meaningful here: for a child process it
    includes the parent's (pytest's) memory at the fork.
    """
    if not sys.platform.startswith("linux"):
        pytest.skip("uses /proc and ru_maxrss in KiB (Linux)")
    case, X, Y = layer
    benchmark.group = case
    d = tmp_path_factory.mktemp(f"mem_{case}")
    np.save(d / "X.npy", X)
    np.save(d / "Y.npy", Y)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(BENCH_DIR), env.get("PYTHONPATH", "")])

    def child():
        p = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(d / "X.npy"), str(d / "Y.npy"),
                            str(CONFIG.splits), str(CONFIG.threads or 0)],
                           capture_output=True, text=True, env=env, check=False)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    mem = benchmark.pedantic(child, rounds=1, iterations=1, warmup_rounds=0)
    recorder.memory[case] = mem
    benchmark.extra_info.update(dict(case=case, method="fastenc peak memory", **mem,
                                     input_mb=(X.nbytes + Y.nbytes) / 2**20))
    assert mem["call_peak_rss_mb"] > 0


# ---------------------------------------------------------------------------------------
# correctness guard (not a timing assertion)
# ---------------------------------------------------------------------------------------
@pytest.mark.guard
def test_guard_numpy_matches_fastenc(benchmark, layer, study_masks, recorder):
    """The numpy peer (d) and fastenc give the same test r and r2_c on every fit (~1e-8).

    Both correlate the centred prediction, so fits whose alpha is far above the spectrum
    (where the peer's plain ``sse`` comparison picks an arbitrary alpha of the flat run) agree
    too: their test r is corr(Xc_test Xc^T yc, y_test) for every alpha of that run.
    """
    case, X, Y = layer
    if case != "nh2015":
        pytest.skip("guard runs on the NH2015-shaped data only")
    benchmark.group = "guard"
    G = min(CONFIG.guard_voxels, _n_voxels(Y))
    Ys = Y[:, :G]

    def both():
        return (fastenc.score_layer(X, Ys, splits=study_masks, n_threads=CONFIG.threads),
                peers.numpy_score_layer(X, Ys, n_splits=CONFIG.splits))

    fe, pe = benchmark.pedantic(both, rounds=1, iterations=1, warmup_rounds=0)
    top = fe.alpha > 1e6 * pe["lam_max"][None, :]                  # fits at the flat top
    dr = np.abs(fe.r_prior_zero - pe["r_prior_zero"])
    dc = np.abs(fe.r2_test_c - pe["r2_test_c"]) / np.maximum(1.0, np.abs(fe.r2_test_c))
    g = dict(voxels=G, splits=CONFIG.splits, fits_compared=int(dr.size),
             max_abs_diff_r=float(dr.max()), max_rel_diff_r2c=float(dc.max()),
             same_alpha_frac=round(float(np.mean(fe.alpha_index == pe["alpha_index"])), 4),
             flat_top_fits=int(top.sum()),
             flat_top_max_abs_diff_r=float(dr[top].max()) if top.any() else None,
             flat_top_max_abs_r=float(np.abs(fe.r_prior_zero[top]).max()) if top.any() else None)
    recorder.guard[case] = g
    benchmark.extra_info.update(g)
    assert g["max_abs_diff_r"] <= 1e-8, g
    assert g["max_rel_diff_r2c"] <= 1e-8, g
    # the splits written out independently in peers.py are the study's
    assert all(np.array_equal(np.flatnonzero(study_masks[s]), tr)
               for s, (tr, _) in enumerate(peers.study_splits(CONFIG.splits)))
