"""Shared fixtures, options and the end-of-session summary of the fastenc benchmarks.

Run (from the repository root)::

    python -m pytest bench/bench_ridge.py --benchmark-only -p no:cacheprovider

``bench/`` is outside ``testpaths`` (``tests/``), and ``bench_*.py`` does not match the
default ``test_*.py`` pattern, so a plain ``python -m pytest`` never collects it.

Sizes and sample counts come from environment variables (defaults = the real sizes); see
``bench/README.md``. Markers (registered here): ``b2021`` (the B2021-shaped layer),
``peer`` (every peer implementation), ``slowpeer`` (the scikit-learn and himalaya peers),
``memory`` (peak-memory subprocess), ``guard`` (numpy peer vs fastenc correctness check).
They are not called ``slow`` on purpose: the project's ``addopts = -m 'not slow'`` would
otherwise silently drop them from every run.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)

import synth  # noqa: E402
from benchutil import env_int as _env_int, machine_description  # noqa: E402


# ---------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------


@dataclass
class BenchConfig:
    units: int
    voxels: dict            # case -> voxels
    splits: int
    rounds: int             # fastenc rounds
    peer_rounds: int        # rounds of the measured peers
    sk_fits: int            # (a): sample of single fits
    subset_voxels: int      # (b), (c): voxels of the timed subset (x4 targets)
    guard_voxels: int
    threads: int | None

    @classmethod
    def from_env(cls):
        nh = _env_int("FASTENC_BENCH_VOXELS", synth.NH2015["n_voxels"])
        b21_default = (synth.B2021["n_voxels"] if "FASTENC_BENCH_VOXELS" not in os.environ
                       else max(1, round(nh * synth.B2021["n_voxels"] / synth.NH2015["n_voxels"])))
        b21 = _env_int("FASTENC_BENCH_VOXELS_B2021", b21_default)
        t = _env_int("FASTENC_BENCH_THREADS", 0)
        return cls(units=_env_int("FASTENC_BENCH_UNITS", synth.NH2015["n_units"]),
                   voxels={"nh2015": nh, "b2021": b21},
                   splits=_env_int("FASTENC_BENCH_SPLITS", 10),
                   rounds=_env_int("FASTENC_BENCH_ROUNDS", 3),
                   peer_rounds=_env_int("FASTENC_BENCH_PEER_ROUNDS", 1),
                   sk_fits=_env_int("FASTENC_BENCH_SK_FITS", 20),
                   subset_voxels=_env_int("FASTENC_BENCH_SUBSET_VOXELS", 512),
                   guard_voxels=_env_int("FASTENC_BENCH_GUARD_VOXELS", 300),
                   threads=t or None)


CONFIG = BenchConfig.from_env()


def pytest_configure(config):
    for name, doc in [
        ("b2021", "B2021-shaped layer (26,792 voxels); deselect with -m 'not b2021'"),
        ("peer", "peer implementation (scikit-learn, himalaya, numpy); deselect with -m 'not peer'"),
        ("slowpeer", "scikit-learn / himalaya peers (timed on a sample, extrapolated); -m 'not slowpeer'"),
        ("memory", "peak-memory measurement of fastenc in a subprocess"),
        ("guard", "correctness guard: numpy peer and fastenc agree"),
    ]:
        config.addinivalue_line("markers", f"{name}: {doc}")
    config._fastenc_bench = Recorder(start_load=_loadavg(), start_time=time.time())


# ---------------------------------------------------------------------------------------
# results collected across the session
# ---------------------------------------------------------------------------------------
@dataclass
class Row:
    case: str
    method: str
    layer_s: float | None       # time per layer (measured or extrapolated)
    basis: str                  # "measured" / "extrapolated: ..."
    median_s: float | None = None
    note: str = ""


@dataclass
class Recorder:
    start_load: tuple
    start_time: float
    rows: list = field(default_factory=list)
    memory: dict = field(default_factory=dict)   # case -> dict
    guard: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def fastenc_time(self, case):
        for r in self.rows:
            if r.case == case and r.method == "fastenc" and r.layer_s:
                return r.layer_s
        return None

    def add(self, benchmark, case, method, layer_s, basis, median_s=None, note="", **extra):
        """Record one result and put it in ``benchmark.extra_info`` (with the ratio to fastenc)."""
        self.rows.append(Row(case, method, layer_s, basis, median_s, note))
        fe = self.fastenc_time(case)
        ratio = (layer_s / fe) if (fe and layer_s and method != "fastenc") else None
        if benchmark is not None:
            benchmark.extra_info.update(dict(case=case, method=method, layer_seconds=layer_s,
                                             basis=basis, ratio_vs_fastenc=ratio, **extra))
        return ratio


@pytest.fixture(scope="session")
def recorder(pytestconfig):
    return pytestconfig._fastenc_bench


@pytest.fixture(scope="session")
def bench_config():
    return CONFIG


def _loadavg():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
CASES = ["nh2015", pytest.param("b2021", marks=pytest.mark.b2021)]


@pytest.fixture(scope="session", params=CASES)
def layer(request):
    """(case, X, Y) for the case; built once per case (cases run one after the other)."""
    case = request.param
    X, Y = synth.make_layer(n_units=CONFIG.units, n_voxels=CONFIG.voxels[case], seed=0)
    return case, X, Y


@pytest.fixture(scope="session")
def study_masks():
    from fastenc import seed_splits

    return seed_splits()[:CONFIG.splits]


@pytest.fixture(scope="session", autouse=True)
def jit_warmup():
    """Load/compile the Numba kernels once, outside every timed region."""
    import fastenc

    rng = np.random.default_rng(1)
    fastenc.score_layer(rng.random((165, 32)), rng.standard_normal((165, 8, 3)),
                        n_threads=CONFIG.threads)


# ---------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------
def _fmt_s(x):
    if x is None:
        return "-"
    if x >= 3600:
        return f"{x / 3600:.2f} h"
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rec = getattr(config, "_fastenc_bench", None)
    if rec is None or not (rec.rows or rec.memory or rec.guard):
        return
    tr = terminalreporter
    tr.section("fastenc ridge benchmark summary")
    m = machine_description()
    end_load = _loadavg()
    tr.write_line(f"machine: {m['cpu']}, {m['cores']} cores (numba threads {m['numba_threads']}); "
                  f"python {m['python']}, numpy {m['numpy']}, numba {m['numba']}, scipy {m['scipy']}, "
                  f"scikit-learn {m['sklearn']}, himalaya {m['himalaya']}")
    tr.write_line(f"load average at start {rec.start_load[0]:.2f}, at end {end_load[0]:.2f} "
                  "(>~0.5 on this many cores means shared/noisy timings)")
    tr.write_line(f"sizes: units {CONFIG.units}, voxels {CONFIG.voxels}, splits {CONFIG.splits}, "
                  f"4 fits per voxel and split, 100 alphas")
    tr.write_line("")
    hdr = f"{'case':7s} {'method':32s} {'per layer':>10s} {'median':>10s} {'peer/fastenc':>12s}  basis"
    tr.write_line(hdr)
    tr.write_line("-" * len(hdr))
    for r in rec.rows:
        fe = rec.fastenc_time(r.case)
        ratio = f"{r.layer_s / fe:.1f}x" if (fe and r.layer_s and r.method != "fastenc") else "-"
        tr.write_line(f"{r.case:7s} {r.method:32s} {_fmt_s(r.layer_s):>10s} {_fmt_s(r.median_s):>10s} "
                      f"{ratio:>12s}  {r.basis}{('; ' + r.note) if r.note else ''}")
    for case, mem in rec.memory.items():
        tr.write_line(f"peak memory, fastenc.score_layer, {case}: peak RSS during the call "
                      f"{mem['call_peak_rss_mb']:.0f} MB = {mem['rss_before_mb']:.0f} MB before it (interpreter, "
                      f"imports, X and Y) + {mem['call_increase_mb']:.0f} MB for the call; whole-process peak "
                      f"{mem['process_peak_rss_mb']:.0f} MB; call took {mem['seconds']:.2f} s")
    for case, g in rec.guard.items():
        tr.write_line(f"guard {case}: {g}")
    out = os.environ.get("FASTENC_BENCH_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(dict(machine=m, load_start=rec.start_load, load_end=end_load,
                           config=CONFIG.__dict__, rows=[r.__dict__ for r in rec.rows],
                           memory=rec.memory, guard=rec.guard), f, indent=1, default=str)
        tr.write_line(f"results written to {out}")
