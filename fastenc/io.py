"""Loaders for the reference study's on-disk layout (docs/method.md §1).

A data root holds ``data/`` and ``model_actv/``::

    data/neural/NH2015/voxel_features_array.npy    (165, voxels, 3) responses
    data/neural/NH2015/voxel_features_meta.npy     structured: voxel_id, n_reps, subj_idx, hemi, x_ras, y_ras
    data/neural/NH2015/neural_stim_meta.npy        165 records: field 0 wav name, field 4 category
    data/neural/NH2015/df_roi_meta.pkl             one row per kept voxel (n_reps == 3)
    data/neural/B2021/voxel_features_array.npy     (192, voxels, 3); the first 165 sounds are used
    data/neural/B2021/voxel_features_meta.npy      plain integer array of voxel ids (np.arange(26792));
                                                   a structured array with voxel_id is accepted too
    data/neural/B2021/df_roi_meta.pkl
    data/neural/B2021/stim_info_v4.mat             stim_info.stim_names (first 165 = NH2015 order)
    data/neural/NH2015comp/components.mat          R (165 x 6), stim_names, component_names
    model_actv/<model>/natsound_activations.h5             (storage "h5")
    model_actv/<model>/natsound_activations_randnetw.h5
    model_actv/<model>/<stim_id>_activations.pkl           (storage "per_sound_pickle")
    model_actv/<model>/<stim_id>_activations_randnetw.pkl

An h5 layer is read from the dataset named by the registry's layer key (``ModelSpec.key_of``), which
is the layer name except for aliases such as ResNet50music's ``conv1_relu1``, stored as ``relu1``
(the study's ``utils.get_source_features``); the layer name itself is the fallback. A file that
cannot be read is reported with its path and whether it is empty, truncated or otherwise corrupt.

Every array returned here is in the NH2015 stimulus order (``neural_stim_meta.npy``) and float64.
Anatomical ROI labels are read as stored: ``roi_label_general`` is ``Primary``, ``Anterior``,
``Lateral``, ``Posterior``, or NaN for voxels outside these ROIs (the study's convention; the string
``"missing"`` is accepted too).

Examples
--------
>>> from fastenc.datasets import make_demo
>>> import tempfile
>>> root = make_demo(tempfile.mkdtemp() + "/demo")
>>> nh = load_neural(root, "NH2015")
>>> nh.Y.shape[0], nh.Y.shape[2], nh.Y.shape[1] == len(nh.roi_meta)
(165, 3, True)
>>> acts = open_model(root, "DemoCNN")
>>> [(layer, X.shape[0]) for layer, X in acts.iter_layers()][0]
('conv1', 165)
"""
from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io

from . import constants as _c
from .registry import ModelSpec, Registry, load_registry

__all__ = [
    "N_STIMULI",
    "N_REPETITIONS",
    "NEURAL_TARGETS",
    "ROI_LABELS",
    "NeuralData",
    "ModelActivations",
    "load_stimuli",
    "load_neural",
    "open_model",
    "activation_paths",
    "available_models",
]

# The study's constants (fastenc.constants), under the names this module has always exported:
#: number of sounds of the NH2015 set (every X and Y has this many rows); repetitions per voxel
#: kept in the neural data; the targets :func:`load_neural` understands; the anatomical ROI
#: labels of ``roi_label_general`` (voxels outside them are NaN).
N_STIMULI = _c.N_STIMULI
N_REPETITIONS = _c.N_REPS
NEURAL_TARGETS = _c.TARGETS
ROI_LABELS = _c.ROI_ORDER


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _as_text(value) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8")
    return str(value)


def _strip_wav(name: str) -> str:
    name = name.strip()
    return name[:-4] if name.lower().endswith(".wav") else name


def _neural_dir(data_dir: str | Path, target: str) -> Path:
    return Path(data_dir) / "data" / "neural" / target


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


#: Phrases of numpy / pickle / scipy / h5py errors that mean "the file ends too early".
_TRUNCATION_HINTS = ("ran out of input", "truncated", "eof", "not fully written", "no data left",
                     "could not read bytes", "mmap length is greater", "could only read")


def _unreadable(path: Path, what: str, exc: BaseException, owner: str = "") -> ValueError:
    """A ValueError that names ``what`` and ``path`` and says what is wrong with the file.

    Distinguishes an empty file (0 bytes) and a truncated one (the reader ran out of data) from
    other damage, so that a half-copied download is recognised as such.
    """
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    detail = f"{type(exc).__name__}: {exc}"
    if size == 0:
        problem = "is empty (0 bytes)"
    elif isinstance(exc, EOFError) or any(h in str(exc).lower() for h in _TRUNCATION_HINTS):
        problem = f"is truncated or corrupt: its data ends early ({size} bytes; {detail}); copy it again"
    else:
        problem = f"cannot be read (corrupt or not in the expected format; {size} bytes): {detail}"
    owner = f" of {owner}" if owner else ""
    return ValueError(f"{what} {path}{owner} {problem}")


def _load_npy(path: Path, what: str, mmap: bool = False) -> np.ndarray:
    _require_file(path, what)
    try:
        if mmap:  # numeric arrays: read only the rows/voxels that are kept
            return np.load(path, mmap_mode="r")
        return np.load(path, allow_pickle=True)
    except (OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise _unreadable(path, what, exc) from None


def _load_pickle(path: Path, what: str):
    _require_file(path, what)
    try:
        return pd.read_pickle(path)
    except Exception as exc:  # any failure to unpickle means an unreadable file
        raise _unreadable(path, what, exc) from None


def _structured_to_frame(records: np.ndarray) -> pd.DataFrame:
    columns = {}
    for name in records.dtype.names:
        column = records[name]
        if column.dtype.kind in "SO":
            column = [_as_text(v) for v in column]
        columns[name] = column
    return pd.DataFrame(columns)


def _matlab_strings(value) -> list[str]:
    """Flatten what ``scipy.io.loadmat`` makes of a MATLAB string list into a list of str.

    Handles cell arrays (object arrays of 1-element string arrays, any orientation), char matrices,
    plain strings and bytes, and 1x1 wrappers around any of these.
    """
    if isinstance(value, (str, np.str_, bytes, np.bytes_)):
        return [_as_text(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            if value.size == 0:
                return [""]
            return [_as_text(v) for v in value.ravel()]
        if value.dtype == object:
            out: list[str] = []
            for item in value.ravel():
                out.extend(_matlab_strings(item))
            return out
    raise ValueError(f"expected MATLAB strings (cell or char array), got {type(value).__name__} "
                     f"{getattr(value, 'dtype', '')}")


def _matlab_field(struct, name: str):
    """Field ``name`` of a MATLAB struct as loaded by ``scipy.io.loadmat`` (1x1 wrappers unwrapped)."""
    while isinstance(struct, np.ndarray) and struct.dtype == object and struct.size == 1:
        struct = struct.ravel()[0]
    if isinstance(struct, Mapping):
        return struct[name]
    if isinstance(struct, np.ndarray) and struct.dtype.names is not None:
        if name not in struct.dtype.names:
            raise KeyError(name)
        return struct[name]
    raise KeyError(name)


def _load_mat(path: Path, what: str) -> dict:
    _require_file(path, what)
    try:
        return scipy.io.loadmat(str(path))
    except (OSError, ValueError, TypeError, NotImplementedError, EOFError, scipy.io.matlab.MatReadError) as exc:
        raise _unreadable(path, what, exc) from None


# ---------------------------------------------------------------------------------------------
# stimuli and neural data
# ---------------------------------------------------------------------------------------------
def load_stimuli(data_dir: str | Path) -> pd.DataFrame:
    """The 165 sounds in the study's order (``neural_stim_meta.npy``).

    Parameters
    ----------
    data_dir : str or Path
        Data root holding ``data/`` and ``model_actv/``.

    Returns
    -------
    DataFrame
        Columns ``stim_id`` (wav name without ``.wav``), ``wav_name``, ``category`` (field 4 of
        the records, bytes or text in the file), one row per sound in file order.

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> stimuli = load_stimuli(make_demo(tempfile.mkdtemp() + "/demo"))
    >>> len(stimuli), list(stimuli.columns)
    (165, ['stim_id', 'wav_name', 'category'])
    """
    path = _neural_dir(data_dir, "NH2015") / "neural_stim_meta.npy"
    records = _load_npy(path, "stimulus metadata")
    if records.dtype.names is None or len(records.dtype.names) < 5:
        raise ValueError(f"stimulus metadata {path} must be a structured array with at least 5 fields "
                         f"(field 0: wav name, field 4: category); got dtype {records.dtype}")
    records = records.ravel()
    if len(records) != N_STIMULI:
        raise ValueError(f"stimulus metadata {path} has {len(records)} records; expected {N_STIMULI} sounds")
    names = records.dtype.names
    wav_names = [_as_text(v).strip() for v in records[names[0]]]
    stim_ids = [_strip_wav(v) for v in wav_names]
    categories = [_as_text(v).strip() for v in records[names[4]]]
    duplicated = pd.Index(stim_ids)[pd.Index(stim_ids).duplicated()].tolist()
    if duplicated:
        raise ValueError(f"stimulus metadata {path} repeats sound names {duplicated[:5]}")
    return pd.DataFrame({"stim_id": stim_ids, "wav_name": wav_names, "category": categories})


@dataclass
class NeuralData:
    """Neural responses of one target, in the NH2015 stimulus order.

    Attributes
    ----------
    target : str
        ``"NH2015"``, ``"B2021"`` or ``"NH2015comp"``.
    Y : ndarray of float64
        ``(165, n_voxels, 3)`` (voxels x repetitions) or ``(165, 6)`` for the components.
    stim_ids : list of str
        The 165 sound ids, in row order.
    target_names : list of str
        One name per column of ``Y``: the voxel id as text, or the component name.
    voxel_meta : DataFrame or None
        Kept records of ``voxel_features_meta.npy`` (bytes decoded), aligned with ``Y`` columns.
    roi_meta : DataFrame or None
        ``df_roi_meta.pkl`` aligned with ``Y`` columns (index reset); None for components.
    source_file : Path or None
        The file ``Y`` was read from (``voxel_features_array.npy`` or ``components.mat``).
    source_columns : ndarray of int or None
        For each column of ``Y``, its index in ``source_file`` (axis 1 of the voxel array, which
        also holds the voxels dropped for ``n_reps != 3``; the column of ``R`` for components).

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> nh = load_neural(make_demo(tempfile.mkdtemp() + "/demo"), "NH2015")
    >>> primary = nh.select_roi("Primary")
    >>> bool((primary.roi_meta["roi_label_general"] == "Primary").all())
    True
    """

    target: str
    Y: np.ndarray
    stim_ids: list[str]
    target_names: list[str]
    voxel_meta: pd.DataFrame | None = None
    roi_meta: pd.DataFrame | None = field(default=None, repr=False)
    source_file: Path | None = field(default=None, repr=False)
    source_columns: np.ndarray | None = field(default=None, repr=False)

    @property
    def has_repetitions(self) -> bool:
        """True for voxel data (last axis = repetitions), False for components."""
        return self.Y.ndim == 3

    @property
    def n_targets(self) -> int:
        """Number of voxels or components (columns of ``Y``)."""
        return self.Y.shape[1]

    @property
    def voxel_ids(self) -> np.ndarray:
        """Voxel ids aligned with ``Y`` columns (voxel data only)."""
        if self.roi_meta is None:
            raise ValueError(f"target {self.target!r} has no voxels")
        return self.roi_meta["voxel_id"].to_numpy()

    @property
    def subjects(self) -> np.ndarray:
        """Sorted participant indices (``subj_idx``), voxel data only."""
        if self.roi_meta is None:
            raise ValueError(f"target {self.target!r} has no participants")
        return np.unique(self.roi_meta["subj_idx"].to_numpy())

    def select(self, columns: np.ndarray | Sequence[int] | Sequence[bool]) -> "NeuralData":
        """A copy restricted to some columns of ``Y`` (boolean mask or indices)."""
        columns = np.asarray(columns)
        if columns.dtype == bool:
            columns = np.flatnonzero(columns)
        Y = self.Y[:, columns]
        names = [self.target_names[i] for i in columns]
        voxel_meta = None if self.voxel_meta is None else self.voxel_meta.iloc[columns].reset_index(drop=True)
        roi_meta = None if self.roi_meta is None else self.roi_meta.iloc[columns].reset_index(drop=True)
        source_columns = None if self.source_columns is None else np.asarray(self.source_columns)[columns]
        return NeuralData(self.target, Y, list(self.stim_ids), names, voxel_meta, roi_meta,
                          source_file=self.source_file, source_columns=source_columns)

    def nonfinite_targets(self) -> np.ndarray:
        """Indices of the columns of ``Y`` holding any NaN or inf."""
        Y = np.asarray(self.Y)
        axes = (0, 2) if Y.ndim == 3 else (0,)
        return np.flatnonzero(~np.isfinite(Y).all(axis=axes))

    def check_finite(self) -> None:
        """Raise ``ValueError`` if a voxel (or component) has NaN/inf responses.

        The message names the file, and for each bad voxel (first five) its ``voxel_id``, its index
        on the voxel axis of ``voxel_features_array.npy`` (which counts the dropped ``n_reps != 3``
        voxels too), the sound rows and repetitions holding NaN/inf; it says how to skip such
        voxels instead (``nan_policy="omit"``, CLI ``--nan-policy omit``).

        Examples
        --------
        >>> from fastenc.datasets import make_demo
        >>> import tempfile
        >>> load_neural(make_demo(tempfile.mkdtemp() + "/demo"), "NH2015").check_finite()
        """
        bad = self.nonfinite_targets()
        if not len(bad):
            return
        Y = np.asarray(self.Y)
        where = "" if self.source_file is None else f" in {self.source_file}"
        parts = []
        for i in bad[:5]:
            column = int(i if self.source_columns is None else self.source_columns[i])
            block = ~np.isfinite(Y[:, i])
            rows = np.flatnonzero(block.any(axis=1) if block.ndim == 2 else block)
            shown = f"{rows[:5].tolist()}" + ("..." if len(rows) > 5 else "")
            if self.has_repetitions:
                reps = np.flatnonzero(block.any(axis=0)).tolist()
                parts.append(f"voxel_id {self.target_names[i]} (array index [:, {column}, :]; "
                             f"sound rows {shown}, repetitions {reps})")
            else:
                sounds = [self.stim_ids[r] for r in rows[:5]] + (["..."] if len(rows) > 5 else [])
                parts.append(f"component {self.target_names[i]!r} (column {column} of R; sounds {sounds})")
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        kind = "voxel(s)" if self.has_repetitions else "component(s)"
        raise ValueError(f"{self.target} responses{where} contain NaN or inf in {len(bad)} {kind}: "
                         f"{'; '.join(parts)}{more}. Fix the file, or leave these out of the regression "
                         f"(their scores are NaN) with --nan-policy omit on the command line "
                         f"(nan_policy='omit' in Python)")

    def select_roi(self, roi: str | None) -> "NeuralData":
        """Voxels whose ``roi_label_general`` is ``roi`` (``None`` or ``"All"``: all voxels).

        Raises
        ------
        ValueError
            Components have no ROI, or no voxel carries the label (the message lists the labels present).
        """
        if roi is None or roi == "All":
            return self
        if self.roi_meta is None:
            raise ValueError(f"target {self.target!r} has no anatomical ROIs (requested {roi!r})")
        labels = self.roi_meta["roi_label_general"]
        mask = (labels == roi).to_numpy()
        if not mask.any():
            present = sorted({str(v) for v in labels.dropna().unique()})
            raise ValueError(f"ROI {roi!r} is empty for target {self.target!r}: no voxel has "
                             f"roi_label_general == {roi!r}; labels present: {present}")
        return self.select(mask)

    def select_subject(self, subj_idx) -> "NeuralData":
        """Voxels of one participant (``subj_idx`` of ``roi_meta``)."""
        if self.roi_meta is None:
            raise ValueError(f"target {self.target!r} has no participants")
        mask = (self.roi_meta["subj_idx"] == subj_idx).to_numpy()
        if not mask.any():
            raise ValueError(f"no voxel of participant {subj_idx!r} in target {self.target!r}; "
                             f"participants: {self.subjects.tolist()}")
        return self.select(mask)


def _check_stimulus_lists(names: list[str], stim_ids: list[str], mat_path: Path, stim_path: Path) -> None:
    """The first 165 B2021 names must be the NH2015 names in the NH2015 order (docs/method.md §1).

    Either file can be the wrong one, so the message names both.
    """
    if len(names) >= N_STIMULI and names[:N_STIMULI] == list(stim_ids):
        return
    bad = next((i for i, (a, b) in enumerate(zip(names, stim_ids)) if a != b), min(len(names), N_STIMULI))
    got = names[bad] if bad < len(names) else "<none: the B2021 list ends here>"
    n_diff = sum(a != b for a, b in zip(names[:N_STIMULI], stim_ids)) + max(0, N_STIMULI - len(names))
    raise ValueError(
        f"the NH2015 and B2021 stimulus lists disagree: the first {N_STIMULI} B2021 sounds must be the NH2015 "
        f"sounds in the NH2015 order, but {n_diff} position(s) differ; first at position {bad}: "
        f"{got!r} in {mat_path} (stim_info.stim_names) vs {stim_ids[bad]!r} in {stim_path} (field 0). "
        f"One of the two files is out of order or from another dataset")


def _voxel_ids(meta: np.ndarray, target: str, meta_path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-voxel table and n_reps == 3 mask from ``voxel_features_meta.npy``.

    Two formats exist in the study's download: NH2015 stores a structured array (``voxel_id, n_reps,
    subj_idx, hemi, x_ras, y_ras``); B2021 stores a plain integer array of voxel ids
    (``np.arange(26792)``). A structured array with a ``voxel_id`` field is accepted for B2021 too.
    """
    if meta.dtype.names is None:
        if target == "NH2015":
            raise ValueError(f"{target} voxel metadata {meta_path} must be a structured array with fields "
                             f"'voxel_id' and 'n_reps' (the study keeps voxels with n_reps == {N_REPETITIONS}); "
                             f"got a plain array of dtype {meta.dtype}")
        if meta.dtype.kind not in "iu" or meta.ndim > 2 or (meta.ndim == 2 and 1 not in meta.shape):
            raise ValueError(f"{target} voxel metadata {meta_path} must be a 1-D integer array of voxel ids "
                             f"(the study's np.arange(n_voxels)) or a structured array with a 'voxel_id' field; "
                             f"got dtype {meta.dtype}, shape {meta.shape}")
        ids = meta.ravel().astype(np.int64)
        return pd.DataFrame({"voxel_id": ids}), np.ones(len(ids), dtype=bool)
    if "voxel_id" not in meta.dtype.names:
        raise ValueError(f"{target} voxel metadata {meta_path} has no 'voxel_id' field; fields: "
                         f"{list(meta.dtype.names)}")
    meta = meta.ravel()
    if "n_reps" in meta.dtype.names:
        keep = np.asarray(meta["n_reps"] == N_REPETITIONS)
    elif target == "NH2015":
        raise ValueError(f"{target} voxel metadata {meta_path} has no 'n_reps' field (the study keeps voxels "
                         f"with n_reps == {N_REPETITIONS}); fields: {list(meta.dtype.names)}")
    else:
        keep = np.ones(len(meta), dtype=bool)
    return _structured_to_frame(meta), keep


def _load_voxels(data_dir: str | Path, target: str, stim_ids: list[str]) -> NeuralData:
    folder = _neural_dir(data_dir, target)
    array_path = folder / "voxel_features_array.npy"
    meta_path = folder / "voxel_features_meta.npy"
    roi_path = folder / "df_roi_meta.pkl"
    data = _load_npy(array_path, f"{target} voxel responses", mmap=True)
    if data.ndim != 3:
        raise ValueError(f"{target} voxel responses {array_path} must be 3-D (sounds, voxels, repetitions); "
                         f"got shape {data.shape}")
    if target == "B2021":
        mat_path = folder / "stim_info_v4.mat"
        mat = _load_mat(mat_path, "B2021 stimulus info")
        try:
            names = _matlab_strings(_matlab_field(mat["stim_info"], "stim_names"))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"B2021 stimulus info {mat_path} must hold stim_info.stim_names "
                             f"(a list of sound names): {exc!r}") from None
        names = [_strip_wav(n) for n in names]
        _check_stimulus_lists(names, stim_ids, mat_path, _neural_dir(data_dir, "NH2015") / "neural_stim_meta.npy")
        if data.shape[0] != len(names):
            raise ValueError(f"B2021 voxel responses {array_path} have {data.shape[0]} rows but "
                             f"{mat_path} names {len(names)} sounds")
        data = data[:N_STIMULI]
    elif data.shape[0] != N_STIMULI:
        raise ValueError(f"{target} voxel responses {array_path} have {data.shape[0]} rows; "
                         f"expected {N_STIMULI} (one per sound)")
    table, keep = _voxel_ids(_load_npy(meta_path, f"{target} voxel metadata"), target, meta_path)
    if len(table) != data.shape[1]:
        raise ValueError(f"{target} voxel metadata {meta_path} has {len(table)} records but "
                         f"{array_path} has {data.shape[1]} voxels")
    if data.shape[2] < N_REPETITIONS:
        raise ValueError(f"{target} voxel responses {array_path} have {data.shape[2]} repetitions; "
                         f"expected {N_REPETITIONS}")
    columns = np.flatnonzero(keep)
    Y = np.ascontiguousarray(data[:, columns, :N_REPETITIONS], dtype=np.float64)
    voxel_meta = table.iloc[columns].reset_index(drop=True)
    roi_meta = _load_pickle(roi_path, f"{target} ROI metadata")
    if not isinstance(roi_meta, pd.DataFrame) or "voxel_id" not in roi_meta.columns:
        raise ValueError(f"{target} ROI metadata {roi_path} must be a DataFrame with a 'voxel_id' column")
    kept_ids = voxel_meta["voxel_id"].to_numpy()
    roi_ids = roi_meta["voxel_id"].to_numpy()
    if len(roi_ids) != len(kept_ids) or not np.array_equal(roi_ids.astype(np.int64), kept_ids.astype(np.int64)):
        raise ValueError(f"voxel_id of {target} ROI metadata {roi_path} ({len(roi_ids)} rows) does not match the "
                         f"{len(kept_ids)} kept voxels (n_reps == {N_REPETITIONS}) of {meta_path}, in order")
    roi_meta = roi_meta.reset_index(drop=True)
    for column in ("subj_idx", "roi_label_general"):
        if column not in roi_meta.columns:
            raise ValueError(f"{target} ROI metadata {roi_path} lacks column {column!r}")
    roi_meta["roi_label_general"] = roi_meta["roi_label_general"].where(
        roi_meta["roi_label_general"] != "missing")
    names = [str(v) for v in kept_ids]
    return NeuralData(target, Y, list(stim_ids), names, voxel_meta, roi_meta,
                      source_file=array_path, source_columns=columns)


def _load_components(data_dir: str | Path, stim_ids: list[str]) -> NeuralData:
    path = _neural_dir(data_dir, "NH2015comp") / "components.mat"
    mat = _load_mat(path, "NH2015 components")
    for key in ("R", "stim_names", "component_names"):
        if key not in mat:
            raise ValueError(f"NH2015 components {path} lacks variable {key!r}")
    R = np.asarray(mat["R"], dtype=np.float64)
    try:
        names = [_strip_wav(n) for n in _matlab_strings(mat["stim_names"])]
        component_names = [n.strip() for n in _matlab_strings(mat["component_names"])]
    except ValueError as exc:
        raise ValueError(f"NH2015 components {path}: {exc}") from None
    if R.ndim != 2 or R.shape[0] != N_STIMULI:
        raise ValueError(f"NH2015 components {path}: R must be ({N_STIMULI} sounds x components); got shape {R.shape}")
    if len(names) != R.shape[0]:
        raise ValueError(f"NH2015 components {path}: {len(names)} stim_names for {R.shape[0]} rows of R")
    if len(component_names) != R.shape[1]:
        raise ValueError(f"NH2015 components {path}: {len(component_names)} component_names for "
                         f"{R.shape[1]} columns of R")
    position = {name: i for i, name in enumerate(names)}
    missing = [s for s in stim_ids if s not in position]
    if missing or len(position) != len(names):
        raise ValueError(f"NH2015 components {path}: stim_names must be the {N_STIMULI} NH2015 sounds, "
                         f"each once; missing {missing[:5]}")
    Y = np.ascontiguousarray(R[[position[s] for s in stim_ids]])
    return NeuralData("NH2015comp", Y, list(stim_ids), component_names,
                      source_file=path, source_columns=np.arange(Y.shape[1]))


def load_neural(data_dir: str | Path, target: str, roi: str | None = None) -> NeuralData:
    """Neural responses of ``target`` in the NH2015 stimulus order.

    Parameters
    ----------
    data_dir : str or Path
        Data root holding ``data/`` and ``model_actv/``.
    target : {"NH2015", "B2021", "NH2015comp"}
        NH2015: voxels with 3 repetitions (``n_reps == 3`` kept); B2021: the first 165 of its 192
        sounds (names checked against the NH2015 order); NH2015comp: the 6 components (no repetitions).
    roi : str, optional
        Keep only voxels with this ``roi_label_general`` (``Primary``, ``Anterior``, ``Lateral``,
        ``Posterior``); ``None`` or ``"All"`` keeps all.

    Returns
    -------
    NeuralData

    Raises
    ------
    FileNotFoundError
        A file of the layout is missing.
    ValueError
        A file disagrees with the layout (shapes, stimulus order, voxel ids, empty ROI); the message
        names the file.

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> comps = load_neural(make_demo(tempfile.mkdtemp() + "/demo"), "NH2015comp")
    >>> comps.Y.shape, comps.target_names[0]
    ((165, 6), 'lowfreq')
    """
    if target not in NEURAL_TARGETS:
        raise ValueError(f"unknown neural target {target!r}; expected one of {list(NEURAL_TARGETS)}")
    stim_ids = load_stimuli(data_dir)["stim_id"].tolist()
    if target == "NH2015comp":
        data = _load_components(data_dir, stim_ids)
    else:
        data = _load_voxels(data_dir, target, stim_ids)
    return data.select_roi(roi)


# ---------------------------------------------------------------------------------------------
# model activations
# ---------------------------------------------------------------------------------------------
def activation_paths(data_dir: str | Path, spec: ModelSpec, randnetw: bool,
                     stim_ids: Sequence[str] | None = None) -> list[Path]:
    """Files holding the activations of a model: one ``.h5`` or one pickle per sound.

    Examples
    --------
    >>> from fastenc.registry import load_registry
    >>> activation_paths("root", load_registry()["spectemp"], False)[0].as_posix()
    'root/model_actv/spectemp/natsound_activations.h5'
    """
    folder = Path(data_dir) / "model_actv" / spec.name
    suffix = "_randnetw" if randnetw else ""
    if spec.storage == "h5":
        return [folder / f"natsound_activations{suffix}.h5"]
    if stim_ids is None:
        stim_ids = load_stimuli(data_dir)["stim_id"].tolist()
    return [folder / f"{stim}_activations{suffix}.pkl" for stim in stim_ids]


def _checked_matrix(values, *, expected_rows: int, where: str) -> np.ndarray:
    X = np.asarray(values)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"{where}: activations must be numeric, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{where}: activations must be 2-D (sounds, units); got shape {X.shape}")
    if X.shape[0] != expected_rows:
        raise ValueError(f"{where}: activations have {X.shape[0]} rows; expected {expected_rows} (one per sound)")
    if X.shape[1] == 0:
        raise ValueError(f"{where}: activations have no units")
    X = np.array(X, dtype=np.float64)  # fresh, writable copy owned by the caller
    finite = np.isfinite(X)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(f"{where}: activations contain {int((~finite).sum())} NaN/inf values "
                         f"(rows {bad_rows[:5].tolist()})")
    return X


class ModelActivations:
    """Activations of one model (trained or with permuted weights), layer by layer.

    Build with :func:`open_model`. ``load_layer`` returns a fresh ``(165, units)`` float64 array.
    For ``h5`` storage each call reads one dataset; for ``per_sound_pickle`` storage the first call
    reads every sound's pickle once, assembles all layers and keeps them until :meth:`release`
    (one model in memory, never all models).

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> acts = open_model(make_demo(tempfile.mkdtemp() + "/demo"), "DemoTransformer", randnetw=True)
    >>> acts.layers[0], acts.load_layer(acts.layers[0]).shape[0]
    ('Embedding', 165)
    """

    def __init__(self, data_dir: str | Path, spec: ModelSpec, randnetw: bool = False,
                 stim_ids: Sequence[str] | None = None):
        self.data_dir = Path(data_dir)
        self.spec = spec
        self.randnetw = bool(randnetw)
        if self.randnetw and not spec.has_randnetw:
            raise ValueError(f"model {spec.name!r} has no version with permuted weights (randnetw)")
        self.folder = self.data_dir / "model_actv" / spec.name
        self._label = f"model {spec.name!r}" + (" (randnetw)" if self.randnetw else "")
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no activations for {self._label}: folder {self.folder} does not exist")
        if spec.storage == "per_sound_pickle":
            self.stim_ids = list(load_stimuli(data_dir)["stim_id"] if stim_ids is None else stim_ids)
        else:
            self.stim_ids = None if stim_ids is None else list(stim_ids)
        self.paths = activation_paths(data_dir, spec, self.randnetw, self.stim_ids)
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            shown = ", ".join(str(p) for p in missing[:3])
            raise FileNotFoundError(f"activations of {self._label}: {len(missing)} of {len(self.paths)} "
                                    f"file(s) missing, e.g. {shown}")
        self._assembled: dict[str, np.ndarray] | None = None
        if spec.storage == "h5":
            with self._open_h5():
                pass  # open once now: a truncated or corrupt file fails here, naming the model

    # -- public ------------------------------------------------------------------------------
    @property
    def model(self) -> str:
        """Registry name of the model."""
        return self.spec.name

    @property
    def layers(self) -> list[str]:
        """Layers in processing order (from the registry)."""
        return list(self.spec.layers)

    @property
    def n_stimuli(self) -> int:
        """Rows of every layer matrix."""
        return N_STIMULI if self.stim_ids is None else len(self.stim_ids)

    def load_layer(self, layer: str) -> np.ndarray:
        """Activations of ``layer``: a fresh ``(165, units)`` float64 array in stimulus order."""
        self._check_layer(layer)
        if self.spec.storage == "h5":
            with self._open_h5() as fh:
                return self._read_h5_layer(fh, layer)
        return self._assemble()[layer].copy()

    def iter_layers(self, layers: Iterable[str] | None = None) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(layer, X)`` for ``layers`` (default: all, in order), reading files once."""
        layers = self.layers if layers is None else list(layers)
        for layer in layers:
            self._check_layer(layer)
        if self.spec.storage == "h5":
            with self._open_h5() as fh:
                for layer in layers:
                    yield layer, self._read_h5_layer(fh, layer)
        else:
            assembled = self._assemble()
            for layer in layers:
                yield layer, assembled[layer].copy()

    def release(self) -> None:
        """Drop the assembled per-sound activations (they are re-read on the next request)."""
        self._assembled = None

    def __enter__(self) -> "ModelActivations":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"ModelActivations({self.spec.name!r}, randnetw={self.randnetw}, storage={self.spec.storage!r}, "
                f"{len(self.layers)} layers)")

    # -- internals ---------------------------------------------------------------------------
    def _check_layer(self, layer: str) -> None:
        if layer not in self.spec.layers:
            raise ValueError(f"{self._label} has no layer {layer!r} in the registry; layers: {self.layers}")

    def _open_h5(self) -> h5py.File:
        path = self.paths[0]
        try:
            return h5py.File(path, "r")
        except OSError as exc:
            raise _unreadable(path, "HDF5 activation file", exc, owner=self._label) from None

    def _h5_dataset_names(self, layer: str) -> list[str]:
        """Dataset names to look up for ``layer``: its registry key (an alias such as ResNet50music's
        ``relu1`` for ``conv1_relu1``), then the layer name itself."""
        key = self.spec.key_of(layer)
        return [key] if key == layer else [key, layer]

    def _read_h5_layer(self, fh: h5py.File, layer: str) -> np.ndarray:
        path = self.paths[0]
        candidates = self._h5_dataset_names(layer)
        name = next((n for n in candidates if isinstance(fh.get(n), h5py.Dataset)), None)
        if name is None:
            looked = " or ".join(repr(n) for n in candidates)
            raise ValueError(f"layer {layer!r} of {self._label} not found in {path} (dataset {looked}); "
                             f"datasets in the file: {[k for k in fh.keys() if k != 'layer_list']}")
        shown = f"layer {layer!r}" + (f" (dataset {name!r})" if name != layer else "")
        where = f"{path}, {self._label}, {shown}"
        try:
            values = fh[name][()]
        except (OSError, RuntimeError, KeyError) as exc:
            raise ValueError(f"cannot read {where}: the file is truncated or corrupt "
                             f"({type(exc).__name__}: {exc})") from None
        return _checked_matrix(values, expected_rows=self.n_stimuli, where=where)

    def _assemble(self) -> dict[str, np.ndarray]:
        if self._assembled is not None:
            return self._assembled
        keys = [(layer, self.spec.key_of(layer)) for layer in self.spec.layers]
        matrices: dict[str, np.ndarray] = {}
        first_path = self.paths[0]
        for row, path in enumerate(self.paths):
            try:
                with open(path, "rb") as fh:
                    content = pickle.load(fh)
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
                    TypeError, ValueError, OSError) as exc:
                raise _unreadable(path, "activation pickle", exc, owner=f"{self._label} (sound {row})") from None
            if not isinstance(content, Mapping):
                raise ValueError(f"activation pickle {path} of {self._label} must hold a dict from layer key "
                                 f"to array; got {type(content).__name__}")
            for layer, key in keys:
                where = f"{path}, {self._label}, layer {layer!r}"
                if key not in content:
                    raise ValueError(f"layer {layer!r} (key {key!r}) of {self._label} missing in {path}; "
                                     f"keys present: {list(content)[:10]}")
                vector = np.asarray(content[key])
                if vector.dtype.kind not in "fiub":
                    raise ValueError(f"{where}: activations must be numeric, got dtype {vector.dtype}")
                vector = np.squeeze(vector)
                if vector.ndim != 1:
                    raise ValueError(f"{where}: per-sound activations must be 1-D; got shape {np.shape(content[key])}")
                if not np.isfinite(vector).all():
                    raise ValueError(f"{where}: activations contain {int((~np.isfinite(vector)).sum())} NaN/inf values")
                if row == 0:
                    if vector.size == 0:
                        raise ValueError(f"{where}: activations have no units")
                    matrices[layer] = np.empty((len(self.paths), vector.size), dtype=np.float64)
                elif vector.size != matrices[layer].shape[1]:
                    raise ValueError(f"{where}: {vector.size} units, but {first_path} has "
                                     f"{matrices[layer].shape[1]}; every sound must have the same width")
                matrices[layer][row] = vector
        self._assembled = matrices
        return matrices


def open_model(data_dir: str | Path, model: str, randnetw: bool = False,
               registry: Registry | None = None, stim_ids: Sequence[str] | None = None) -> ModelActivations:
    """Open the activations of ``model`` for layer-by-layer reading.

    Parameters
    ----------
    data_dir : str or Path
        Data root holding ``model_actv/``.
    model : str
        Registry name (e.g. ``"AST"``, ``"spectemp"``).
    randnetw : bool
        The version with permuted weights (``*_randnetw`` files).
    registry : Registry, optional
        Defaults to :func:`~fastenc.registry.load_registry` of ``data_dir`` (picks up its manifest).
    stim_ids : sequence of str, optional
        Sound ids in stimulus order (per-sound pickles); defaults to ``neural_stim_meta.npy``.

    Returns
    -------
    ModelActivations

    Raises
    ------
    ValueError
        Unknown model, or ``randnetw`` for a model without one (``spectemp``), or unreadable files.
    FileNotFoundError
        Activation files missing (the message names them).

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> acts = open_model(make_demo(tempfile.mkdtemp() + "/demo"), "spectemp")
    >>> acts.layers, acts.load_layer("avgpool").dtype
    (['avgpool'], dtype('float64'))
    """
    registry = load_registry(data_dir) if registry is None else registry
    return ModelActivations(data_dir, registry.spec(model), randnetw=randnetw, stim_ids=stim_ids)


def available_models(data_dir: str | Path, registry: Registry | None = None) -> dict[str, dict[str, bool]]:
    """Registry models whose activations are present under ``model_actv/``.

    A version counts as present when all its files exist (the ``.h5`` file, or one pickle per sound).

    Returns
    -------
    dict
        ``{model: {"trained": bool, "randnetw": bool}}`` in registry order, only models with at least
        one version present.

    Examples
    --------
    >>> from fastenc.datasets import make_demo
    >>> import tempfile
    >>> available_models(make_demo(tempfile.mkdtemp() + "/demo"))["spectemp"]
    {'trained': True, 'randnetw': False}
    """
    registry = load_registry(data_dir) if registry is None else registry
    try:
        stim_ids = load_stimuli(data_dir)["stim_id"].tolist()
    except (FileNotFoundError, ValueError):
        stim_ids = None
    present: dict[str, dict[str, bool]] = {}
    for name in registry:
        spec = registry.spec(name)
        if not (Path(data_dir) / "model_actv" / name).is_dir():
            continue
        status = {}
        for version, randnetw in (("trained", False), ("randnetw", True)):
            if randnetw and not spec.has_randnetw:
                status[version] = False
            elif spec.storage == "per_sound_pickle" and stim_ids is None:
                suffix = "_randnetw" if randnetw else ""
                status[version] = any((Path(data_dir) / "model_actv" / name).glob(f"*_activations{suffix}.pkl"))
            else:
                status[version] = all(p.is_file() for p in activation_paths(data_dir, spec, randnetw, stim_ids))
        if any(status.values()):
            present[name] = status
    return present
