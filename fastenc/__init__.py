"""fastenc: fast, exact voxelwise encoding and RSA evaluation of neural-network layers.

Main entry points:

- :func:`ridge_cv` — ridge regression with per-target alpha chosen by exact leave-one-out.
- :class:`RidgeLOOCV` — the same as a scikit-learn estimator (needs scikit-learn).
- :func:`score_layer` — a layer's cross-validated (noise-corrected) scores on the study's splits.
- :func:`seed_splits` — the study's 10 train/test splits of the 165 sounds.
- :func:`run_all` — the whole study (regression, analysis, RSA, figures) on a data root.
- :func:`load_stimuli`, :func:`load_neural`, :func:`open_model` — the study's files on disk;
  :func:`default_demo_dir` — where ``run-all`` builds the demo data root.
- :mod:`fastenc.rsa`, :mod:`fastenc.analysis`, :mod:`fastenc.datasets` — RSA, docs/method.md §5, demo data.
- :mod:`fastenc.extract` — a PyTorch model's layer activations for the 165 sounds (needs torch).
"""
__version__ = "0.1.0"

from .ridge import RidgeCVResult, ridge_cv, study_alphas
from .scoring import LayerScores, prepare_targets, score_layer
from .splits import group_splits, kfold_splits, seed_splits, shuffle_splits
from .io import load_neural, load_stimuli, open_model
from .study import run_all
from .study.plan import default_demo_dir
from . import analysis, datasets, rsa


def __getattr__(name):
    # RidgeLOOCV needs scikit-learn (optional): imported on first access only.
    if name == "RidgeLOOCV":
        try:
            from .estimator import RidgeLOOCV
        except ModuleNotFoundError as e:
            if e.name is None or e.name.split(".")[0] != "sklearn":
                raise
            raise ImportError("fastenc.RidgeLOOCV requires scikit-learn: pip install scikit-learn") from e
        return RidgeLOOCV
    if name == "extract":
        # the activation extractor (fastenc.extract); PyTorch is needed only to run it
        import importlib
        return importlib.import_module(".extract", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"RidgeLOOCV", "extract"})


# RidgeLOOCV is left out of __all__: ``from fastenc import *`` must work without scikit-learn.
__all__ = ["ridge_cv", "RidgeCVResult", "study_alphas", "score_layer", "LayerScores",
           "prepare_targets", "seed_splits", "kfold_splits", "shuffle_splits", "group_splits", "run_all",
           "load_stimuli", "load_neural", "open_model", "default_demo_dir", "extract", "analysis",
           "datasets", "rsa", "__version__"]
