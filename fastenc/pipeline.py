"""Backward-compatible names of the study layer (:mod:`fastenc.study`).

``fastenc.run_all`` is the public entry point; new code imports from :mod:`fastenc.study`.
Nothing inside fastenc but the package's ``__init__`` imports this module.
"""
from .constants import TARGETS  # noqa: F401
from .study.plan import (TargetBundle, build_plan, check_data_root, default_demo_dir,  # noqa: F401
                         default_targets, load_target_bundle, plan_models)
from .study.regression import regress_model  # noqa: F401
from .study.run import run_all, run_regression  # noqa: F401

__all__ = ["run_all", "run_regression", "TARGETS", "default_demo_dir", "TargetBundle", "load_target_bundle",
           "regress_model", "check_data_root", "default_targets", "plan_models", "build_plan"]
