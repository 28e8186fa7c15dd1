"""Benchmarks: ``fastenc.score_layer`` on general datasets (issue #12, "Fast, and shown to be").

Run from the repository root::

    python -m pytest bench/bench_datasets.py --benchmark-only -p no:cacheprovider

A layer of 4,096 units is scored against 20,000 targets x 2 repetitions (per target and split
3 ridge fits, as ``score_layer`` does for repeated data: the mean response and each
repetition), alpha per target from the study grid ``fastenc.study_alphas()`` (10**49 ...
10**-50, 100 alphas), on 5-fold splits ``fastenc.kfold_splits(n, 5, seed=0)``, for

* n = 1,000 stimuli (800 train / 200 test per split), and
* n = 3,000 stimuli (2,400 train / 600 test per split).

Per case, in this order:

* ``test_fastenc``                fastenc.score_layer, each run in a fresh subprocess that also
                                  reports its peak memory (Linux VmHWM, reset after imports and
                                  data generation, as ``bench_ridge.test_peak_memory`` does).
                                  Timed on split 0 at two target counts (SUBSET/4 and SUBSET),
                                  time = a + b * targets fitted through the two; the whole layer
                                  (all targets, 5 splits) is then *measured* if that fit predicts
                                  <= FULL_MAX_S, else *extrapolated* (5 * (a + b * targets)), and
                                  the peak memory likewise (linear in the targets; the splits run
                                  one after the other, so one split's peak is the layer's).
* ``test_peer_himalaya_kernel``   himalaya ``KernelRidgeCV(kernel="linear")`` (numpy backend,
                                  its own inner cv=5, alpha per target), fit on split 0's train
                                  stimuli + predict its test stimuli, at two target counts,
                                  extrapolated as above x 5 splits.
* ``test_peer_himalaya_ridge``    himalaya ``RidgeCV`` (same settings, primal solver), same basis.
* ``test_guard_numpy_matches_fastenc``  correctness, not timing: fastenc's test r (and the
                                  reliabilities and r2_c) equal a plain numpy exact-LOO peer
                                  written here from first principles, to 1e-8, on the first
                                  GUARD_TARGETS targets of every split the fastenc subprocess
                                  scored (5 splits when the layer was measured, else split 0).

The data are synthetic (:func:`make_dataset`): study-like activations at any n (power-law
latent spectrum, ReLU, per-unit gain) and responses = baseline + signal + independent noise
per repetition. A summary table (machine, load average, times, ratios, memory, guard) is
printed at the end of the session; ``FASTENC_BENCH_DS_JSON=path`` also writes it as JSON.

Environment variables (defaults = the issue's sizes):

    FASTENC_BENCH_DS_N              1000,3000   stimulus counts (cases)
    FASTENC_BENCH_DS_TARGETS        20000       targets (voxels / electrodes / cells)
    FASTENC_BENCH_DS_REPS           2           repetitions
    FASTENC_BENCH_DS_UNITS          4096        units of the layer
    FASTENC_BENCH_DS_FOLDS          5           k of the k-fold splits
    FASTENC_BENCH_DS_SUBSET         1600        fastenc: larger timed target count (and /4)
    FASTENC_BENCH_DS_FULL_MAX_S     180         measure fastenc's whole layer if predicted <= this
    FASTENC_BENCH_DS_KERNEL_SUBSET  400         KernelRidgeCV: larger timed target count (and /4)
    FASTENC_BENCH_DS_RIDGE_SUBSET   800         RidgeCV: larger timed target count (and /4)
    FASTENC_BENCH_DS_RIDGE_MAX_N    1000        RidgeCV only for n <= this (at 3,000 one split's
                                                fit takes > 6 min on the 2-core machine)
    FASTENC_BENCH_DS_GUARD_TARGETS  50          targets of the correctness guard
    FASTENC_BENCH_DS_THREADS        all         n_threads of fastenc
    FASTENC_BENCH_DS_JSON           -           write the results to this JSON file
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import synth  # noqa: E402
from benchutil import PROC_MEMORY, env_int as _env_int, env_ints as _env_ints, machine_description  # noqa: E402


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------


N_CASES = _env_ints("FASTENC_BENCH_DS_N", (1000, 3000))
TARGETS = _env_int("FASTENC_BENCH_DS_TARGETS", 20000)
REPS = _env_int("FASTENC_BENCH_DS_REPS", 2)
UNITS = _env_int("FASTENC_BENCH_DS_UNITS", 4096)
FOLDS = _env_int("FASTENC_BENCH_DS_FOLDS", 5)
SUBSET = min(_env_int("FASTENC_BENCH_DS_SUBSET", 1600), TARGETS)
FULL_MAX_S = float(_env_int("FASTENC_BENCH_DS_FULL_MAX_S", 180))
KERNEL_SUBSET = min(_env_int("FASTENC_BENCH_DS_KERNEL_SUBSET", 400), TARGETS)
RIDGE_MAX_N = _env_int("FASTENC_BENCH_DS_RIDGE_MAX_N", 1000)
RIDGE_SUBSET = min(_env_int("FASTENC_BENCH_DS_RIDGE_SUBSET", 800), TARGETS)
GUARD_TARGETS = min(_env_int("FASTENC_BENCH_DS_GUARD_TARGETS", 50), max(1, SUBSET // 4))
THREADS = _env_int("FASTENC_BENCH_DS_THREADS", 0) or None
FITS = REPS + 1 if REPS >= 2 else 1   # fits per target and split (mean + each repetition)


def _alphas():
    import fastenc

    return fastenc.study_alphas()


# ---------------------------------------------------------------------------------------
# synthetic data at any n
# ---------------------------------------------------------------------------------------
def _top_pcs(Xc, k, rng, n_iter=3):
    """Leading k left singular vectors of ``Xc`` (randomised subspace iteration; exact enough
    for building responses, and fast at n = 3,000 where a full SVD takes a minute)."""
    Q, _ = np.linalg.qr(Xc @ rng.standard_normal((Xc.shape[1], k + 10)))
    for _ in range(n_iter):
        Q, _ = np.linalg.qr(Xc @ (Xc.T @ Q))
    Ub, _, _ = np.linalg.svd(Q.T @ Xc, full_matrices=False)
    return (Q @ Ub)[:, :k]


def make_dataset(n_stimuli, n_targets, n_units=UNITS, n_reps=REPS, seed=0, n_pcs=30, null_fraction=0.2,
                 layer_share=0.7, snr_log_mean=-0.3, snr_log_sd=0.8, chunk=2048):
    """Synthetic dataset: ``X`` (stimuli, units) float32, ``Y`` (stimuli, targets, reps) float64.

    * ``X``: :func:`synth.make_activations` at ``n_stimuli`` (the study-shaped generator of
      ``bench/synth.py``, which takes any n): ReLU of random projections of a latent code with
      power-law singular values (k**-1), per-unit log-normal gain, ~40 % zeros. The centred
      train Gram of a split has full rank and a decaying spectrum (n = 1,000: eigenvalues
      3e2 ... 7e7; n = 3,000: 5e1 ... 5e8), so chosen alphas spread over the grid.
    * ``Y``: baseline (~1) + signal + independent N(0, 1) noise per repetition; the signal
      mixes a layer-predictable part (random combination of the top ``n_pcs`` principal
      components of the centred activations, weights decaying as k**-0.5) and a shared part
      not in the layer; per-target SNR log-normal, ``null_fraction`` of the targets pure noise.

    Prefix-stable: the first T targets are the same for any ``n_targets >= T`` (every chunk
    of ``chunk`` targets has its own seeded generator and full-size draws), so subsets of a
    larger dataset and a smaller dataset built in another process agree exactly.
    """
    rng = np.random.default_rng(seed)
    X = synth.make_activations(rng, n_stimuli=n_stimuli, n_units=n_units)
    Xc = X.astype(np.float64)
    Xc -= Xc.mean(axis=0)
    k = min(n_pcs, n_stimuli - 1)
    pcs = _top_pcs(Xc, k, rng) * (np.arange(1, k + 1) ** -0.5)[None, :]
    del Xc
    shared = rng.standard_normal((n_stimuli, 10))
    Y = np.empty((n_stimuli, n_targets, n_reps))
    for c, v0 in enumerate(range(0, n_targets, chunk)):
        v1 = min(v0 + chunk, n_targets)
        m = v1 - v0
        r = np.random.default_rng([seed, 1 + c])
        snr = r.lognormal(snr_log_mean, snr_log_sd, size=chunk)
        snr[r.random(chunk) < null_fraction] = 0.0
        base = r.normal(1.0, 0.3, size=chunk)
        a = pcs @ r.standard_normal((k, chunk))
        b = shared @ r.standard_normal((shared.shape[1], chunk))
        a /= a.std(axis=0)
        b /= b.std(axis=0)
        sig = (np.sqrt(layer_share) * a + np.sqrt(1.0 - layer_share) * b) * snr[None, :]
        noise = r.standard_normal((n_stimuli, chunk, n_reps))
        Y[:, v0:v1, :] = ((base[None, :] + sig)[:, :, None] + noise)[:, :m, :]
    return X, Y


def stack_fits(Y):
    """(stimuli, targets, reps) -> (stimuli, FITS * targets): per target [mean, rep 0, rep 1, ...]."""
    if Y.shape[2] < 2:
        return Y.reshape(Y.shape[0], -1)
    return np.concatenate([Y.mean(axis=2)[:, :, None], Y], axis=2).reshape(Y.shape[0], -1)


# ---------------------------------------------------------------------------------------
# results and the end-of-session summary (own plugin: conftest's table is bench_ridge's)
# ---------------------------------------------------------------------------------------
@dataclass(eq=False)  # hashable: registered as a pytest plugin
class _Report:
    start_load: tuple
    rows: list = field(default_factory=list)       # dicts: case, method, seconds, basis
    memory: dict = field(default_factory=dict)     # case -> dict
    guard: dict = field(default_factory=dict)      # case -> dict
    fastenc_runs: dict = field(default_factory=dict)  # case -> child outputs (guard uses the saved r)

    def fastenc_time(self, case):
        for r in self.rows:
            if r["case"] == case and r["method"] == "fastenc":
                return r["seconds"]
        return None

    def add(self, benchmark, case, method, seconds, basis, **extra):
        fe = self.fastenc_time(case)
        ratio = seconds / fe if (fe and method != "fastenc") else None
        row = dict(case=case, method=method, seconds=seconds, basis=basis, ratio_vs_fastenc=ratio, **extra)
        self.rows.append(row)
        if benchmark is not None:
            benchmark.extra_info.update(row)
        return row

    def pytest_terminal_summary(self, terminalreporter):
        if not (self.rows or self.memory or self.guard):
            return
        tr = terminalreporter
        tr.section("fastenc dataset benchmark summary (bench_datasets.py)")
        m = machine_description()
        end_load = _loadavg()
        tr.write_line(f"machine: {m['cpu']}, {m['cores']} cores; python {m['python']}, numpy {m['numpy']} "
                      f"({m['blas']}), numba {m['numba']}, scipy {m['scipy']}, himalaya {m['himalaya']}")
        tr.write_line(f"load average at start {self.start_load[0]:.2f} / {self.start_load[1]:.2f} / "
                      f"{self.start_load[2]:.2f} (1/5/15 min), at end {end_load[0]:.2f} / {end_load[1]:.2f} / "
                      f"{end_load[2]:.2f} (> ~0.5 per core means shared, noisy timings)")
        tr.write_line(f"sizes: {UNITS} units, {TARGETS:,} targets x {REPS} repetitions ({FITS} fits per target "
                      f"and split), {FOLDS}-fold splits, {len(_alphas())} alphas; cases n = {N_CASES}")
        tr.write_line("")
        hdr = f"{'case':7s} {'method':40s} {'per layer':>10s} {'vs fastenc':>10s}  basis"
        tr.write_line(hdr)
        tr.write_line("-" * len(hdr))
        for r in self.rows:
            ratio = f"{r['ratio_vs_fastenc']:.1f}x" if r["ratio_vs_fastenc"] else "-"
            tr.write_line(f"{r['case']:7s} {r['method']:40s} {_fmt_s(r['seconds']):>10s} {ratio:>10s}  {r['basis']}")
        for case, mem in self.memory.items():
            tr.write_line(f"peak memory, fastenc.score_layer, {case}: {mem['summary']}")
        for case, g in self.guard.items():
            tr.write_line(f"guard {case}: {g}")
        out = os.environ.get("FASTENC_BENCH_DS_JSON")
        if out:
            with open(out, "w") as f:
                json.dump(dict(machine=m, load_start=self.start_load, load_end=end_load,
                               sizes=dict(n=N_CASES, targets=TARGETS, reps=REPS, units=UNITS, folds=FOLDS),
                               rows=self.rows, memory=self.memory, guard=self.guard), f, indent=1, default=str)
            tr.write_line(f"results written to {out}")


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def _fmt_s(x):
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.2f} h"
    return f"{x:.2f} s" if x < 100 else f"{x:,.0f} s"


_REPORT = _Report(start_load=_loadavg())


@pytest.fixture(scope="session", autouse=True)
def _report_plugin(request):
    pm = request.config.pluginmanager
    if not pm.is_registered(_REPORT):
        pm.register(_REPORT, "fastenc_bench_datasets_report")
    return _REPORT


# ---------------------------------------------------------------------------------------
# data fixtures
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=N_CASES, ids=[f"n{n}" for n in N_CASES])
def case(request):
    """(label, n, X, Y) with the targets the in-process peers and the guard use (the fastenc
    subprocesses build their own, identical, targets: :func:`make_dataset` is prefix-stable)."""
    n = request.param
    T = max(KERNEL_SUBSET, RIDGE_SUBSET, GUARD_TARGETS)
    X, Y = make_dataset(n, T)
    return f"n={n}", n, X, Y


def _masks(n):
    import fastenc

    return fastenc.kfold_splits(n, FOLDS, seed=0)


def _line(T_small, v_small, T_big, v_big, T_full):
    """Straight line through two (targets, value) points (slope clamped at >= 0), at ``T_full``."""
    b = max((v_big - v_small) / (T_big - T_small), 0.0) if T_big > T_small else 0.0
    return v_big + b * (T_full - T_big), b


def _affine(T_small, t_small, T_big, t_big, T_full, what, peer=True):
    """Time (or memory) = a + b * targets through two points, evaluated at ``T_full``.

    Without a positive slope (timing noise) the estimate errs against fastenc: a peer's time is
    taken as constant in the targets (a lower bound), fastenc's as proportional (an upper bound)."""
    b = (t_big - t_small) / (T_big - T_small) if T_big > T_small else -1.0
    if b > 0:
        a = max(t_big - b * T_big, 0.0)
        return a + b * T_full, a, b, (f"{what} at {T_small:,} and {T_big:,} targets ({t_small:.2f}, {t_big:.2f}): "
                                      f"{a:.2f} + {b * 1e3:.3f}e-3 x targets")
    if not peer:
        return t_big * T_full / T_big, 0.0, t_big / T_big, (f"{what} at {T_big:,} targets ({t_big:.2f}; {T_small:,} "
                                                             f"gave {t_small:.2f}, noisy), proportional (an upper bound)")
    return t_big, t_big, 0.0, (f"{what} at {T_small:,} and {T_big:,} targets ({t_small:.2f}, {t_big:.2f}): "
                               "no per-target slope above the noise, taken as constant (a lower bound)")


# ---------------------------------------------------------------------------------------
# fastenc, in a fresh subprocess (time + peak memory)
# ---------------------------------------------------------------------------------------
_CHILD = r"""
import json, sys, time
""" + PROC_MEMORY + r"""
a = json.loads(sys.argv[1])
sys.path.insert(0, a["bench_dir"])
import numpy as np
import fastenc
from bench_datasets import make_dataset

X, Y = make_dataset(a["n"], a["targets"])
masks = fastenc.kfold_splits(a["n"], a["folds"], seed=0)[:a["splits"]]
rng = np.random.default_rng(1)
fastenc.score_layer(rng.random((165, 32)), rng.standard_normal((165, 8, 3)))  # JIT cache load
setup_peak = status_mb("VmHWM")
before = status_mb("VmRSS")
ok = reset_hwm()
t0 = time.perf_counter()
s = fastenc.score_layer(X, Y, splits=masks, n_threads=a["threads"])
dt = time.perf_counter() - t0
peak = status_mb("VmHWM") if ok else float("nan")
if a.get("save"):
    g = a["save_targets"]
    np.savez(a["save"], **{k: getattr(s, k)[:g] for k in ("r_prior_zero", "rv", "rv_hat", "r2_test_c", "alpha_index")})
print(json.dumps(dict(seconds=dt, rss_before_mb=before, call_peak_rss_mb=peak, call_increase_mb=peak - before,
                      setup_peak_mb=setup_peak, hwm_reset=ok, input_mb=(X.nbytes + Y.nbytes) / 2**20,
                      targets=a["targets"], splits=a["splits"])))
"""


def _run_child(n, targets, splits, save=None):
    args = dict(bench_dir=BENCH_DIR, n=n, targets=targets, folds=FOLDS, splits=splits, threads=THREADS,
                save=str(save) if save else None, save_targets=GUARD_TARGETS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(BENCH_DIR), env.get("PYTHONPATH", "")])
    p = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                       env=env, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_fastenc(benchmark, case, tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("peak memory from /proc (Linux)")
    label, n, _, _ = case
    benchmark.group = label
    d = tmp_path_factory.mktemp(f"fastenc_n{n}")
    Tq, Ts = max(GUARD_TARGETS, SUBSET // 4), SUBSET
    runs = {}

    def measure():
        runs["small"] = _run_child(n, Tq, 1, save=d / "guard_small.npz")
        runs["big"] = _run_child(n, Ts, 1)
        pred, a, b, fit = _affine(Tq, runs["small"]["seconds"], Ts, runs["big"]["seconds"], TARGETS, "split 0 timed", peer=False)
        if FOLDS * pred <= FULL_MAX_S:
            runs["full"] = _run_child(n, TARGETS, FOLDS, save=d / "guard_full.npz")
        return FOLDS * pred, fit

    pred_layer, fit = benchmark.pedantic(measure, rounds=1, iterations=1, warmup_rounds=0)
    if "full" in runs:
        full = runs["full"]
        seconds = full["seconds"]
        basis = (f"measured: all {TARGETS:,} targets x {FOLDS} splits (subset fit had predicted "
                 f"{pred_layer:.1f} s: {fit})")
        mem = dict(full)
        mem["summary"] = (f"measured, {TARGETS:,} targets: peak RSS during the call {full['call_peak_rss_mb']:,.0f} MB "
                          f"= {full['rss_before_mb']:,.0f} MB before it (interpreter, imports, X and Y: "
                          f"{full['input_mb']:,.0f} MB of input) + {full['call_increase_mb']:,.0f} MB for the call")
        save = d / "guard_full.npz"
    else:
        seconds = pred_layer
        basis = f"extrapolated: {fit} -> {TARGETS:,} targets, x {FOLDS} splits"
        sm, bg = runs["small"], runs["big"]
        peak, pb = _line(Tq, sm["call_peak_rss_mb"], Ts, bg["call_peak_rss_mb"], TARGETS)
        before, _ = _line(Tq, sm["rss_before_mb"], Ts, bg["rss_before_mb"], TARGETS)
        mem = dict(small=sm, big=bg, call_peak_rss_mb=peak, rss_before_mb=before, call_increase_mb=peak - before)
        mem["summary"] = (f"extrapolated linearly in the targets from split 0 runs at {Tq:,} targets (peak "
                          f"{sm['call_peak_rss_mb']:,.0f} MB, {sm['rss_before_mb']:,.0f} MB before the call) and "
                          f"{Ts:,} ({bg['call_peak_rss_mb']:,.0f} MB, {bg['rss_before_mb']:,.0f} MB before), "
                          f"{pb:.3f} MB per target -> {TARGETS:,} targets: peak RSS during the call ~{peak:,.0f} MB "
                          f"(~{before:,.0f} MB before it, ~{peak - before:,.0f} MB for the call; one split's peak is "
                          "the layer's: splits run one after the other)")
        save = d / "guard_small.npz"
    _REPORT.fastenc_runs[label] = dict(runs=runs, guard_file=str(save), guard_splits=(FOLDS if "full" in runs else 1))
    _REPORT.memory[label] = mem
    _REPORT.add(benchmark, label, "fastenc", seconds, basis, runs=runs)
    assert seconds > 0


# ---------------------------------------------------------------------------------------
# himalaya peers: split 0 at two target counts, extrapolated
# ---------------------------------------------------------------------------------------
def himalaya_kernel(X, Yf, train, test, alphas):
    """himalaya ``KernelRidgeCV(kernel="linear")``, numpy backend, its own inner cv=5, alpha per target."""
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV

    set_backend("numpy", on_error="raise")
    X = np.asarray(X, dtype=np.float64)
    m = KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True, cv=5).fit(X[train], Yf[train])
    return np.asarray(m.predict(X[test]))


def himalaya_ridge(X, Yf, train, test, alphas):
    """himalaya ``RidgeCV`` (primal, SVD solver), numpy backend, its own inner cv=5, alpha per target."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    set_backend("numpy", on_error="raise")
    X = np.asarray(X, dtype=np.float64)
    m = RidgeCV(alphas=alphas, fit_intercept=True, cv=5, solver_params=dict(warn=False)).fit(X[train], Yf[train])
    return np.asarray(m.predict(X[test]))


def _peer(benchmark, case, fn, method, subset):
    pytest.importorskip("himalaya")
    label, n, X, Y = case
    benchmark.group = label
    mask = _masks(n)[0]
    train, test = np.flatnonzero(mask), np.flatnonzero(~mask)
    alphas = _alphas()
    with warnings.catch_warnings():  # imports, first-call overheads (64 units: himalaya warns n > p)
        warnings.simplefilter("ignore", UserWarning)
        fn(X[:, :64], stack_fits(Y[:, :2]), train, test, alphas)
    Tq, Ts = max(1, subset // 4), subset
    times = {}

    def run():
        for T in (Tq, Ts):
            Yf = stack_fits(Y[:, :T])
            t0 = time.perf_counter()
            pred = fn(X, Yf, train, test, alphas)
            times[T] = time.perf_counter() - t0
            assert pred.shape == (test.size, FITS * T)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    per_split, a, b, fit = _affine(Tq, times[Tq], Ts, times[Ts], TARGETS, "split 0 timed")
    _REPORT.add(benchmark, label, method, FOLDS * per_split,
                f"extrapolated: {fit} -> {TARGETS:,} targets, x {FOLDS} splits",
                split_fixed_s=a, split_per_target_s=b, timed=times)


@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_himalaya_kernel(benchmark, case):
    _peer(benchmark, case, himalaya_kernel, "himalaya KernelRidgeCV linear (cv=5)", KERNEL_SUBSET)


@pytest.mark.peer
@pytest.mark.slowpeer
def test_peer_himalaya_ridge(benchmark, case):
    if case[1] > RIDGE_MAX_N:
        pytest.skip(f"himalaya RidgeCV at n = {case[1]} > FASTENC_BENCH_DS_RIDGE_MAX_N = {RIDGE_MAX_N}: one fit of "
                    "split 0 (5 inner SVDs of 1,920 x 4,096 + 100 alphas) takes > 6 min here even for 6 targets")
    _peer(benchmark, case, himalaya_ridge, "himalaya RidgeCV (cv=5)", RIDGE_SUBSET)


# ---------------------------------------------------------------------------------------
# correctness guard: a plain numpy exact-LOO peer, from first principles
# ---------------------------------------------------------------------------------------
def numpy_exact_loo(X, Yf, train, test, alphas):
    """Exact leave-one-out ridge with an unpenalised intercept, every column of ``Yf``, one split.

    Returns (alpha index, centred test predictions). From first principles:

    * centre the train features, ``K = Xc Xc^T`` (n x n): the centred train Gram. The constant
      vector is in its null space and belongs to the intercept, so ``K`` is eigendecomposed on
      the complement of 1: ``B`` an orthonormal basis of that complement (QR of ``[1, e_2, ...]``),
      ``B^T K B = W diag(lam) W^T``, ``Q = B W`` (n x n-1, ``Q Q^T = I - 11^T/n``);
    * hat matrix ``H = 11^T/n + Q diag(lam/(lam+a)) Q^T``, so ``I - H = Q diag(d) Q^T`` with
      ``d = a/(lam+a)``: the in-sample residuals are ``Q (d * Q^T y)``, ``diag(I - H) = Q**2 @ d``,
      and the LOO residuals are their ratio (the closed form for linear smoothers);
    * LOO sum of squares over the whole grid; the argmin is the *first* minimum in grid order;
    * centred test prediction ``(X_test - xbar) Xc^T Q diag(1/(lam+a)) Q^T y``.
    """
    X = np.asarray(X, dtype=np.float64)
    xm = X[train].mean(axis=0)
    Xc = X[train] - xm
    n = Xc.shape[0]
    A = np.eye(n)
    A[:, 0] = 1.0
    B = np.linalg.qr(A)[0][:, 1:]
    lam, W = np.linalg.eigh(B.T @ (Xc @ Xc.T) @ B)
    lam = np.where(lam > n * np.finfo(float).eps * lam.max(), lam, 0.0)
    Q = B @ W
    Z = Q.T @ Yf[train]
    Q2 = Q ** 2
    best = np.full(Yf.shape[1], np.inf)
    idx = np.zeros(Yf.shape[1], dtype=np.int64)
    for i, a in enumerate(alphas):
        d = a / (lam + a)
        E = (Q @ (d[:, None] * Z)) / (Q2 @ d)[:, None]
        sse = np.einsum("ij,ij->j", E, E)
        better = sse < best
        best[better] = sse[better]
        idx[better] = i
    P = (X[test] - xm) @ Xc.T @ Q
    inv = np.where(lam[:, None] > 0, 1.0 / (lam[:, None] + alphas[idx][None, :]), 0.0)
    return idx, P @ (inv * Z)


def _pearson(A, B):
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("ij,ij->j", A, B) / np.sqrt(np.einsum("ij,ij->j", A, A) * np.einsum("ij,ij->j", B, B))


def _sb(r, k):
    return k * r / (1.0 + (k - 1.0) * r)


def numpy_scores(X, Y, masks, alphas):
    """Test r (mean fit), rv, rv_hat, r2_c per target and split, with :func:`numpy_exact_loo`
    (two repetitions: one pair; Spearman–Brown to 2; floors = one-tailed p < .05 critical r)."""
    from fastenc.scoring import critical_r

    T, R = Y.shape[1], Y.shape[2]
    assert R == 2, "the guard's noise correction is written for 2 repetitions"
    Yf = stack_fits(Y)
    out = {k: np.zeros((T, len(masks))) for k in ("r_prior_zero", "rv", "rv_hat")}
    out["alpha_index"] = np.zeros((T, len(masks)), dtype=np.int64)
    for s, mask in enumerate(masks):
        train, test = np.flatnonzero(mask), np.flatnonzero(~mask)
        idx, pred = numpy_exact_loo(X, Yf, train, test, alphas)
        P = pred.reshape(test.size, T, 3)
        out["r_prior_zero"][:, s] = np.nan_to_num(_pearson(P[:, :, 0], Y[test].mean(axis=2)), nan=0.0)
        out["alpha_index"][:, s] = idx[::3]
        for key, rr, floor in (("rv", _pearson(Y[train][:, :, 0], Y[train][:, :, 1]), critical_r(train.size)),
                               ("rv_hat", _pearson(P[:, :, 1], P[:, :, 2]), critical_r(test.size))):
            sb = _sb(rr, 2)
            out[key][:, s] = np.where(np.isnan(sb), floor, np.maximum(sb, floor))
    out["r2_test_c"] = np.maximum(out["r_prior_zero"], 0.0) ** 2 / (out["rv"] * out["rv_hat"])
    return out


@pytest.mark.guard
def test_guard_numpy_matches_fastenc(benchmark, case):
    """fastenc (from the fastenc subprocess's saved scores) == the numpy exact-LOO peer, to 1e-8."""
    label, n, X, Y = case
    benchmark.group = "guard"
    if REPS != 2:
        pytest.skip("the guard's noise correction is written for 2 repetitions")
    info = _REPORT.fastenc_runs.get(label)
    if info is not None:
        fe = dict(np.load(info["guard_file"]))
        n_splits, source = info["guard_splits"], "fastenc subprocess of test_fastenc"
    else:  # test_fastenc deselected: score the guard targets here, split 0
        import fastenc

        s = fastenc.score_layer(X, Y[:, :GUARD_TARGETS], splits=_masks(n)[:1], n_threads=THREADS)
        fe = {k: getattr(s, k) for k in ("r_prior_zero", "rv", "rv_hat", "r2_test_c", "alpha_index")}
        n_splits, source = 1, "in-process fastenc"
    G = GUARD_TARGETS
    pe = benchmark.pedantic(lambda: numpy_scores(X, Y[:, :G], _masks(n)[:n_splits], _alphas()),
                            rounds=1, iterations=1, warmup_rounds=0)
    dr = np.abs(fe["r_prior_zero"][:G] - pe["r_prior_zero"])
    drv = np.abs(fe["rv"][:G] - pe["rv"])
    drh = np.abs(fe["rv_hat"][:G] - pe["rv_hat"])
    dc = np.abs(fe["r2_test_c"][:G] - pe["r2_test_c"]) / np.maximum(1.0, np.abs(pe["r2_test_c"]))
    g = dict(targets=G, splits=n_splits, fits_compared=int(dr.size) * FITS, fastenc_from=source,
             max_abs_diff_r=float(dr.max()), max_abs_diff_rv=float(drv.max()), max_abs_diff_rv_hat=float(drh.max()),
             max_rel_diff_r2c=float(dc.max()),
             same_alpha_frac=round(float(np.mean(fe["alpha_index"][:G] == pe["alpha_index"])), 4))
    _REPORT.guard[label] = g
    benchmark.extra_info.update(g)
    assert g["max_abs_diff_r"] <= 1e-8, g
    assert g["max_abs_diff_rv"] <= 1e-8, g
    assert g["max_abs_diff_rv_hat"] <= 1e-8, g
    assert g["max_rel_diff_r2c"] <= 1e-8, g
