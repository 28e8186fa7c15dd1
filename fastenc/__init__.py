"""fastenc: fast, exact voxelwise encoding and RSA evaluation of neural-network layers.

Main entry points:

- :func:`ridge_cv` — ridge regression with per-target alpha chosen by exact leave-one-out.
- :func:`score_layer` — a layer's cross-validated (noise-corrected) scores on the study's splits.
- :func:`seed_splits` — the study's 10 train/test splits of the 165 sounds.
"""
from .ridge import RidgeCVResult, ridge_cv, study_alphas
from .scoring import LayerScores, prepare_targets, score_layer
from .splits import seed_splits

__version__ = "0.1.0"

__all__ = ["ridge_cv", "RidgeCVResult", "study_alphas", "score_layer", "LayerScores",
           "prepare_targets", "seed_splits", "__version__"]
