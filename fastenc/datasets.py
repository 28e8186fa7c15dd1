"""A small synthetic dataset in exactly the reference study's on-disk layout, with planted truth.

:func:`make_demo` writes a data root that every loader of :mod:`fastenc.io` reads like the real
study's download (docs/method.md §1), small enough that the whole study runs on it in well under two minutes
on two cores.

What is on disk
---------------
- ``data/neural/NH2015``: 8 participants, 30-40 voxels each, 3 repetitions, plus a few voxels with
  ``n_reps == 2`` (their third repetition is NaN) that the loader must drop; ``neural_stim_meta.npy``
  with 165 sounds, 15 in each of the study's 11 categories, interleaved in file order
  (field 0 the wav name as bytes, ``b'stim7_mechanical_3.wav'``; field 4 the category as text);
  ``voxel_features_meta.npy`` a structured array ``voxel_id, n_reps, subj_idx, hemi (bytes),
  x_ras, y_ras`` (integers but ``hemi``); ``df_roi_meta.pkl`` a DataFrame of the kept voxels.
- ``data/neural/B2021``: 20 participants, 15-20 voxels each, 192 sounds whose first 165 are the
  NH2015 sounds in the NH2015 order (``stim_info_v4.mat`` -> 1x1 struct ``stim_info`` ->
  ``stim_names``, a 192x1 cell of names without ``.wav``); ``voxel_features_meta.npy`` is a
  *plain* integer array ``np.arange(n_voxels)`` (the voxel ids), as the study saved it.
- ``data/neural/NH2015comp/components.mat``: ``R`` (165 x 6), ``stim_names`` (1x165 cell of sound
  ids without ``.wav``) in a *shuffled* order, ``component_names`` (6x1 cell: lowfreq, highfreq,
  envsounds, pitch, speech, music).
- Every file is written in the format the study's code writes and reads it (``aud_dnn/AUD_main.py``,
  ``utils.py`` ``get_target``, the packaging scripts under ``aud_dnn/analyze/``): dtypes, plain vs
  structured arrays, MATLAB cell orientations.
- ``model_actv/DemoCNN`` (``h5``, 6 layers conv1..conv5, fc; 64-256 units),
  ``model_actv/DemoTransformer`` (``per_sound_pickle``, 5 layers Embedding, Encoder_1..3, Final;
  96 units; pickles also carry an unused key), both with ``_randnetw`` versions;
  ``model_actv/spectemp`` (``h5``, one layer ``avgpool``, 128 units, no randnetw).
- ``fastenc_models.json``: manifest of the two demo models and the model set ``DEMO_MODEL_LIST``
  (DemoCNN, DemoTransformer, spectemp); picked up by ``load_registry(data_dir)``.
- ``.fastenc_demo_complete``: written last; its presence makes :func:`make_demo` a no-op.

ROI convention (the study's): ``roi_label_general`` is ``"Primary"``, ``"Anterior"``,
``"Lateral"``, ``"Posterior"`` or NaN (voxel outside these ROIs); ``roi_anat_hemi`` is
``"<roi>_<hemi>"`` (e.g. ``"Primary_lh"``) or NaN; ``hemi`` is ``b"lh"``/``b"rh"`` in
``voxel_features_meta.npy`` and ``"lh"``/``"rh"`` in ``df_roi_meta.pkl``.

Planted ground truth (``DEMO_TRUTH``)
------------------------------------
Every sound has latent features at 5 depth levels (0 = acoustic/shallow ... 4 = semantic/deep), 8
features per level; deeper levels are increasingly driven by the sound's category (share 0.8 * level/4)
and inherit 35 % of their variance (rotated) from the level below. Layer *k* of a trained model is a
random linear read-out of the features with weights ``exp(-(level - depth_k)**2 / (2 * 0.9**2))``
around the layer's depth (depths rise with layer index, ``DEMO_MODELS``) plus unit noise (sd 0.6), so
layer *k* carries progressively deeper features. Each voxel responds to the features around a
preferred depth (tuning width 0.7): Primary 0.5, Lateral 2.5, Posterior 3.0, Anterior 3.5, unlabelled
voxels uniform in [0.5, 3.5]. So Primary voxels are best predicted by early layers (DemoCNN conv1-conv2,
DemoTransformer Embedding) and non-primary ROIs by deeper layers (conv4-fc, Encoder_2-Final). 80 % of
a voxel's reliable variance comes from the features, 20 % from a reliable but unmodelled
sound-specific component (noise-corrected R² is at most ~0.8). Three repetitions add voxel-specific
noise with a target repetition reliability drawn from ``0.1 + 0.8 * Beta(2, 2)`` (reliability from
~0.1 to ~0.9); ``pearson_r_reliability`` in ``df_roi_meta.pkl`` is the measured median Pearson r over
the three repetition pairs (the true values are in the extra columns ``demo_true_reliability`` and
``demo_true_preferred_depth``). Networks with permuted weights (randnetw) carry levels 0 and 1 at
weights 0.6 and 0.25 under unit noise 1.0: they predict Primary voxels somewhat and the rest barely,
far worse than the trained models. ``spectemp`` carries levels 0-1 fully and level 2 at half weight
under unit noise 0.8: between randnetw and the best trained layers. (Measured on seed 0, uncorrected
median r² of the mean response over all NH2015 voxels, best layer: trained ~0.35-0.39, spectemp ~0.18,
randnetw ~0.03.)
Components: lowfreq, highfreq = level-0 features; pitch = a level-1 feature; envsounds, speech,
music = level-3/4 features plus the category indicator (Nature/Mechanical/EnvSound, Eng/ForSpeech,
Music/Song), plus noise.

Examples
--------
>>> import tempfile
>>> root = make_demo(tempfile.mkdtemp() + "/demo", seed=0)
>>> sorted(p.name for p in (root / "model_actv").iterdir())
['DemoCNN', 'DemoTransformer', 'spectemp']
>>> DEMO_TRUTH["roi_preferred_depth"]["Primary"]
0.5
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io

from .registry import load_registry

__all__ = ["make_demo", "DEMO_TRUTH", "DEMO_MODELS", "DEMO_MARKER"]

#: Written last into a complete demo folder.
DEMO_MARKER = ".fastenc_demo_complete"

_N_SOUNDS = 165
_N_SOUNDS_B2021 = 192
_N_LEVELS = 5
_FEATURES_PER_LEVEL = 8
_LAYER_WIDTH = 0.9        # width of a layer's depth tuning (in levels)
_VOXEL_WIDTH = 0.7        # width of a voxel's depth tuning
_CARRY_OVER = 0.35        # share of a level's features inherited (rotated) from the level below
_RANDNETW_LEVEL_WEIGHTS = (0.6, 0.25, 0.0, 0.0, 0.0)
_RANDNETW_UNIT_NOISE = 1.0
_EXPLAINABLE = 0.8        # share of reliable voxel variance carried by the latent features

#: The demo models: storage, layers, units per layer and depth of each layer (in levels 0..4).
DEMO_MODELS = {
    "DemoCNN": {
        "display_name": "DemoCNN",
        "storage": "h5",
        "layers": ["conv1", "conv2", "conv3", "conv4", "conv5", "fc"],
        "units": [64, 96, 128, 128, 256, 64],
        "depths": [0.0, 0.8, 1.6, 2.4, 3.2, 4.0],
        "unit_noise": 0.6,
    },
    "DemoTransformer": {
        "display_name": "DemoTransformer",
        "storage": "per_sound_pickle",
        "layers": ["Embedding", "Encoder_1", "Encoder_2", "Encoder_3", "Final"],
        "layer_keys": {
            "Embedding": "Conv1d(1, 96, kernel_size=(16,), stride=(8,))--0",
            "Encoder_1": "TransformerEncoderLayer(d_model=96)--0",
            "Encoder_2": "TransformerEncoderLayer(d_model=96)--1",
            "Encoder_3": "TransformerEncoderLayer(d_model=96)--2",
            "Final": "Linear(in_features=96, out_features=96, bias=True)--0",
        },
        "units": [96, 96, 96, 96, 96],
        "depths": [0.25, 1.2, 2.2, 3.1, 3.8],
        "unit_noise": 0.6,
    },
    "spectemp": {
        "display_name": "SpectroTemporal",
        "storage": "h5",
        "layers": ["avgpool"],
        "units": [128],
        "level_weights": [1.0, 1.0, 0.5, 0.0, 0.0],
        "unit_noise": 0.8,
    },
}

#: Documented planted truth of the demo (see the module docstring).
DEMO_TRUTH = {
    "n_depth_levels": _N_LEVELS,
    "features_per_level": _FEATURES_PER_LEVEL,
    "layer_depths": {name: dict(zip(spec["layers"], spec.get("depths", [1.0])))
                     for name, spec in DEMO_MODELS.items()},
    "roi_preferred_depth": {"Primary": 0.5, "Lateral": 2.5, "Posterior": 3.0, "Anterior": 3.5,
                            "unlabelled": (0.5, 3.5)},
    "roi_shares": {"Primary": 0.25, "Anterior": 0.15, "Lateral": 0.2, "Posterior": 0.2, "unlabelled": 0.2},
    "explainable_variance": _EXPLAINABLE,
    "repetition_reliability": "0.1 + 0.8 * Beta(2, 2) per voxel",
    "expected": {
        "best_layer_primary_vs_nonprimary": "Primary voxels peak at earlier layers (relative position "
                                            "lower) than Anterior, Lateral and Posterior voxels",
        "model_ranking": "trained DemoCNN/DemoTransformer > spectemp > randnetw versions",
        "max_noise_corrected_r2": "about 0.8 (20 % reliable, unmodelled variance)",
    },
    "randnetw": {"level_weights": _RANDNETW_LEVEL_WEIGHTS, "unit_noise": _RANDNETW_UNIT_NOISE},
    "layer_tuning_width": _LAYER_WIDTH,
    "voxel_tuning_width": _VOXEL_WIDTH,
    "level_carry_over": _CARRY_OVER,
    "spectemp_level_weights": DEMO_MODELS["spectemp"]["level_weights"],
    "nh2015": {"participants": 8, "voxels_per_participant": (30, 40), "dropped_voxels_n_reps_2": 6},
    "b2021": {"participants": 20, "voxels_per_participant": (15, 20), "sounds": _N_SOUNDS_B2021},
    "components": ["lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"],
}

_ROI_CENTERS = {"Primary": (0.0, 0.0), "Anterior": (12.0, 18.0), "Lateral": (-15.0, 5.0),
                "Posterior": (0.0, -20.0), None: (20.0, -15.0)}


# ---------------------------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------------------------
def _standardize(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    return a / a.std(axis=0)


def _latent_features(rng: np.random.Generator, categories: np.ndarray, n_categories: int) -> list[np.ndarray]:
    """Per level, a (sounds, features) matrix; deeper levels depend more on the category."""
    levels = []
    for level in range(_N_LEVELS):
        category_share = 0.8 * level / (_N_LEVELS - 1)
        category_embedding = rng.standard_normal((n_categories, _FEATURES_PER_LEVEL))
        own = rng.standard_normal((len(categories), _FEATURES_PER_LEVEL))
        new = _standardize(np.sqrt(category_share) * category_embedding[categories]
                           + np.sqrt(1 - category_share) * own)
        if levels:
            rotation, _ = np.linalg.qr(rng.standard_normal((_FEATURES_PER_LEVEL, _FEATURES_PER_LEVEL)))
            new = np.sqrt(_CARRY_OVER) * (levels[-1] @ rotation) + np.sqrt(1 - _CARRY_OVER) * new
        levels.append(_standardize(new))
    return levels


def _layer(rng, features, level_weights, units, unit_noise) -> np.ndarray:
    n_sounds = features[0].shape[0]
    X = unit_noise * rng.standard_normal((n_sounds, units))
    for weight, F in zip(level_weights, features):
        W = rng.standard_normal((_FEATURES_PER_LEVEL, units)) / np.sqrt(_FEATURES_PER_LEVEL)
        X += weight * (F @ W)
    return X


def _tuning(depth: float, width: float) -> np.ndarray:
    levels = np.arange(_N_LEVELS)
    return np.exp(-((levels - depth) ** 2) / (2 * width ** 2))


def _model_activations(rng, features) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{model: {"trained"|"randnetw": {layer: (n_sounds, units) float32}}}`` on the 165 sounds."""
    out = {}
    for name, spec in DEMO_MODELS.items():
        versions = {}
        trained = {}
        for i, layer in enumerate(spec["layers"]):
            weights = spec["level_weights"] if "level_weights" in spec else _tuning(spec["depths"][i], _LAYER_WIDTH)
            trained[layer] = _layer(rng, features, weights, spec["units"][i], spec["unit_noise"]).astype(np.float32)
        versions["trained"] = trained
        if name != "spectemp":
            versions["randnetw"] = {
                layer: _layer(rng, features, _RANDNETW_LEVEL_WEIGHTS, spec["units"][i],
                              _RANDNETW_UNIT_NOISE).astype(np.float32)
                for i, layer in enumerate(spec["layers"])
            }
        out[name] = versions
    return out


def _voxels(rng, features, subjects: int, voxels_per_subject: tuple[int, int], n_sounds: int,
            first_voxel_id: int):
    """Responses (n_sounds, voxels, 3) and a per-voxel table for one dataset."""
    rois = ["Primary", "Anterior", "Lateral", "Posterior", None]
    shares = np.array([DEMO_TRUTH["roi_shares"][r if r else "unlabelled"] for r in rois])
    rows, blocks = [], []
    for subj in range(1, subjects + 1):
        n = int(rng.integers(voxels_per_subject[0], voxels_per_subject[1] + 1))
        labels = rois[:4] * 2 + list(rng.choice(len(rois), size=n - 8, p=shares / shares.sum()))
        labels = [rois[l] if isinstance(l, (int, np.integer)) else l for l in labels]
        labels = [labels[i] for i in rng.permutation(n)]
        for roi in labels:
            if roi is None:
                depth = rng.uniform(*DEMO_TRUTH["roi_preferred_depth"]["unlabelled"])
            else:
                depth = DEMO_TRUTH["roi_preferred_depth"][roi]
            tuning = _tuning(depth, _VOXEL_WIDTH)
            signal = sum(t * (F[:n_sounds] @ rng.standard_normal(_FEATURES_PER_LEVEL))
                         for t, F in zip(tuning, features))
            signal = (signal - signal.mean()) / signal.std()
            unmodelled = rng.standard_normal(n_sounds)
            reliable = np.sqrt(_EXPLAINABLE) * signal + np.sqrt(1 - _EXPLAINABLE) * unmodelled
            reliability = 0.1 + 0.8 * rng.beta(2.0, 2.0)
            noise_sd = np.sqrt(1.0 / reliability - 1.0)
            scale, offset = rng.uniform(0.5, 2.0), rng.normal(0.0, 0.5)
            reps = reliable[:, None] + noise_sd * rng.standard_normal((n_sounds, 3))
            blocks.append(offset + scale * reps)
            hemi = "lh" if rng.random() < 0.5 else "rh"
            cx, cy = _ROI_CENTERS[roi]
            x = (cx + rng.normal(0, 3.0)) * (-1 if hemi == "lh" else 1)
            y = cy + rng.normal(0, 3.0)
            pairs = [np.corrcoef(reps[:, a], reps[:, b])[0, 1] for a, b in ((0, 1), (1, 2), (0, 2))]
            rows.append({"subj_idx": subj, "hemi": hemi, "x_ras": int(round(x)), "y_ras": int(round(y)),
                         "roi_label_general": np.nan if roi is None else roi,
                         "roi_anat_hemi": np.nan if roi is None else f"{roi}_{hemi}",
                         "pearson_r_reliability": float(np.median(pairs)),
                         "true_preferred_depth": float(depth), "true_reliability": float(reliability)})
    Y = np.stack(blocks, axis=1)
    table = pd.DataFrame(rows)
    table.insert(len(table.columns), "voxel_id", np.arange(first_voxel_id, first_voxel_id + len(table)))
    return Y, table


def _components(rng, features, categories, category_names) -> np.ndarray:
    def indicator(names):
        return np.isin(np.asarray(category_names)[categories[:_N_SOUNDS]], names).astype(float)

    f = [F[:_N_SOUNDS] for F in features]
    signals = [
        f[0][:, 0],
        f[0][:, 1],
        f[3][:, 1] + indicator(["Nature", "Mechanical", "EnvSound"]) * 2.0,
        f[1][:, 0],
        f[4][:, 0] + indicator(["EngSpeech", "ForSpeech"]) * 2.5,
        f[4][:, 1] + indicator(["Music", "Song"]) * 2.5,
    ]
    R = np.stack([s / s.std() + 0.5 * rng.standard_normal(_N_SOUNDS) for s in signals], axis=1)
    return R


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _write_nh2015(folder: Path, rng, Y, table, wav_names, categories_text):
    folder.mkdir(parents=True, exist_ok=True)
    n_kept = Y.shape[1]
    n_dropped = DEMO_TRUTH["nh2015"]["dropped_voxels_n_reps_2"]
    positions = np.sort(rng.choice(n_kept + n_dropped, size=n_dropped, replace=False))
    is_dropped = np.zeros(n_kept + n_dropped, dtype=bool)
    is_dropped[positions] = True
    full = np.empty((Y.shape[0], n_kept + n_dropped, 3))
    full[:, ~is_dropped] = Y
    dropped = rng.standard_normal((Y.shape[0], n_dropped, 3))
    dropped[:, :, 2] = np.nan
    full[:, is_dropped] = dropped
    meta = np.zeros(n_kept + n_dropped, dtype=[("voxel_id", "i8"), ("n_reps", "i8"), ("subj_idx", "i8"),
                                                ("hemi", "S2"), ("x_ras", "i8"), ("y_ras", "i8")])
    kept = table.to_dict("list")
    meta["voxel_id"][~is_dropped] = kept["voxel_id"]
    meta["voxel_id"][is_dropped] = 900000 + np.arange(n_dropped)
    meta["n_reps"] = np.where(is_dropped, 2, 3)
    # dropped voxels belong to the participant of the next kept voxel (or the last one)
    kept_index = np.cumsum(~is_dropped) - 1
    subj = np.asarray(kept["subj_idx"])
    meta["subj_idx"][~is_dropped] = subj
    meta["subj_idx"][is_dropped] = subj[np.clip(kept_index[is_dropped] + 1, 0, n_kept - 1)]
    meta["hemi"][~is_dropped] = [h.encode() for h in kept["hemi"]]
    meta["hemi"][is_dropped] = b"lh"
    meta["x_ras"][~is_dropped] = kept["x_ras"]
    meta["y_ras"][~is_dropped] = kept["y_ras"]
    meta["x_ras"][is_dropped] = rng.normal(30, 3, n_dropped).round()
    meta["y_ras"][is_dropped] = rng.normal(-25, 3, n_dropped).round()
    np.save(folder / "voxel_features_array.npy", full)
    np.save(folder / "voxel_features_meta.npy", meta)
    # the study reads field 0 (wav name, bytes) and field 4 (category, text) by position
    stim_meta = np.zeros(_N_SOUNDS, dtype=[("filename", "S64"), ("fmri_stim_idx", "i8"),
                                           ("embedded-wav-start-idx", "i8"), ("embedded-wav-end-idx", "i8"),
                                           ("category", "U16"), ("id", "i8")])
    stim_meta["filename"] = [w.encode() for w in wav_names]
    stim_meta["fmri_stim_idx"] = np.arange(_N_SOUNDS)
    stim_meta["embedded-wav-start-idx"] = 0
    stim_meta["embedded-wav-end-idx"] = 40000
    stim_meta["category"] = categories_text
    stim_meta["id"] = np.arange(_N_SOUNDS)
    np.save(folder / "neural_stim_meta.npy", stim_meta)
    _roi_frame(table).to_pickle(folder / "df_roi_meta.pkl")


def _roi_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``df_roi_meta.pkl``: the study's columns (a subset) plus the demo's planted truth."""
    columns = ["subj_idx", "hemi", "x_ras", "y_ras", "voxel_id", "pearson_r_reliability",
               "roi_label_general", "roi_anat_hemi", "true_preferred_depth", "true_reliability"]
    frame = table[columns].rename(columns={"true_preferred_depth": "demo_true_preferred_depth",
                                           "true_reliability": "demo_true_reliability"})
    # as in the study's packaging: coordinate id and how many voxels share it
    frame.insert(6, "coord_id", [f"{x}_{y}" for x, y in zip(frame["x_ras"], frame["y_ras"])])
    frame.insert(7, "shared_by", frame.groupby("coord_id")["coord_id"].transform("size").astype(float))
    frame["roi_label_general"] = frame["roi_label_general"].astype(object)
    frame["roi_anat_hemi"] = frame["roi_anat_hemi"].astype(object)
    return frame


def _write_b2021(folder: Path, Y, table, stim_names_192, categories_192, category_names):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "voxel_features_array.npy", Y)
    # the study saved the voxel ids as a PLAIN integer array, np.arange(n_voxels) (no record fields)
    voxel_ids = table["voxel_id"].to_numpy().astype(np.int64)
    assert np.array_equal(voxel_ids, np.arange(Y.shape[1]))
    np.save(folder / "voxel_features_meta.npy", voxel_ids)
    _roi_frame(table).to_pickle(folder / "df_roi_meta.pkl")
    # stim_info is a 1x1 struct; stim_names is a 192x1 cell of names without .wav, read by the study as
    # loadmat(...)["stim_info"]["stim_names"][0][0] -> rows i -> i[0][0]. Other fields come first so a
    # reader must go by field name.
    column = lambda values: np.array(list(values), dtype=object).reshape(-1, 1)  # noqa: E731
    scipy.io.savemat(folder / "stim_info_v4.mat", {"stim_info": {
        "category_names": column(category_names),
        "category_assignment": (np.asarray(categories_192) + 1).reshape(-1, 1).astype(np.float64),
        "stim_names": column(stim_names_192),
    }})


def _write_components(folder: Path, rng, R, stim_ids):
    folder.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(_N_SOUNDS)
    # as the study reads it: stim_names a 1x165 cell of sound ids without .wav (comp_data["stim_names"][0],
    # x[0] each), component_names a 6x1 cell (x[0][0] for each row), R 165 x 6 doubles
    scipy.io.savemat(folder / "components.mat", {
        "R": R[order],
        "stim_names": np.array([stim_ids[i] for i in order], dtype=object).reshape(1, -1),
        "component_names": np.array(DEMO_TRUTH["components"], dtype=object).reshape(-1, 1),
    })


def _write_models(root: Path, activations, stim_ids):
    for name, versions in activations.items():
        spec = DEMO_MODELS[name]
        folder = root / "model_actv" / name
        folder.mkdir(parents=True, exist_ok=True)
        for version, layers in versions.items():
            suffix = "_randnetw" if version == "randnetw" else ""
            if spec["storage"] == "h5":
                with h5py.File(folder / f"natsound_activations{suffix}.h5", "w") as fh:
                    fh.create_dataset("layer_list", data=np.array([l.encode() for l in spec["layers"]]))
                    for layer, X in layers.items():
                        fh.create_dataset(layer, data=X)
            else:
                for row, stim in enumerate(stim_ids):
                    content = {spec["layer_keys"][layer]: X[row] for layer, X in layers.items()}
                    content["Dropout(p=0.1)--0"] = layers[spec["layers"][-1]][row] * 0  # unused key
                    with open(folder / f"{stim}_activations{suffix}.pkl", "wb") as fh:
                        pickle.dump(content, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _manifest() -> dict:
    models = {}
    for name, spec in DEMO_MODELS.items():
        if name == "spectemp":
            continue  # shipped in the registry
        entry = {"display_name": spec["display_name"], "layers": spec["layers"], "storage": spec["storage"]}
        if "layer_keys" in spec:
            entry["layer_keys"] = spec["layer_keys"]
        models[name] = entry
    return {"description": "fastenc demo models (synthetic, see fastenc.datasets)",
            "models": models,
            "model_sets": {"DEMO_MODEL_LIST": ["DemoCNN", "DemoTransformer", "spectemp"]}}


_DEMO_ENTRIES = ("data", "model_actv", "fastenc_models.json", DEMO_MARKER)


def _remove_previous_demo(root: Path) -> None:
    """Remove only what make_demo writes (never unrelated files in ``root``)."""
    for target in ("NH2015", "B2021", "NH2015comp"):
        shutil.rmtree(root / "data" / "neural" / target, ignore_errors=True)
    for name in DEMO_MODELS:
        shutil.rmtree(root / "model_actv" / name, ignore_errors=True)
    for name in ("fastenc_models.json", DEMO_MARKER):
        (root / name).unlink(missing_ok=True)


def make_demo(path: str | Path, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the synthetic demo dataset (study layout, planted truth) and return its root.

    Parameters
    ----------
    path : str or Path
        Folder to create (parents included). If it already holds a complete demo of the same seed
        (marker file ``.fastenc_demo_complete``), nothing is written.
    seed : int
        Seed of ``numpy.random.default_rng``; the content is a deterministic function of it.
    overwrite : bool
        Rewrite an existing demo (only the demo's own files are removed).

    Returns
    -------
    Path
        The data root (holds ``data/``, ``model_actv/``, ``fastenc_models.json``).

    Raises
    ------
    FileExistsError
        ``path`` holds a demo of another seed (without ``overwrite``), or files that are not a demo's.

    Examples
    --------
    >>> import tempfile
    >>> root = make_demo(tempfile.mkdtemp() + "/demo")
    >>> make_demo(root) == root   # complete: returned as is
    True
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} is an existing file, not a folder; make_demo writes a folder")
    marker = root / DEMO_MARKER
    if marker.is_file() and not overwrite:
        written = json.loads(marker.read_text() or "{}")
        if written.get("seed") != seed:
            raise FileExistsError(f"{root} holds a demo made with seed {written.get('seed')}, not {seed}; "
                                  "pass overwrite=True to rewrite it")
        return root
    if root.exists():
        foreign = [p.name for p in root.iterdir() if p.name not in _DEMO_ENTRIES]
        if foreign and not overwrite:
            raise FileExistsError(f"{root} is not empty and is not a fastenc demo (holds {sorted(foreign)[:5]}); "
                                  "choose another folder")
        _remove_previous_demo(root)
    root.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    category_names = list(load_registry().sound_category_order)
    n_categories = len(category_names)
    per_category = _N_SOUNDS // n_categories
    categories_165 = rng.permutation(np.repeat(np.arange(n_categories), per_category))
    categories_extra = rng.integers(0, n_categories, _N_SOUNDS_B2021 - _N_SOUNDS)
    categories = np.concatenate([categories_165, categories_extra])
    counters = {c: 0 for c in range(n_categories)}
    stim_ids = []
    for i, c in enumerate(categories_165):
        counters[c] += 1
        stim_ids.append(f"stim{i + 1}_{category_names[c].lower()}_{counters[c]}")
    wav_names = [f"{s}.wav" for s in stim_ids]
    extra_ids = [f"b2021_stim{i + 1}_{category_names[c].lower()}" for i, c in enumerate(categories_extra)]

    features = _latent_features(rng, categories, n_categories)
    activations = _model_activations(rng, [F[:_N_SOUNDS] for F in features])
    Y_nh, table_nh = _voxels(rng, features, 8, DEMO_TRUTH["nh2015"]["voxels_per_participant"], _N_SOUNDS, 1001)
    Y_b, table_b = _voxels(rng, features, 20, DEMO_TRUTH["b2021"]["voxels_per_participant"],
                           _N_SOUNDS_B2021, 0)
    R = _components(rng, features, categories, category_names)

    neural = root / "data" / "neural"
    _write_nh2015(neural / "NH2015", rng, Y_nh, table_nh, wav_names, [category_names[c] for c in categories_165])
    _write_b2021(neural / "B2021", Y_b, table_b, stim_ids + extra_ids, categories, category_names)
    _write_components(neural / "NH2015comp", rng, R, stim_ids)
    _write_models(root, activations, stim_ids)
    (root / "fastenc_models.json").write_text(json.dumps(_manifest(), indent=2))
    marker.write_text(json.dumps({"seed": seed, "generator": "fastenc.datasets.make_demo"}))
    return root
