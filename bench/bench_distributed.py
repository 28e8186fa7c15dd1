#!/usr/bin/env python
"""Overhead of fastenc's Dask path on the demo, and a projection of the whole study on a cluster.

    python bench/bench_distributed.py                    # both parts (~2-3 min on 2 cores)
    python bench/bench_distributed.py --skip-demo        # projection only
    python bench/bench_distributed.py --nodes 10 --cores-per-node 32

Part 1 runs the demo's regression stage (all models, trained + permuted, all three targets) in
the single-process default and on LocalClusters of 1, 2 and 4 worker processes sharing the same
cores (workers x Numba threads = cores where possible; more workers than cores is reported as
oversubscribed). Each configuration is timed cold (fresh cluster: worker start, imports, Numba
cache load, scatter of the targets) and warm (second run on the same cluster); the overhead is
the warm time minus the single-process time.

Part 2 times :func:`fastenc.score_layer` on synthetic data shaped like NH2015 and B2021 (165
sounds, 3 repetitions) at a few layer widths, on one Numba thread, fits time = a + b * voxels per
width, and projects the study (36 models, 318 layers, trained + permuted versions, NH2015 + B2021)
onto ``--nodes`` nodes of ``--cores-per-node`` cores, one worker per node.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastenc import score_layer  # noqa: E402
from fastenc.study import run as pipeline  # noqa: E402
from fastenc.datasets import make_demo  # noqa: E402
from fastenc.ridge import check_alphas  # noqa: E402
from fastenc.scoring import prepare_targets  # noqa: E402
from fastenc.splits import seed_splits  # noqa: E402

#: Study size (Tuckute et al. 2023): voxels kept per dataset, models, layers.
STUDY = {"NH2015_voxels": 7694, "B2021_voxels": 26792, "models": 36, "layers": 318}


def _regress(data, out, client=None, n_threads=None):
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    df = pipeline.run_regression(data, out, n_threads=n_threads, progress=False, client=client)
    dt = time.perf_counter() - t0
    assert (df["status"] == "done").all()
    return dt, len(df)


def bench_demo(tmp, cores, repeats):
    from fastenc.study.executors import make_client

    data = make_demo(Path(tmp) / "demo")
    _regress(data, Path(tmp) / "warmup")  # JIT cache load, page cache
    locals_ = []
    n_units = 0

    def local_run():  # interleaved with the cluster runs: the best of them is the baseline
        nonlocal n_units
        dt, n_units = _regress(data, Path(tmp) / "local")
        locals_.append(dt)

    results = []
    for n in (1, 2, 4):
        for _ in range(repeats):
            local_run()
        threads = max(1, cores // n)
        layout = f"{n} x {threads}" + (" (oversubscribed)" if n * threads > cores else "")
        t0 = time.perf_counter()
        client, cluster = make_client(cluster=f"local:{n}", threads_per_worker=threads)
        client.wait_for_workers(n)
        start = time.perf_counter() - t0
        try:
            cold = _regress(data, Path(tmp) / f"dask{n}-cold", client=client)[0]
            warm = min(_regress(data, Path(tmp) / f"dask{n}", client=client)[0] for _ in range(repeats))
        finally:
            client.close()
            cluster.close()
        results.append((f"LocalCluster {n} worker(s)", layout, f"{start:.1f}", f"{cold:.1f}", warm))
    local = min(locals_)
    rows = [("single process", f"1 x {cores}", "-", "-", local, 0.0)]
    rows += [(*r, r[4] - local) for r in results]
    print(f"\nDemo regression stage: {n_units} units (3 targets x 23 layers), {cores} cores; warm = best of "
          f"{repeats} run(s), single process = best of {len(locals_)} runs interleaved with the clusters")
    print(f"{'configuration':<28}{'workers x threads':<26}{'start s':>8}{'cold s':>8}{'warm s':>8}"
          f"{'overhead s':>12}")
    for name, layout, start, cold, warm, over in rows:
        print(f"{name:<28}{layout:<26}{start:>8}{cold:>8}{warm:>8.1f}{over:>+12.1f}")
    return rows


def _synthetic(n_vox, seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal((165, 8)) @ rng.standard_normal((8, n_vox))
    return signal[:, :, None] + rng.standard_normal((165, n_vox, 3))


def per_layer_times(widths, voxels, threads):
    """{(width, n_threads): (a, b)} with time(V) = a + b * V seconds per layer, fitted on ``voxels``."""
    splits, alphas = seed_splits(), check_alphas(None)
    targets = {v: prepare_targets(_synthetic(v)) for v in voxels}
    fits = {}
    for w in widths:
        X = np.random.default_rng(w).standard_normal((165, w))
        for nt in threads:
            score_layer(X, targets[voxels[0]], splits=splits, alphas=alphas, n_threads=nt)  # warm
            ts = []
            for v in voxels:
                t0 = time.perf_counter()
                score_layer(X, targets[v], splits=splits, alphas=alphas, n_threads=nt)
                ts.append(time.perf_counter() - t0)
            b = (ts[-1] - ts[0]) / (voxels[-1] - voxels[0])
            fits[(w, nt)] = (max(ts[0] - b * voxels[0], 0.0), b)
    return fits


def project(fits, widths, nodes, cores, efficiency, task_overhead, scatter_s):
    nh, b21 = STUDY["NH2015_voxels"], STUDY["B2021_voxels"]
    n_layers = STUDY["layers"]
    versions = 2 * n_layers - 1  # spectemp (1 layer) has no permuted version
    print(f"\nPer-layer score_layer time (1 Numba thread), fitted a + b*voxels on synthetic 165 x V x 3 data")
    print(f"{'width':>7}{'NH2015 s':>11}{'B2021 s':>11}{'2 threads speed-up':>20}")
    per_layer = {}
    for w in widths:
        a, b = fits[(w, 1)]
        t_nh, t_b = a + b * nh, a + b * b21
        per_layer[w] = t_nh + t_b
        sp = ""
        if (w, 2) in fits:
            a2, b2 = fits[(w, 2)]
            sp = f"{(t_nh + t_b) / (a2 + b2 * nh + a2 + b2 * b21):.2f}x"
        print(f"{w:>7}{t_nh:>11.2f}{t_b:>11.2f}{sp:>20}")
    tasks = 2 * STUDY["models"] - 1
    print(f"\nProjection: {STUDY['models']} models, {n_layers} layers, trained + permuted = {versions} layer "
          f"versions x (NH2015 {nh} + B2021 {b21} voxels); {nodes} nodes x {cores} cores, 1 worker/node, "
          f"parallel efficiency {efficiency:.0%}, {task_overhead:.1f} s/task overhead, scatter {scatter_s:.0f} s")
    print(f"{'all layers at width':>20}{'core-hours':>12}{'1 node h':>10}{f'{nodes} nodes h':>12}{'longest task min':>18}")
    for w in widths:
        core_s = versions * per_layer[w]
        node_s = core_s / (cores * efficiency)
        biggest = (n_layers / STUDY["models"]) * 2.5 * per_layer[w] / (cores * efficiency)  # a 2.5x-deep model
        wall = max(node_s / nodes, biggest) + scatter_s + task_overhead * tasks / nodes
        print(f"{w:>20}{core_s / 3600:>12.1f}{node_s / 3600:>10.2f}{wall / 3600:>12.2f}{biggest / 60:>18.1f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skip-demo", action="store_true")
    p.add_argument("--skip-projection", action="store_true")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--widths", type=int, nargs="+", default=[256, 2048, 8192])
    p.add_argument("--voxels", type=int, nargs=2, default=[400, 2000], help="two voxel counts for the fit")
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--cores-per-node", type=int, default=32)
    p.add_argument("--efficiency", type=float, default=0.8, help="Numba parallel efficiency on a node")
    p.add_argument("--task-overhead", type=float, default=None,
                   help="seconds per task (default: measured warm overhead per demo task, at least 0.5)")
    p.add_argument("--scatter-s", type=float, default=5.0, help="broadcast of the targets to all nodes")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    overhead = args.task_overhead
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_demo:
            rows = bench_demo(tmp, cores, args.repeats)
            if overhead is None:
                n_tasks = 5  # demo model versions
                per_worker = [r for r in rows if r[0].startswith("LocalCluster 2")]
                overhead = max(per_worker[0][5] * 2 / n_tasks, 0.5) if per_worker else 1.0
    if not args.skip_projection:
        threads = [1, 2] if cores >= 2 else [1]
        fits = per_layer_times(args.widths, args.voxels, threads)
        project(fits, args.widths, args.nodes, args.cores_per_node, args.efficiency,
                1.0 if overhead is None else overhead, args.scatter_s)


if __name__ == "__main__":
    main()
