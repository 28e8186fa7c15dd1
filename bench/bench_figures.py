"""What the figures cost in `python cli.py run-all` on the demo (issue #10: "the new outputs add
under 10 % to run-all's time").

A script, not a pytest suite:

    python bench/bench_figures.py [--repeat 3] [--tree PATH] [--serial] [--no-before]

Each repeat runs ``cli.py run-all --quiet`` on the demo into a fresh output folder three times, in
turn (the order rotates between repeats, so that a machine slowing down or speeding up cancels
out):

- "all": everything;
- "older": only the figures the study drew before issue #10's new outputs (across-model bars,
  across-layer curves, ROI best-layer scatters, component bars, RSA bars and ROI matrices; the
  switch is made here, by filtering the figure jobs of ``fastenc.study.figures._run_jobs`` and
  by submitting no model version's voxel maps during the regression, not by an option of
  fastenc). Everything else of the run is the same, so "all − older" is what the newer figures
  cost;
- "before": as "older", and without the stages of issue #10's new tables (voxel maps, effective
  dimensionality, consistency, seeds) and without ``report.html``, so "all − before" is what the
  new outputs cost together. (Some new tables are computed inside older stages and stay: the
  component predictions, the model comparisons, RSA per ROI; they are small.) ``--no-before``
  skips this mode.

Printed per run: wall time, CPU time (user + system) of the whole process tree, the figure
stage's wall time, and the 1-minute load average. This script makes itself a child subreaper, so
that helper processes (if one outlived the run) are reaped here and their CPU
time is counted. ``--serial`` draws every figure in the run's own process. ``--tree`` times
another checkout (e.g. ``git archive`` of an older commit). The demo is built on first use in
``$FASTENC_CACHE`` (default ``~/.cache/fastenc/demo``); run once first so that Numba's cache of
the tree is warm.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: File-name prefixes of the figures drawn before issue #10's newer outputs.
OLDER = ("across-models_", "across-layers_", "best-layer-roi", "rsa_best-layer-roi", "components_",
         "rsa_across-models_", "rsa_roi-matrices_")

CHILD = r'''
import json, os, sys, time
sys.path.insert(0, os.getcwd())
mode, serial, out, stat = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]
import fastenc.study.figures as F
import fastenc.study.run as R
OLDER = %r

def job_name(fn, args, kwargs):
    p = kwargs.get("path")
    if p is None:
        p = next((a for a in args if hasattr(a, "name") and hasattr(a, "parent")), None)
    return getattr(p, "name", "?")

if mode in ("older", "before"):  # no model version's voxel maps drawn during the regression either
    R.version_map_job = lambda *a, **k: None
if mode == "before":
    R.run_voxel_stage = lambda *a, **k: {}
    R.run_dimensionality_stage = lambda *a, **k: None
    R.run_consistency_stage = lambda *a, **k: None
    R.run_seed_stage = lambda *a, **k: None
    R._write_report = lambda *a, **k: None

spent = {"new_stages": 0.0}
def timed_stage(fn):
    def run(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent["new_stages"] += time.perf_counter() - t0
    return run
for name in ("run_voxel_stage", "run_dimensionality_stage", "run_consistency_stage", "run_seed_stage", "_write_report"):
    setattr(R, name, timed_stage(getattr(R, name)))

run_jobs = F._run_jobs
def filtered(jobs, workers=None, helpers=None):
    if mode in ("older", "before"):
        jobs = [j for j in jobs if job_name(*j).startswith(OLDER)]
    return run_jobs(jobs, 1 if serial else workers, helpers=helpers)
F._run_jobs = filtered

draw = F.draw_figures
def timed(*a, **k):
    t0 = time.perf_counter()
    res = draw(*a, **k)
    drawn = len([p for p in res if p.is_file()])
    spent["figures_wall"], spent["figures"] = time.perf_counter() - t0, drawn
    return res
R.draw_figures = timed

from fastenc.cli import main
main(["run-all", "--out", out, "--quiet"])
json.dump(spent, open(stat, "w"))
''' % (OLDER,)


def _subreaper() -> None:
    try:
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER (Linux)
    except (OSError, AttributeError):
        pass


def _reap() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_once(tree: Path, mode: str, serial: bool, work: Path) -> dict:
    out, stat = work / f"out_{mode}", work / f"stat_{mode}.json"
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, mode, "1" if serial else "0", str(out), str(stat)],
                   cwd=tree, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    _reap()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    fs = json.loads(stat.read_text())
    return {"mode": mode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "figures_wall_s": round(fs["figures_wall"], 2), "new_stages_s": round(fs["new_stages"], 3),
            "figures": fs["figures"], "load_1min": round(load, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--serial", action="store_true", help="draw every figure in the run's own process")
    ap.add_argument("--no-before", action="store_true", help="skip the 'before' mode (no new tables)")
    args = ap.parse_args(argv)
    _subreaper()
    rows = []
    modes = ["all", "older"] + ([] if args.no_before else ["before"])
    with tempfile.TemporaryDirectory(prefix="fastenc-bench-figures-") as tmp:
        for i in range(args.repeat):
            k = i % len(modes)
            for mode in modes[k:] + modes[:k]:  # the order rotates: drift cancels over the repeats
                row = {"repeat": i, **run_once(args.tree.resolve(), mode, args.serial, Path(tmp))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for base, what in (("older", "newer figures add"), ("before", "new outputs (figures, tables, report) add")):
        if base not in modes:
            continue
        for key in ("cpu_s", "wall_s", "figures_wall_s"):
            a = [r[key] for r in rows if r["mode"] == "all"]
            o = [r[key] for r in rows if r["mode"] == base]
            d = [x - y for x, y in zip(a, o)]
            print(f"{key}: all {statistics.median(a):.2f}, {base} {statistics.median(o):.2f}, {what} "
                  f"{statistics.median(d):.2f} (median of {len(d)} paired repeats; mean {statistics.mean(d):.2f}) = "
                  f"{100 * statistics.median(d) / statistics.median(o):.1f} % of the {base} run")
    if "before" in modes:
        # the steadier estimate: the new outputs' own intervals, not the whole run (whose regression
        # stage alone varies by seconds on a shared machine)
        a = [r for r in rows if r["mode"] == "all"]
        b = [r for r in rows if r["mode"] == "before"]
        fig = statistics.median(x["figures_wall_s"] - y["figures_wall_s"] for x, y in zip(a, b))
        stages = statistics.median(x["new_stages_s"] for x in a)
        base = statistics.median(r["wall_s"] for r in b)
        print(f"from their own stages: figure stage all - before {fig:.2f} s + new tables' stages and report "
              f"{stages:.2f} s = {fig + stages:.2f} s = {100 * (fig + stages) / base:.1f} % of the before run "
              f"(median {base:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
