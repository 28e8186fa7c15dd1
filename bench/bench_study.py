"""The whole study's cost on this machine: measured on a representative subset, extrapolated.

Run::

    python -m pytest bench/bench_study.py -p no:cacheprovider -s
    python bench/bench_study.py            # same, as a script

What is measured (real fastenc calls on study-shaped synthetic data, ``bench/synth.py``):

* regression: ``fastenc.score_layer`` on an NH2015-shaped (7,694 voxels x 3 reps) and a
  B2021-shaped (26,792 voxels) layer at widths 512, 4,096 and 16,384 units, and on the 6
  components; time per layer ``t(p) = a + b p`` fitted to the widths;
* analysis: ``fastenc.analysis.best_layer_independent_splits`` for a 9-layer model on both
  voxel sets (the per-model cost of §5; the other §5 steps are cheaper);
* RSA: ``fastenc.rsa.prepare_layers`` (split RSMs of a 9-layer model, once per model version),
  ``prepare_participants`` (8 NH2015 / 20 B2021 participants, once per ROI setting) and
  ``cv_best_layer`` on the prepared matrices (per model version, target and ROI), as run-all does.

Projection: the registry's 36 models / 318 layers, each trained and permuted (spectemp trained
only): 635 layer versions x (NH2015 + B2021 + components); analysis per model version and
target; RSA per model version x 2 targets x 5 ROI settings. Activation loading is not included
(it depends on the disk). Assumed layer width for the projection: ``FASTENC_STUDY_UNITS``
(default 4,096 units for every layer; the study's time-averaged activations range from a few
hundred to tens of thousands of units — the fitted slope ``b`` shows how little width matters,
the Gram of a layer is the only width-dependent step).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

import fastenc  # noqa: E402
from fastenc import analysis, rsa  # noqa: E402
from fastenc.registry import load_registry  # noqa: E402

WIDTHS = (512, 4096, 16384)
STUDY_UNITS = int(os.environ.get("FASTENC_STUDY_UNITS", 4096))


def _time(fn, rounds=1):
    best = np.inf
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(rounds=1):
    res = {"score_layer": {}, "widths": list(WIDTHS)}
    # compile once, small
    Xs, Ys = synth.make_layer(n_units=64, n_voxels=40, seed=1)
    fastenc.score_layer(Xs, Ys)
    for name, nvox in (("NH2015", synth.NH2015["n_voxels"]), ("B2021", synth.B2021["n_voxels"])):
        X, Y = synth.make_layer(n_units=max(WIDTHS), n_voxels=nvox, seed=0)
        tg = fastenc.prepare_targets(Y)
        ts = [_time(lambda: fastenc.score_layer(X[:, :p], tg), rounds) for p in WIDTHS]
        res["score_layer"][name] = ts
        del X, Y, tg
    Xc, Yc = synth.make_layer(n_units=4096, n_voxels=6, seed=2)
    comp = Yc.mean(axis=2)
    res["score_layer"]["NH2015comp"] = [_time(lambda: fastenc.score_layer(Xc, comp), rounds)] * len(WIDTHS)

    rng = np.random.default_rng(0)
    for name, nvox, nsub in (("NH2015", synth.NH2015["n_voxels"], 8), ("B2021", synth.B2021["n_voxels"], 20)):
        vals = rng.random((9, nvox, 10))
        subj = np.repeat(np.arange(nsub), int(np.ceil(nvox / nsub)))[:nvox]
        analysis.best_layer_independent_splits(vals, subj)  # warm the mask cache, as run-all does
        res.setdefault("analysis_per_model", {})[name] = _time(lambda: analysis.best_layer_independent_splits(vals, subj), rounds)

    layers = [synth.make_activations(np.random.default_rng(k), n_units=STUDY_UNITS).astype(np.float64) for k in range(9)]
    cats = list(np.repeat(load_registry().sound_category_order, 15))
    rsa.cv_best_layer(layers[:2], [rng.standard_normal((165, 5)) for _ in range(3)], categories=cats)
    res["rsa_prepare_9_layers"] = _time(lambda: rsa.prepare_layers(layers, categories=cats), rounds)
    M = rsa.prepare_layers(layers, categories=cats)
    for name, nsub, vox in (("NH2015", 8, 960), ("B2021", 20, 1340)):
        parts = [rng.standard_normal((165, vox)) for _ in range(nsub)]
        res.setdefault("rsa_prepare_participants", {})[name] = _time(
            lambda: rsa.prepare_participants(parts, categories=cats), rounds)
        P = rsa.prepare_participants(parts, categories=cats)
        res.setdefault("rsa_compare_per_model_roi", {})[name] = _time(lambda: rsa.cv_best_layer(M, P), rounds)
    return res


def project(res):
    reg = load_registry()
    n_layer_versions = sum(len(reg.layers(m)) * (2 if reg.has_randnetw(m) else 1) for m in reg.model_names())
    n_model_versions = sum(2 if reg.has_randnetw(m) else 1 for m in reg.model_names())
    out = {"layer_versions": n_layer_versions, "model_versions": n_model_versions}
    per_layer = {}
    for t, ts in res["score_layer"].items():
        b, a = np.polyfit(WIDTHS, ts, 1)
        per_layer[t] = a + b * STUDY_UNITS
    out["regression_per_layer_s"] = per_layer
    out["regression_s"] = n_layer_versions * sum(per_layer.values())
    out["analysis_s"] = n_model_versions * sum(res["analysis_per_model"].values())
    # RSA: each layer version's split RSMs once; each participant set (2 targets x 5 ROI settings,
    # all-voxel size assumed for every ROI: an upper bound) once; then per model version, target
    # and ROI only the correlations and the best-layer choice (scaled to 9 layers)
    out["rsa_s"] = (n_layer_versions * res["rsa_prepare_9_layers"] / 9
                    + 5 * sum(res["rsa_prepare_participants"].values())
                    + n_model_versions * 5 * sum(res["rsa_compare_per_model_roi"].values()))
    out["total_s"] = out["regression_s"] + out["analysis_s"] + out["rsa_s"]
    return out


def report(res, proj):
    lines = ["", "Whole-study projection (this machine; activation loading excluded)",
             f"  score_layer per layer [s] at widths {WIDTHS}:"]
    for t, ts in res["score_layer"].items():
        lines.append(f"    {t:<11} " + "  ".join(f"{x:7.3f}" for x in ts)
                     + f"   -> {proj['regression_per_layer_s'][t]:.3f} s at {STUDY_UNITS} units")
    lines.append(f"  analysis per model version [s]: {res['analysis_per_model']}")
    lines.append(f"  RSA: split RSMs of 9 layers {res['rsa_prepare_9_layers']:.3f} s; participants "
                 f"{res['rsa_prepare_participants']}; per model x ROI {res['rsa_compare_per_model_roi']}")
    lines.append(f"  {proj['layer_versions']} layer versions, {proj['model_versions']} model versions")
    lines.append(f"  regression {proj['regression_s'] / 60:.1f} min, analysis {proj['analysis_s'] / 60:.2f} min, "
                 f"RSA {proj['rsa_s'] / 60:.1f} min, total {proj['total_s'] / 60:.1f} min")
    lines.append("  reference study: ~1,900 cluster jobs of up to 15-23 h each")
    print("\n".join(lines))


def test_whole_study_projection(benchmark):
    res = benchmark.pedantic(measure, rounds=1, iterations=1)
    proj = project(res)
    benchmark.extra_info.update({"measured": res, "projection": proj})
    report(res, proj)


if __name__ == "__main__":
    r = measure()
    p = project(r)
    report(r, p)
    print(json.dumps({"measured": r, "projection": p}, indent=1, default=float))
