"""Backward-compatible names of the analysis and RSA stages (:mod:`fastenc.study.analysis`,
:mod:`fastenc.study.rsa`)."""
from .constants import SPECTEMP  # noqa: F401
from .study.analysis import FIG_ACROSS_MODELS, FIG_ROI, comparison_pairs, model_pool  # noqa: F401
from .study.rsa import rsa_across_models as _rsa_across_models  # noqa: F401

__all__ = ["model_pool", "comparison_pairs", "SPECTEMP"]
