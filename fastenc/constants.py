"""The study's constants, in one place (docs/method.md gives where each comes from).

Every module that needs one of these imports it from here; nothing else hard-codes them.

Examples
--------
>>> from fastenc.constants import N_STIMULI, N_TRAIN, N_SPLITS, STUDY_ALPHAS
>>> N_STIMULI, N_TRAIN, N_SPLITS, STUDY_ALPHAS.size, float(STUDY_ALPHAS[0])
(165, 83, 10, 100, 1e+49)
"""
from __future__ import annotations

import numpy as np

__all__ = ["N_STIMULI", "N_TRAIN", "N_TEST", "N_SPLITS", "SPLIT_SEED", "N_REPS", "STUDY_ALPHAS",
           "RV_FLOOR", "RV_HAT_FLOOR", "TARGETS", "NEURAL_TARGETS", "COMPONENT_TARGET",
           "COMPONENT_NAMES", "ROI_ORDER", "RSA_ROIS", "CATEGORY_ORDER", "SPECTEMP",
           "N_ITERATIONS", "N_RESAMPLES", "PUBLISHED_SCORES"]

#: The natural sounds of Norman-Haignere et al. (2015), in the order of ``neural_stim_meta.npy``.
N_STIMULI = 165
#: Train / test sounds per split, and the number of splits (§2).
N_TRAIN = 83
N_TEST = N_STIMULI - N_TRAIN
N_SPLITS = 10
#: Seed of the legacy ``numpy.random.RandomState`` stream the splits are drawn from (§2).
SPLIT_SEED = 0
#: Repetitions of each voxel's responses (§1, §4).
N_REPS = 3

#: The ridge penalty grid: 10**x for x = 49, 48, ..., -50 (100 values, descending; §3).
STUDY_ALPHAS = 10.0 ** np.arange(49, -51, -1, dtype=np.float64)
STUDY_ALPHAS.setflags(write=False)

#: Floors of the Spearman–Brown-corrected reliabilities of the data (train sounds, n = 83) and
#: of the predictions (test sounds, n = 82): the one-tailed p < .05 critical r, rounded (§4).
RV_FLOOR = 0.182
RV_HAT_FLOOR = 0.183

#: Target datasets: two fMRI datasets with repetitions, and the six NH2015 components (§1).
NEURAL_TARGETS = ("NH2015", "B2021")
COMPONENT_TARGET = "NH2015comp"
TARGETS = NEURAL_TARGETS + (COMPONENT_TARGET,)
COMPONENT_NAMES = ("lowfreq", "highfreq", "envsounds", "pitch", "speech", "music")

#: Anatomical ROIs in the order of the study's regression tables (§5) ...
ROI_ORDER = ("Primary", "Anterior", "Lateral", "Posterior")
#: ... and of its RSA figures, with all voxels first (§6).
RSA_ROIS = ("All", "Primary", "Lateral", "Posterior", "Anterior")

#: Sound categories in the order the RSA reorders the sounds (stable within a category; §6).
CATEGORY_ORDER = ("Music", "Song", "EngSpeech", "ForSpeech", "HumVoc", "AniVoc", "HumNonVoc",
                  "AniNonVoc", "Nature", "Mechanical", "EnvSound")

#: The SpectroTemporal baseline model (one layer, no permuted version).
SPECTEMP = "spectemp"

#: Iterations of the best-layer-on-independent-splits loop (§5) and resamples of the
#: bootstrap / permutation comparisons (§5).
N_ITERATIONS = 10
N_RESAMPLES = 10_000

#: Published median noise-corrected R² (best layer on independent splits), NH2015 / B2021, read
#: from the study's figures (± 0.005; docs/method.md §7). For orientation only.
PUBLISHED_SCORES = {
    "CochResNet50-MultiTask": (0.731, 0.751),
    "AST": (0.727, 0.747),
    "VGGish": (0.716, 0.712),
    "CochCNN9-MultiTask": (0.712, 0.724),
    "S2T": (0.625, 0.610),
    "Wav2Vec2": (0.602, 0.629),
    "DeepSpeech2": (0.516, 0.520),
    "DCASE2020": (0.312, 0.347),
    "MetricGAN": (0.265, 0.253),
    "SpectroTemporal": (0.527, None),   # the paper gives one value, for NH2015
}
