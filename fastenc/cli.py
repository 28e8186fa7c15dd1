"""Command line: ``python cli.py run-all`` (or the ``fastenc`` console command).

Run ``python cli.py --help`` and ``python cli.py run-all --help``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  python cli.py run-all                              # the embedded demo, end to end (~35 s)
  python cli.py run-all --data-dir /data/auditory_brain_dnn --out results
  python cli.py run-all --data-dir D --models FIG_2_5_MODEL_LIST --targets NH2015 B2021
  python cli.py run-all --data-dir D --cluster local:4          # Dask, 4 local worker processes
  python cli.py run-all --data-dir D --scheduler tcp://host:8786 # an existing Dask cluster
  python cli.py demo --out demo_data                 # only write the demo dataset
"""


def _common(p):
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data root holding data/ and model_actv/ (the study's download); "
                        "default: the embedded demo, built in ~/.cache/fastenc/demo if missing")
    p.add_argument("--out", type=Path, default=Path("fastenc_out"), help="output folder (default: fastenc_out)")
    p.add_argument("--models", nargs="+", default=None,
                   help="model names or registry model sets (e.g. FIG_2_5_MODEL_LIST); "
                        "default: every registry model whose activations are present")
    p.add_argument("--targets", nargs="+", default=None, choices=["NH2015", "B2021", "NH2015comp"],
                   help="target datasets (default: those present under DATA/data/neural)")
    p.add_argument("--threads", type=int, default=None, help="Numba threads per process (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="recompute finished units instead of reusing them")
    p.add_argument("--manifest", type=Path, default=None,
                   help="JSON manifest of extra models (merged over the shipped registry and "
                        "DATA/fastenc_models.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the regression and RSA units on this Dask scheduler")
    g.add_argument("--cluster", default=None, metavar="local:N",
                   help="start a local Dask cluster of N worker processes for this run")


def _client(args):
    if not args.scheduler and not args.cluster:
        return None, None
    from .distributed import make_client
    return make_client(scheduler=args.scheduler, cluster=args.cluster, threads_per_worker=args.threads)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastenc", description="Score how well neural-network layers predict fMRI responses to "
        "165 natural sounds (voxelwise ridge with exact leave-one-out alpha, noise-corrected R², best "
        "layer on independent splits, RSA) — the Tuckute et al. 2023 analysis, fast.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("run-all", help="the whole study: regression, analysis, RSA, figures",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p_all)
    p_all.add_argument("--no-rsa", action="store_true", help="skip the RSA stage")
    p_all.add_argument("--no-figures", action="store_true", help="skip the figures")
    p_all.add_argument("--rsa-corrected", action="store_true",
                       help="RSA without the study's quirks: Spearman noise ceiling, SEM over participants")
    p_reg = sub.add_parser("regress", help="only the regression stage (resumable units)")
    _common(p_reg)
    p_demo = sub.add_parser("demo", help="write the synthetic demo dataset in the study's layout")
    p_demo.add_argument("--out", type=Path, default=None, help="folder (default: ~/.cache/fastenc/demo)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from . import pipeline

    try:
        if args.command == "demo":
            from .datasets import make_demo
            path = make_demo(args.out or pipeline.default_demo_dir(), seed=args.seed, overwrite=args.overwrite)
            print(path)
            return 0
        client, cluster = _client(args)
        try:
            if args.command == "regress":
                data_dir = args.data_dir
                if data_dir is None:
                    from .datasets import make_demo
                    data_dir = make_demo(pipeline.default_demo_dir())
                data_dir = pipeline.check_data_root(data_dir)
                from .registry import load_registry
                df = pipeline.run_regression(data_dir, args.out, models=args.models, targets=args.targets,
                                             n_threads=args.threads, overwrite=args.overwrite,
                                             progress=not args.quiet, client=client,
                                             registry=load_registry(data_dir, manifest=args.manifest))
                print(df.groupby(["target", "status"]).size().to_string())
                return 0
            tables = pipeline.run_all(args.data_dir, args.out, models=args.models, targets=args.targets,
                                      n_threads=args.threads, overwrite=args.overwrite,
                                      progress=not args.quiet, client=client, rsa=not args.no_rsa,
                                      figures=not args.no_figures, rsa_corrected=args.rsa_corrected,
                                      manifest=args.manifest)
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        _print_summary(tables)
        return 0
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"fastenc: error: {e}", file=sys.stderr)
        return 2


def _print_summary(tables):
    import pandas as pd
    with pd.option_context("display.width", 120, "display.max_rows", 80):
        for key in sorted(tables):
            if key.startswith("across-models_") and "NH2015comp" not in key:
                df = tables[key]
                print(f"\n{key}: median noise-corrected R², best layer on independent splits")
                print(df[["display_name", "randnetw", "median_r2_test_c_mean", "median_r2_test_c_yerr"]]
                      .round(3).to_string(index=False))
            if key.startswith("rsa_across-models_"):
                df = tables[key]
                df = df[df["roi"] == "All"]
                print(f"\n{key} (all voxels): Spearman, best layer on independent splits")
                print(df[["display_name", "randnetw", "rsa_mean", "rsa_yerr", "noise_ceiling"]]
                      .round(3).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
