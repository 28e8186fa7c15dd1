"""Command line: ``python cli.py run-all`` (or the ``fastenc`` console command).

Run ``python cli.py --help`` and ``python cli.py run-all --help``.

Errors about the data or the options (a missing or damaged file, a wrong ``--out``, an unknown
model) are printed as one ``fastenc: error: ...`` line on stderr, without a traceback, and the
exit code is 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  python cli.py run-all                              # the embedded demo, end to end (~1 min the first time)
  python cli.py run-all --data-dir /data/auditory_brain_dnn --out results
  python cli.py run-all --data-dir D --models FIG_2_5_MODEL_LIST --targets NH2015 B2021
  python cli.py run-all --data-dir D --cluster local:4          # Dask, 4 local worker processes
  python cli.py run-all --data-dir D --scheduler tcp://host:8786 # an existing Dask cluster
  python cli.py run-all --data-dir D --nan-policy omit          # skip voxels with NaN responses
  python cli.py run-all --dataset my_data.toml --out results    # your own dataset only (manifest)
  python cli.py models --data-dir D                  # models and model sets present in D
  python cli.py demo --out demo_data                 # only write the demo dataset
"""

_DATA_DIR_HELP = ("data root holding data/ and model_actv/ (the study's download); "
                  "default: the embedded demo, built in ~/.cache/fastenc/demo if missing")


class CLIError(Exception):
    """A problem with the command line itself (reported like data errors: one line, exit code 2)."""


def _common(p):
    p.add_argument("--data-dir", type=Path, default=None, help=_DATA_DIR_HELP)
    p.add_argument("--out", type=Path, default=Path("fastenc_out"),
                   help="output folder, created if missing (default: fastenc_out); must not be a file")
    p.add_argument("--models", nargs="+", default=None,
                   help="model names or registry model sets (e.g. FIG_2_5_MODEL_LIST); "
                        "default: every registry model whose activations are present "
                        "(list them with: python cli.py models --data-dir DIR)")
    p.add_argument("--targets", nargs="+", default=None, choices=["NH2015", "B2021", "NH2015comp"],
                   help="target datasets (default: those present under DATA/data/neural)")
    p.add_argument("--nan-policy", choices=["raise", "omit"], default="raise",
                   help="a voxel with NaN/inf responses: 'raise' stops with an error naming its voxel_id "
                        "and array index (default); 'omit' leaves such voxels out of the regression "
                        "(their scores are NaN)")
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
    from .study.executors import make_client
    return make_client(scheduler=args.scheduler, cluster=args.cluster, threads_per_worker=args.threads)


def check_out_folder(path: Path, option: str = "--out") -> Path:
    """``path`` if it is a folder or can be created as one; else :class:`CLIError` saying why.

    Refuses an existing regular file, and a path below one (``file.txt/results``), before any
    work is done.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} must be a folder, but {path} is an existing file; "
                       f"choose a folder (it is created if missing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"{option} must be a folder, but {parent} (a parent of {path}) is an "
                               f"existing file, so {path} cannot be created")
            break
    return path


def _data_dir(args):
    """The data root of ``args`` (the demo, built if missing, when ``--data-dir`` is not given)."""
    from .study.plan import check_data_root, default_demo_dir
    data_dir = args.data_dir
    if data_dir is None:
        from .datasets import make_demo
        data_dir = make_demo(default_demo_dir())
    return check_data_root(data_dir)


def list_models(data_dir, manifest=None, show_all: bool = False, file=None) -> None:
    """Print the registry models whose activations are in ``data_dir`` (trained / permuted present)
    and the model sets with at least one of their models present."""
    from .io import available_models
    from .registry import load_registry

    file = sys.stdout if file is None else file
    registry = load_registry(data_dir, manifest=manifest)
    present = available_models(data_dir, registry)
    shown = list(registry) if show_all else list(present)
    print(f"data root: {data_dir}", file=file)
    if registry.manifests:
        print(f"registry: shipped + {', '.join(registry.manifests)}", file=file)
    print(f"{len(present)} of {len(registry)} registry models have activations here"
          + ("" if show_all else " (--all lists every registry model)"), file=file)
    if shown:
        width = max(len("model"), *(len(m) for m in shown))
        dwidth = max(len("display name"), *(len(registry.display_name(m)) for m in shown))
        print(f"\n{'model':<{width}}  {'display name':<{dwidth}}  {'storage':<16}  layers  trained  permuted",
              file=file)
        for m in shown:
            spec = registry.spec(m)
            st = present.get(m, {})
            trained = "yes" if st.get("trained") else "no"
            permuted = "yes" if st.get("randnetw") else ("no" if spec.has_randnetw else "-")
            print(f"{m:<{width}}  {spec.display_name:<{dwidth}}  {spec.storage:<16}  {spec.n_layers:>6}  "
                  f"{trained:<7}  {permuted}", file=file)
    rows = []
    for set_name in registry.model_sets:
        names = registry.model_set_members(set_name)
        here = [m for m in names if m in present]
        if here or show_all:
            rows.append((set_name, len(here), len(names), here))
    print("\nmodel sets (models present / members)" + (":" if rows else ": none with a model present"),
          file=file)
    if rows:
        width = max(len(r[0]) for r in rows)
        for set_name, n_here, n_all, here in rows:
            listed = ", ".join(here) if n_here <= 8 else ", ".join(here[:8]) + ", ..."
            print(f"{set_name:<{width}}  {n_here:>3}/{n_all:<3} {listed}", file=file)
    if not present:
        print(f"\nno model activations found under {Path(data_dir) / 'model_actv'}", file=file)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="fastenc", description="Score how well neural-network layers predict fMRI responses to "
        "165 natural sounds (voxelwise ridge with exact leave-one-out alpha, noise-corrected R², best "
        "layer on independent splits, RSA) — the Tuckute et al. 2023 analysis, fast.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastenc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("run-all", help="the whole study: regression, analysis, RSA, figures",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p_all)
    p_all.add_argument("--no-rsa", action="store_true", help="skip the RSA stage")
    p_all.add_argument("--no-figures", action="store_true", help="skip the figures")
    p_all.add_argument("--pdf", action="store_true",
                       help="also write every figure as a PDF beside its PNG (drawing takes about twice as long)")
    p_all.add_argument("--rsa-corrected", action="store_true",
                       help="RSA without the study's quirks: Spearman noise ceiling, SEM over participants")
    p_all.add_argument("--dataset", type=Path, action="append", default=None, metavar="MANIFEST",
                       help="a dataset manifest (TOML or JSON, see fastenc/dataset.py) whose models are scored "
                            "too (repeatable); with --dataset alone (no --data-dir, no --targets) only the "
                            "datasets run, and --models selects their models where the manifest has no "
                            "models key")
    p_all.add_argument("--export-surface-mat", action="store_true",
                       help="also write the study's .mat files of the voxel maps (vals, x_ras, y_ras) per "
                            "participant x hemisphere under OUT/surface-mat/, for FreeSurfer")
    p_reg = sub.add_parser("regress", help="only the regression stage (resumable units; run-all reuses them)")
    _common(p_reg)
    p_reg.add_argument("--dataset", type=Path, action="append", default=None, metavar="MANIFEST",
                       help="a dataset manifest whose models' units are computed too (repeatable); with "
                            "--dataset alone (no --data-dir, no --targets) only the datasets' units")
    p_models = sub.add_parser("models", help="list the models (trained / permuted present) and model sets "
                                             "found in a data directory")
    p_models.add_argument("--data-dir", type=Path, default=None, help=_DATA_DIR_HELP)
    p_models.add_argument("--manifest", type=Path, default=None,
                          help="JSON manifest of extra models (merged over the shipped registry and "
                               "DATA/fastenc_models.json)")
    p_models.add_argument("--all", action="store_true", help="list every registry model, present or not")
    p_demo = sub.add_parser("demo", help="write the synthetic demo dataset in the study's layout")
    p_demo.add_argument("--out", type=Path, default=None, help="folder (default: ~/.cache/fastenc/demo)")
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--overwrite", action="store_true")
    from .extract import add_parser as _add_extract_parser  # torch is imported only when extracting
    _add_extract_parser(sub)
    return parser


def _hint(message: str) -> str:
    if message.startswith("unknown model"):
        return message + "; list the models present with: python cli.py models --data-dir DIR"
    return message


def main(argv=None) -> int:
    args = _parser().parse_args(argv)

    from . import study
    from .study.plan import default_demo_dir

    try:
        if args.command == "extract":
            from .extract import main as _extract_main
            return _extract_main(args)
        if args.command == "demo":
            from .datasets import make_demo
            out = check_out_folder(args.out or default_demo_dir())
            print(make_demo(out, seed=args.seed, overwrite=args.overwrite))
            return 0
        if args.command == "models":
            list_models(_data_dir(args), manifest=args.manifest, show_all=args.all)
            return 0
        check_out_folder(args.out)
        client, cluster = _client(args)
        try:
            if args.command == "regress":
                only_datasets = args.dataset and args.data_dir is None and args.targets is None
                data_dir = None if only_datasets else _data_dir(args)
                from .registry import load_registry
                df = study.run_regression(data_dir, args.out, models=args.models, targets=args.targets,
                                             n_threads=args.threads, overwrite=args.overwrite,
                                             progress=not args.quiet, client=client,
                                             registry=None if only_datasets else load_registry(
                                                 data_dir, manifest=args.manifest),
                                             nan_policy=args.nan_policy, datasets=args.dataset,
                                             manifest=args.manifest)
                print(df.groupby(["target", "status"]).size().to_string())
                return 0
            results = study.run_all(args.data_dir, args.out, models=args.models, targets=args.targets,
                                      n_threads=args.threads, overwrite=args.overwrite,
                                      progress=not args.quiet, client=client, rsa=not args.no_rsa,
                                      figures=not args.no_figures, rsa_corrected=args.rsa_corrected,
                                      manifest=args.manifest, nan_policy=args.nan_policy,
                                      export_surface_mat=args.export_surface_mat, datasets=args.dataset,
                                      pdf=args.pdf)
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        _print_summary(results)
        return 0
    except (CLIError, FileNotFoundError, ValueError, OSError) as e:
        print(f"fastenc: error: {_hint(str(e))}", file=sys.stderr)
        return 2


def _print_summary(results):
    """The headline tables of a run (:class:`fastenc.study.StudyResults`) on stdout."""
    import pandas as pd
    with pd.option_context("display.width", 120, "display.max_rows", 80):
        for t, reg in sorted(results.regression.items()):
            print(f"\nacross-models_{t}: median noise-corrected R², best layer on independent splits")
            print(reg.across_models[["display_name", "randnetw", "median_r2_test_c_mean", "median_r2_test_c_yerr"]]
                  .round(3).to_string(index=False))
        for t, r in sorted(results.rsa.items()):
            df = r.across_models
            df = df[df["roi"] == "All"]
            print(f"\nrsa_across-models_{t} (all voxels): Spearman, best layer on independent splits")
            print(df[["display_name", "randnetw", "rsa_mean", "rsa_yerr", "noise_ceiling"]]
                  .round(3).to_string(index=False))
        for name, tabs in getattr(results, "datasets", {}).items():
            df = tabs.across_models
            df = df[df["roi"] == "all"]
            print(f"\n{tabs.key}_across-models: {tabs.metric}, best layer on independent splits "
                  f"(mean over {df['unit'].iloc[0]})")
            print(df[["display_name", "randnetw", "score_mean", "score_sem", "score_sem_between", "best_layer"]]
                  .round(3).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
