"""Voxel maps of the preferred layer (the paper's Fig. 6; docs/method.md §5, METHOD §9).

The study (``surface_argmax``, ``create_avg_subject_surface``, ``create_avg_model_surface`` and the
``dump_for_surface_writing*`` functions of its ``plot_utils_AUD.py``) builds the maps in three steps,
reproduced here:

1. **Per voxel** (:func:`voxel_best_layer`): the best layer is the argmax over layers of the median
   over the 10 splits of the noise-corrected r² (``r2_test_c``), clipped at 1 *after* the median.
   Ties are broken as in the study's ``layer_position_argmax``: ``np.random.seed(0)``, then voxel by
   voxel in order a uniform choice among the tied layers (a draw only where two or more layers tie;
   :func:`fastenc.analysis.argmax_random_ties`). ``pos`` is the 1-based layer position,
   ``rel_pos = (pos - 1) / (L - 1)``.
2. **Median subject** (:func:`average_subject_surface`): per flattened-surface coordinate (the
   integer ``x_ras``, ``y_ras`` of a hemisphere, ``coord_id = "x_y"``) the median over the voxels
   found there. Like the study, every voxel at the coordinate counts once (``per_subject="pool"``);
   ``per_subject="median"`` first takes a median within each participant.
3. **Median model** (:func:`average_model_surface`): the median over models of the per-coordinate
   values; it reads one small per-coordinate table per model at a time (DataFrames or CSV paths), so
   the per-voxel arrays of all models are never needed together.

:func:`export_surface_mat` writes the study's ``.mat`` files (``vals``, ``x_ras``, ``y_ras``), one per
participant × hemisphere (``<model>_<subj>_<hemi>.mat``) or per hemisphere for an averaged map
(``<model>_subj-avg_<hemi>.mat``), which the study's ``surface/write_surfs_share.m`` projects onto
fsaverage with FreeSurfer. The ``plot_*`` functions draw the same maps in Python (flat maps over
``x_ras``, ``y_ras``; matplotlib on the Agg canvas, PNG + PDF like :mod:`fastenc.figures`).

Memory: for the whole study, call :func:`voxel_best_layer` and :func:`average_subject_surface` per
model version, write each per-coordinate table (``table.to_csv(path, index=False)``), drop the arrays,
and pass the paths to :func:`average_model_surface`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from .analysis import argmax_random_ties
from .figures import _grid_figure, _rotated_extent, _text_inches, save_figure

__all__ = ["voxel_best_layer", "average_subject_surface", "average_model_surface",
           "study_plot_values", "colour_scale_limit", "study_surface_folder", "export_surface_mat",
           "layer_histogram", "plot_surface_map", "plot_best_r2_map", "plot_layer_histogram",
           "VOXEL_COLUMNS", "COORD_KEYS"]

VOXEL_COLUMNS = ["voxel_id", "subj_idx", "hemi", "x_ras", "y_ras", "pos", "rel_pos",
                 "best_median_r2_test_c", "layer"]
#: columns that identify a flattened-surface coordinate
COORD_KEYS = ["hemi", "coord_id"]
HEMIS = ("lh", "rh")
R2C_LABEL = "Median noise-corrected R²"


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _hemi_text(values) -> np.ndarray:
    """Hemisphere labels as plain str ('lh'/'rh'), whether stored as bytes, np.bytes_ or str."""
    out = []
    for v in np.asarray(values, dtype=object):
        if isinstance(v, (bytes, np.bytes_)):
            v = v.decode("utf-8")
        out.append(str(v).strip())
    return np.asarray(out, dtype=object)


def _int_coords(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has NaN or inf")
    return np.trunc(a).astype(np.int64)  # int() of the study's coord_id


def _subject_label(s) -> str:
    if isinstance(s, (float, np.floating)) and float(s).is_integer():
        return str(int(s))
    return str(s)


def _coord_table(table) -> bool:
    return "shared_by" in table.columns and "subj_idx" not in table.columns


# --------------------------------------------------------------------------------------
# 1. best layer per voxel
# --------------------------------------------------------------------------------------
def voxel_best_layer(values, voxel_meta: pd.DataFrame, layer_names: Sequence[str], *,
                     clip: bool = True, seed: int = 0, nan_policy: str = "raise") -> pd.DataFrame:
    """Best layer per voxel: argmax over layers of the clipped median over splits.

    Parameters
    ----------
    values : array, (n_layers, n_voxels, n_splits) or (n_layers, n_voxels)
        Noise-corrected r² (``r2_test_c``) of one model version, layers in registry order. A 2-D
        array is taken as the per-voxel median already.
    voxel_meta : DataFrame
        One row per voxel, in the order of ``values``: ``voxel_id, subj_idx, hemi, x_ras, y_ras``
        (e.g. ``fastenc.io.load_neural(...).roi_meta``). ``hemi`` may be bytes or str.
    layer_names : sequence of str
        The ``n_layers`` layer names.
    clip : bool
        Clip the median at 1 (after the median), as the study did for r2_test_c.
    seed : int
        Seed of the tie draws (the study's ``np.random.seed(0)``); the global stream is untouched.
    nan_policy : {"raise", "omit"}
        A voxel whose medians contain NaN has no best layer: raise (the study asserts there are
        none), or leave it out of the table.

    Returns
    -------
    DataFrame
        Columns ``voxel_id, subj_idx, hemi, x_ras, y_ras, pos`` (1-based layer position),
        ``rel_pos`` ((pos - 1)/(L - 1); 0 for a single layer), ``best_median_r2_test_c`` (the clipped
        median at the best layer) and ``layer`` (its name); one row per voxel, in order.

    Examples
    --------
    >>> meta = pd.DataFrame({"voxel_id": [10, 11, 12], "subj_idx": [1, 1, 2],
    ...                      "hemi": [b"lh", b"rh", b"lh"], "x_ras": [-40, 42, -40], "y_ras": [-20, -22, -20]})
    >>> r2c = np.array([[[0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [2.0, 2.0, 2.0]],
    ...                 [[0.4, 0.5, 0.6], [0.1, 0.1, 0.1], [1.0, 1.0, 1.0]]])  # (layers, voxels, splits)
    >>> t = voxel_best_layer(r2c, meta, ["conv1", "conv2"])  # voxel 12: a tie at 1 after clipping
    >>> t[["voxel_id", "hemi", "pos", "rel_pos", "best_median_r2_test_c", "layer"]]
       voxel_id hemi  pos  rel_pos  best_median_r2_test_c  layer
    0        10   lh    2      1.0                    0.5  conv2
    1        11   rh    1      0.0                    0.6  conv1
    2        12   lh    1      0.0                    1.0  conv1
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 3:
        med = np.median(arr, axis=2)
    elif arr.ndim == 2:
        med = arr.copy()
    else:
        raise ValueError(f"values must be (n_layers, n_voxels, n_splits) or (n_layers, n_voxels); got shape {arr.shape}")
    if clip:
        med = np.where(med > 1.0, 1.0, med)  # NaN stays NaN
    n_layers, n_vox = med.shape
    names = [str(n) for n in layer_names]
    if len(names) != n_layers:
        raise ValueError(f"{len(names)} layer names for {n_layers} layers")
    if n_layers == 0:
        raise ValueError("values has no layers")
    if len(voxel_meta) != n_vox:
        raise ValueError(f"voxel_meta has {len(voxel_meta)} rows but values has {n_vox} voxels")
    missing = [c for c in ("voxel_id", "subj_idx", "hemi", "x_ras", "y_ras") if c not in voxel_meta.columns]
    if missing:
        raise ValueError(f"voxel_meta lacks column(s) {missing}")
    if nan_policy not in ("raise", "omit"):
        raise ValueError("nan_policy must be 'raise' or 'omit'")
    best = argmax_random_ties(med, seed=seed)
    ok = best >= 0
    if not ok.all() and nan_policy == "raise":
        bad = np.flatnonzero(~ok)
        raise ValueError(f"{bad.size} voxel(s) have NaN medians (first: voxel index {bad[0]}, voxel_id "
                         f"{voxel_meta['voxel_id'].iloc[bad[0]]}); use nan_policy='omit' to leave them out")
    idx = np.flatnonzero(ok)
    b = best[idx]
    pos = b + 1
    rel = (b / (n_layers - 1)) if n_layers > 1 else np.zeros(b.size)
    meta = voxel_meta.iloc[idx]
    return pd.DataFrame({
        "voxel_id": meta["voxel_id"].to_numpy(),
        "subj_idx": meta["subj_idx"].to_numpy(),
        "hemi": _hemi_text(meta["hemi"].to_numpy()),
        "x_ras": meta["x_ras"].to_numpy(),
        "y_ras": meta["y_ras"].to_numpy(),
        "pos": pos.astype(np.int64),
        "rel_pos": rel.astype(np.float64),
        "best_median_r2_test_c": med[b, idx],
        "layer": np.asarray(names, dtype=object)[b],
    })


# --------------------------------------------------------------------------------------
# 2. median over subjects per coordinate
# --------------------------------------------------------------------------------------
def average_subject_surface(table: pd.DataFrame, value: str | Sequence[str] = "rel_pos",
                            per_subject: str = "pool") -> pd.DataFrame:
    """Median over participants per flattened-surface coordinate (the study's median subject).

    Voxels are grouped by hemisphere and integer coordinates (``int(x_ras)``, ``int(y_ras)``).

    Parameters
    ----------
    table : DataFrame
        Per-voxel table with ``subj_idx, hemi, x_ras, y_ras`` and ``value`` (e.g. the output of
        :func:`voxel_best_layer`).
    value : str or sequence of str
        Column(s) to average (``"rel_pos"``, ``"pos"``, ``"best_median_r2_test_c"``, ...).
    per_subject : {"pool", "median"}
        ``"pool"`` (the study's ``create_avg_subject_surface``): the median over all voxels at the
        coordinate, so a participant with two voxels there counts twice. ``"median"``: first the
        median of each participant's voxels there, then the median over participants.

    Returns
    -------
    DataFrame
        One row per coordinate, in order of first appearance: ``hemi, coord_id`` (``"x_y"``),
        ``x_ras, y_ras`` (int), ``shared_by`` (participants with a voxel there), ``n_voxels`` and
        ``value`` (the median; a column per value when several are given).

    Notes
    -----
    The study grouped by ``coord_id`` alone and asserted that each coordinate lies in one
    hemisphere (true of its data, whose left-hemisphere ``x_ras`` are negative); here the
    hemisphere is part of the key. Its ``shared_by`` (precomputed in ``df_roi_meta.pkl``) counts
    voxels; ``n_voxels`` is that count, ``shared_by`` counts distinct participants (the two agree
    where no participant has two voxels at one coordinate).

    Examples
    --------
    >>> t = pd.DataFrame({"subj_idx": [1, 2, 3, 1], "hemi": ["lh", "lh", "lh", "rh"],
    ...                   "x_ras": [-40, -40, -40, 42], "y_ras": [-20, -20, -20, -22],
    ...                   "rel_pos": [0.0, 0.5, 1.0, 0.25]})
    >>> average_subject_surface(t)
      hemi coord_id  x_ras  y_ras  shared_by  n_voxels  rel_pos
    0   lh  -40_-20    -40    -20          3         3     0.50
    1   rh   42_-22     42    -22          1         1     0.25
    """
    values = [value] if isinstance(value, str) else list(value)
    missing = [c for c in ("subj_idx", "hemi", "x_ras", "y_ras", *values) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    if per_subject not in ("pool", "median"):
        raise ValueError("per_subject must be 'pool' or 'median'")
    x = _int_coords(table["x_ras"], "x_ras")
    y = _int_coords(table["y_ras"], "y_ras")
    vs = [f"_v{i}" for i in range(len(values))]
    df = pd.DataFrame({"hemi": _hemi_text(table["hemi"].to_numpy()),
                       "coord_id": [f"{a}_{b}" for a, b in zip(x, y)],
                       "x_ras": x, "y_ras": y,
                       "subj_idx": table["subj_idx"].to_numpy(),
                       **{v: pd.to_numeric(table[c]).to_numpy(dtype=np.float64) for v, c in zip(vs, values)}})
    keys = ["hemi", "coord_id"]
    g = df.groupby(keys, sort=False)
    out = g[["x_ras", "y_ras"]].first()
    out["shared_by"] = g["subj_idx"].nunique()
    out["n_voxels"] = g.size()
    if per_subject == "pool":
        med = g[vs].median()
    else:
        per = df.groupby(keys + ["subj_idx"], sort=False)[vs].median().reset_index()
        med = per.groupby(keys, sort=False)[vs].median()
    for v, c in zip(vs, values):
        out[c] = med[v]
    out = out.reset_index()
    return out[["hemi", "coord_id", "x_ras", "y_ras", "shared_by", "n_voxels", *values]]


# --------------------------------------------------------------------------------------
# 3. median over models
# --------------------------------------------------------------------------------------
def average_model_surface(tables: Iterable, value: str | Sequence[str] = "rel_pos",
                          models: Sequence[str] | None = None) -> pd.DataFrame:
    """Median over models of per-coordinate values (the study's ``create_avg_model_surface``).

    Parameters
    ----------
    tables : iterable of DataFrame or path
        Per-coordinate tables of :func:`average_subject_surface`, one per model (same dataset);
        a path is read with ``pandas.read_csv``. They are consumed one at a time; only their
        ``value`` columns are kept.
    value : str or sequence of str
        The column(s) to take the median of (``"rel_pos"`` in the study: layer counts differ
        between models).
    models : sequence of str, optional
        Names of the models, in the order of ``tables``, recorded in the ``models`` attribute
        (``out.attrs["models"]``).

    Returns
    -------
    DataFrame
        The coordinates of the first table (``hemi, coord_id, x_ras, y_ras, shared_by``, and
        ``n_voxels`` when present), ``n_models``, and ``value``: the median over models (NaN
        values skipped, as pandas' median did in the study).

    Raises
    ------
    ValueError
        No tables, or tables whose coordinate sets differ (the study asserted identical ones).

    Notes
    -----
    The study then drew ``median * 10 + 1`` (optionally rounded); see :func:`study_plot_values`.

    Examples
    --------
    >>> t = pd.DataFrame({"subj_idx": [1, 2], "hemi": ["lh", "rh"], "x_ras": [-40, 42],
    ...                   "y_ras": [-20, -22], "rel_pos": [0.0, 1.0]})
    >>> a = average_subject_surface(t)
    >>> b = a.assign(rel_pos=[0.5, 0.5]); c = a.assign(rel_pos=[1.0, 0.0])
    >>> average_model_surface([a, b, c], models=["m1", "m2", "m3"])[["hemi", "coord_id", "n_models", "rel_pos"]]
      hemi coord_id  n_models  rel_pos
    0   lh  -40_-20         3      0.5
    1   rh   42_-22         3      0.5
    """
    values = [value] if isinstance(value, str) else list(value)
    template = None
    cols = {v: [] for v in values}
    for i, t in enumerate(tables):
        if not isinstance(t, pd.DataFrame):
            t = pd.read_csv(t, dtype={"coord_id": str, "hemi": str})
        missing = [c for c in ("hemi", "coord_id", *values) if c not in t.columns]
        if missing:
            raise ValueError(f"table {i} lacks column(s) {missing}")
        key = pd.MultiIndex.from_arrays([_hemi_text(t["hemi"].to_numpy()), t["coord_id"].astype(str).to_numpy()],
                                        names=COORD_KEYS)
        if not key.is_unique:
            raise ValueError(f"table {i} has repeated coordinates (pass per-coordinate tables of average_subject_surface)")
        if template is None:
            keep = [c for c in ("hemi", "coord_id", "x_ras", "y_ras", "shared_by", "n_voxels") if c in t.columns]
            template = t[keep].copy().reset_index(drop=True)
            template["hemi"] = _hemi_text(template["hemi"].to_numpy())
            template["coord_id"] = template["coord_id"].astype(str)
            tkey = key
        elif len(key) != len(tkey) or not key.sort_values().equals(tkey.sort_values()):
            raise ValueError(f"table {i} has other coordinates than table 0 "
                             f"({len(key)} vs {len(tkey)}): all models must come from the same dataset")
        for v in values:
            col = pd.Series(pd.to_numeric(t[v]).to_numpy(dtype=np.float64), index=key)
            cols[v].append(col.reindex(tkey).to_numpy())
    if template is None:
        raise ValueError("no tables given")
    out = template
    n = len(cols[values[0]])
    out["n_models"] = n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN coordinate -> NaN
        for v in values:
            out[v] = np.nanmedian(np.column_stack(cols[v]), axis=1)
    if models is not None:
        models = [str(m) for m in models]
        if len(models) != n:
            raise ValueError(f"{len(models)} model names for {n} tables")
        out.attrs["models"] = models
    return out


def study_plot_values(values, quantize: bool = False) -> np.ndarray:
    """The study's values for the median-model surface: ``median * 10 + 1``, optionally rounded.

    (``create_avg_model_surface``: the +1 keeps the first layer off 0 for the KNN interpolation of
    its MATLAB script; ``quantize`` rounds half to even, as Python's ``round``.)

    >>> study_plot_values([0.0, 0.25, 1.0], quantize=True)
    array([ 1.,  4., 11.])
    """
    v = np.asarray(values, dtype=np.float64) * 10 + 1
    return np.round(v) if quantize else v


def colour_scale_limit(tables: Iterable[pd.DataFrame], n_layers: int) -> dict:
    """Upper end of the study's layer colour scale (``determine_surf_layer_colorscale``).

    Pools the per-voxel tables (the study pooled NH2015 and B2021), takes the most preferred layer
    position (first on ties, as ``idxmax``) and the one after it (capped at ``n_layers``; the study
    left it undefined there).

    >>> t = pd.DataFrame({"pos": [1, 2, 2, 3]})
    >>> colour_scale_limit([t], n_layers=4)
    {'argmax_pos': 2, 'argmax_pos_plus1': 3, 'argmax_rel_pos': 0.3333333333333333, 'argmax_rel_pos_plus1': 0.6666666666666666}
    """
    counts = np.zeros(n_layers, dtype=np.int64)
    for t in tables:
        p = np.asarray(t["pos"], dtype=np.int64)
        counts += np.bincount(p - 1, minlength=n_layers)[:n_layers]
    a = int(np.argmax(counts)) + 1
    a1 = min(a + 1, n_layers)
    den = max(n_layers - 1, 1)
    return {"argmax_pos": a, "argmax_pos_plus1": a1,
            "argmax_rel_pos": (a - 1) / den, "argmax_rel_pos_plus1": (a1 - 1) / den}


# --------------------------------------------------------------------------------------
# .mat export
# --------------------------------------------------------------------------------------
def study_surface_folder(model: str, target: str, value: str = "pos", randnetw: bool = False,
                         kind: str = "subj-argmax", metric: str = "median_r2_test_c") -> Path:
    """The study's folder (below its SURFDIR) for one map's ``.mat`` files.

    ``kind``: ``"subj-argmax"`` (per participant), ``"subj-median-argmax"`` (median subject), or
    ``"subj-median-argmax-model-median"`` (median over models; the study's model name there is
    ``all-good-models`` and its value ``rel_pos*10+1``).

    >>> study_surface_folder("AST", "NH2015", "pos").as_posix()
    'AST/TYPE=subj-argmax_METRIC=median_r2_test_c_PLOTVAL=pos_NH2015'
    >>> study_surface_folder("all-good-models", "NH2015", "rel_pos*10+1", True,
    ...                      kind="subj-median-argmax-model-median").as_posix()
    'all-good-models_randnetw/TYPE=subj-median-argmax-model-median_METRIC=median_r2_test_c_PLOTVAL=rel_pos*10+1_NH2015'
    """
    kinds = ("subj-argmax", "subj-median-argmax", "subj-median-argmax-model-median")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}")
    return Path(f"{model}{'_randnetw' if randnetw else ''}") / f"TYPE={kind}_METRIC={metric}_PLOTVAL={value}_{target}"


def export_surface_mat(table: pd.DataFrame, folder, value: str = "pos", model: str = "model",
                       int_values: bool | None = None) -> list[Path]:
    """Write the study's ``.mat`` files of one map (fields ``vals``, ``x_ras``, ``y_ras``).

    Parameters
    ----------
    table : DataFrame
        A per-voxel table (with ``subj_idx``; :func:`voxel_best_layer`): one file per participant
        × hemisphere, ``<model>_<subj_idx>_<hemi>.mat`` (the study's ``dump_for_surface_writing``).
        Or a per-coordinate table (with ``shared_by`` and no ``subj_idx``;
        :func:`average_subject_surface`, :func:`average_model_surface`): one file per hemisphere,
        ``<model>_subj-avg_<hemi>.mat`` (``dump_for_surface_writing_avg``).
    folder : str or Path
        Created if needed (see :func:`study_surface_folder` for the study's layout).
    value : str
        Column written as ``vals``.
    model : str
        First part of the file names.
    int_values : bool, optional
        Cast ``vals`` to int64 (truncation). Default as the study: no cast per participant, a cast
        for averaged tables (so pass ``pos`` or :func:`study_plot_values` for those).

    Returns
    -------
    list of Path
        The files written. ``x_ras``/``y_ras`` are int64; all are 1-D (``loadmat`` reads them as
        1 × n rows). Hemisphere names are written as text (``lh``/``rh``), as the study's MATLAB
        script reads them from the last two characters of the name.

    Examples
    --------
    >>> import tempfile, scipy.io
    >>> t = pd.DataFrame({"voxel_id": [0, 1], "subj_idx": [1, 1], "hemi": [b"lh", b"lh"],
    ...                   "x_ras": [-40.0, -38.0], "y_ras": [-20.0, -20.0], "pos": [2, 3]})
    >>> [p.name for p in export_surface_mat(t, tempfile.mkdtemp(), model="AST")]
    ['AST_1_lh.mat']
    """
    if value not in table.columns:
        raise ValueError(f"table lacks column {value!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    import scipy.io
    hemi = _hemi_text(table["hemi"].to_numpy())
    x = _int_coords(table["x_ras"], "x_ras")
    y = _int_coords(table["y_ras"], "y_ras")
    vals = table[value].to_numpy()
    written = []
    if "subj_idx" in table.columns:
        cast = bool(int_values) if int_values is not None else False
        subj = table["subj_idx"].to_numpy()
        groups = [(s, h) for s in pd.unique(subj) for h in HEMIS + tuple(sorted(set(hemi) - set(HEMIS)))]
        for s, h in groups:
            m = (subj == s) & (hemi == h)
            if not m.any():
                continue
            written.append((folder / f"{model}_{_subject_label(s)}_{h}.mat", m))
    elif _coord_table(table):
        cast = bool(int_values) if int_values is not None else True
        for h in HEMIS + tuple(sorted(set(hemi) - set(HEMIS))):
            m = hemi == h
            if m.any():
                written.append((folder / f"{model}_subj-avg_{h}.mat", m))
    else:
        raise ValueError("table must be per voxel (with subj_idx) or per coordinate (with shared_by)")
    out = []
    for path, m in written:
        v = vals[m]
        v = np.trunc(np.asarray(v, dtype=np.float64)).astype(np.int64) if cast else np.asarray(v)
        scipy.io.savemat(path, {"vals": v, "x_ras": x[m], "y_ras": y[m]})
        out.append(path)
    return out


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------
def layer_histogram(table: pd.DataFrame, n_layers: int) -> np.ndarray:
    """Voxel count per layer position (1 … n_layers) of a per-voxel table.

    >>> layer_histogram(pd.DataFrame({"pos": [1, 3, 3]}), 4)
    array([1, 0, 2, 0])
    """
    p = np.asarray(table["pos"], dtype=np.int64)
    if p.size and (p.min() < 1 or p.max() > n_layers):
        raise ValueError(f"pos outside 1..{n_layers}")
    return np.bincount(p - 1, minlength=n_layers)


def _layer_colours(n: int):
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


#: Length of the scale bar of the flat maps, mm of flattened surface.
SCALE_BAR_MM = 10


def _scale_bar(ax, x0: float, y0: float, width: float, height: float, mm: float = SCALE_BAR_MM) -> None:
    """A bar of ``mm`` (data units: mm of flattened surface) in the lower left corner of the field
    at ``x0, y0`` of ``width`` x ``height``."""
    xa, ya = x0 + 0.05 * width, y0 + 0.05 * height
    ax.plot([xa, xa + mm], [ya, ya], color="black", lw=2, solid_capstyle="butt", zorder=4)
    ax.text(xa + mm / 2, ya + 0.02 * height, f"{mm:g} mm", ha="center", va="bottom", fontsize=7, zorder=4)


#: Flat maps: room around a hemisphere's voxels within its field, and between the fields (mm).
FIELD_PAD_MM, FIELD_GAP_MM = 3.0, 8.0
HEMI_NAMES = {"lh": "Left hemisphere", "rh": "Right hemisphere"}


def _hemisphere_fields(hemi, x, y, hemis):
    """Each hemisphere's voxels moved into its own field, the fields side by side from x = 0 (in
    the order of ``hemis``), bottoms at y = 0: ``(x, y, order, fields)`` with ``order`` the rows
    of the input drawn, and ``fields`` ``(hemi, x0, width, height, has_voxels)``."""
    xs, ys, order, fields = [], [], [], []
    cursor = 0.0
    sizes = []
    for h in hemis:
        m = np.flatnonzero(hemi == h)
        if len(m):
            x0, y0 = x[m].min() - FIELD_PAD_MM, y[m].min() - FIELD_PAD_MM
            w, ht = x[m].max() + FIELD_PAD_MM - x0, y[m].max() + FIELD_PAD_MM - y0
            xs.append(x[m] - x0 + cursor)
            ys.append(y[m] - y0)
            order.append(m)
            sizes.append((w, ht))
        else:
            w, ht = (np.median([a for a, _ in sizes]), np.median([b for _, b in sizes])) if sizes else (40.0, 40.0)
        fields.append((h, cursor, float(w), float(ht), bool(len(m))))
        cursor += w + FIELD_GAP_MM
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0))
    return cat(xs), cat(ys), (np.concatenate(order) if order else np.zeros(0, dtype=np.int64)), fields


class MapScale(NamedTuple):
    """The colour scale of a flat map (:func:`_map_scale`): ``values`` as drawn, the key's
    ``label``, and its ``ticks`` and ``tick_labels`` (None: chosen from the range)."""
    cmap: object
    norm: object
    values: np.ndarray
    label: str
    ticks: np.ndarray | None
    tick_labels: list | None


def _map_scale(value: str, v: np.ndarray, layer_names, vmin, vmax, label) -> MapScale:
    """The colour scale of :func:`plot_surface_map` for ``value`` (see there)."""
    from matplotlib import colormaps
    from matplotlib import colors as mcolors
    if value == "pos":
        if layer_names is None:
            raise ValueError("value='pos' needs layer_names")
        n = len(layer_names)
        top = n if vmax is None else int(vmax)
        names = [str(layer_names[i - 1]) for i in range(1, top + 1)]
        if vmax is not None and top < n:
            names[-1] = f"≥ {names[-1]}"
        # a median between two layers: the lower, as the study's int64 .mat
        return MapScale(mcolors.ListedColormap(_layer_colours(top)), mcolors.BoundaryNorm(np.arange(0.5, top + 1.5), top),
                        np.minimum(np.trunc(v), top), label or "Preferred layer", np.arange(1, top + 1), names)
    if value == "rel_pos":
        norm = mcolors.Normalize(0.0 if vmin is None else vmin, 1.0 if vmax is None else vmax)
        return MapScale(colormaps["viridis"], norm, v,
                        label or "Preferred layer, relative position\n(0 = first, 1 = last)", None, None)
    finite = v[np.isfinite(v)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if label is None:
        label = R2C_LABEL + " at the best layer" if value == "best_median_r2_test_c" else value
    return MapScale(colormaps["inferno"], mcolors.Normalize(lo, hi if hi > lo else lo + 1e-9), v, label, None, None)


#: Size of a colour key (:func:`colour_key`), inches: gap to the maps, bar width; font sizes of
#: its tick labels and its label.
KEY_PAD_IN, KEY_WIDTH_IN, KEY_TICK_SIZE, KEY_LABEL_SIZE = 0.12, 0.16, 8, 10


def colour_key_width(scale: MapScale) -> float:
    """About the width in inches that :func:`colour_key` takes right of the maps."""
    labels = scale.tick_labels if scale.tick_labels is not None else ["0.00"]
    lines = scale.label.count("\n") + 1
    return (KEY_PAD_IN + KEY_WIDTH_IN + 0.1 + _text_inches(labels, KEY_TICK_SIZE) + 0.08
            + lines * KEY_LABEL_SIZE * 1.3 / 72)


def colour_key(fig, axes, scale: MapScale, shrink: float = 0.85):
    """A colour bar for the maps in ``axes``: the colours of ``scale`` from bottom to top, ticks
    and their labels, the scale's label beside them; right of the maps as they are drawn (equal
    aspect), ``shrink`` times their height. Returns the key's Axes.

    A plain Axes with its axis objects hidden, an image and texts: a tenth of the work of
    ``Figure.colorbar`` (its axis, locators and tick objects), which a page of maps has one of
    per row. Discrete scales (``pos``) label every layer, or every k-th one (and the last) where
    the labels would overlap."""
    from matplotlib.transforms import offset_copy
    boxes = []
    for ax in axes:
        ax.apply_aspect()  # the box an equal-aspect map is drawn in
        boxes.append(ax.get_position())
    x1 = max(b.x1 for b in boxes)
    y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    w_in, h_in = fig.get_size_inches()
    h = shrink * (y1 - y0)
    kax = fig.add_axes((x1 + KEY_PAD_IN / w_in, y0 + (y1 - y0 - h) / 2, KEY_WIDTH_IN / w_in, h))
    kax.xaxis.set_visible(False)
    kax.yaxis.set_visible(False)
    lo, hi = float(scale.norm.vmin), float(scale.norm.vmax)
    if scale.ticks is not None:  # discrete: one cell per layer
        top = len(scale.ticks)
        cells, lo, hi = np.arange(1, top + 1, dtype=np.float64)[:, None], 0.5, top + 0.5
        step = max(1, int(np.ceil(top * KEY_TICK_SIZE * 1.35 / 72 / (h * h_in))))
        keep = [i for i in range(top) if i % step == 0 or i == top - 1]
        if len(keep) > 1 and keep[-1] - keep[-2] < step:  # the last label too close to the one before
            del keep[-2]
        ticks = [float(scale.ticks[i]) for i in keep]
        labels = [str(scale.tick_labels[i]) for i in keep]
    else:
        from matplotlib.ticker import MaxNLocator
        cells = np.linspace(lo, hi, 256)[:, None]
        ticks = [float(t) for t in MaxNLocator(nbins=5).tick_values(lo, hi) if lo - 1e-9 <= t <= hi + 1e-9]
        decimals = max((len(f"{t:g}".partition(".")[2]) for t in ticks), default=0)
        labels = [f"{t:.{decimals}f}" for t in ticks]  # as an axis labels them: 0.0, 0.5, 1.0
    kax.imshow(cells, cmap=scale.cmap, norm=scale.norm, origin="lower", aspect="auto", interpolation="nearest",
               extent=(0.0, 1.0, lo, hi))
    kax.set_xlim(0.0, 1.0)
    kax.set_ylim(lo, hi)
    for spine in kax.spines.values():
        spine.set_linewidth(0.8)
    side = kax.get_yaxis_transform()  # x: the key's width (0 to 1), y: the scale's values
    xs = np.tile([1.0, 1.35, np.nan], len(ticks))
    ys = np.repeat(ticks, 3)
    kax.plot(xs, ys, color="black", lw=0.8, transform=side, clip_on=False)
    at = offset_copy(side, fig=fig, x=3.5, units="points")
    for t, lab in zip(ticks, labels):
        kax.text(1.35, t, lab, transform=at, ha="left", va="center", fontsize=KEY_TICK_SIZE)
    label_x = 1.35 * KEY_WIDTH_IN * 72 + 3.5 + _text_inches(labels, KEY_TICK_SIZE) * 72 + 4
    kax.text(0.0, 0.5, scale.label, transform=offset_copy(kax.transAxes, fig=fig, x=label_x, units="points"),
             rotation=90, ha="left", va="center", fontsize=KEY_LABEL_SIZE)
    return kax


def plot_surface_map(table: pd.DataFrame, value: str = "pos", layer_names: Sequence[str] | None = None,
                     hemis: Sequence[str] = HEMIS, title: str | None = None, vmin=None, vmax=None,
                     cbar_label: str | None = None, marker_size: float | None = None, path=None,
                     ax=None, colorbar: bool = True):
    """Flat map of one value over ``x_ras``, ``y_ras``, drawn as the study's flat maps: the
    hemispheres side by side in one panel, each in its own grey field named under it, on one
    scale (a 10 mm scale bar, :data:`SCALE_BAR_MM`; no axes), with a colour key.

    Parameters
    ----------
    table : DataFrame
        Per-coordinate (:func:`average_subject_surface`, :func:`average_model_surface`) or per-voxel
        table (one participant's rows; several participants' voxels would overlap).
    value : str
        ``"pos"``: discrete colours, one per layer (``layer_names`` label the key; a median
        half-way between two layers is drawn as the lower one, as the study's int64 ``.mat`` files
        hold it); ``"rel_pos"``: a sequential map from 0 (first layer) to 1 (last); anything else
        (e.g. ``best_median_r2_test_c``): a sequential map, limits ``vmin``/``vmax`` (default the
        data range).
    layer_names : sequence of str, optional
        Needed for ``value="pos"`` (their number fixes the colour scale).
    hemis : sequence of str
        Fields, left to right (each hemisphere's coordinates are moved into its field).
    vmax : float, optional
        For ``pos``: the last layer position with its own colour (the study capped the scale at the
        layer after the most preferred one; :func:`colour_scale_limit`); deeper layers share it.
    marker_size : float, optional
        Marker area in points² (default: one square per mm of surface, the integer coordinates'
        grid).
    path : str or Path, optional
        Save the figure (:func:`fastenc.figures.save_figure`: ``x.png``, ``x.pdf``, or both for ``x``).
    ax : matplotlib Axes, optional
        Draw into this (e.g. a row of a larger figure, on a fixed layout: the key is placed beside
        the map as drawn) instead of a new figure; ``title`` then heads the panel.
    colorbar : bool
        Draw the colour key (:func:`colour_key`; False: e.g. rows of a page that share one key).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> t = pd.DataFrame({"hemi": ["lh", "rh"], "coord_id": ["-40_-20", "42_-22"], "x_ras": [-40, 42],
    ...                   "y_ras": [-20, -22], "shared_by": [3, 1], "pos": [1.0, 2.0]})
    >>> fig = plot_surface_map(t, "pos", layer_names=["conv1", "conv2", "conv3"])
    >>> len(fig.axes)   # the map and its colour key
    2
    """
    from matplotlib.patches import Rectangle

    hemi = _hemi_text(table["hemi"].to_numpy())
    scale = _map_scale(value, pd.to_numeric(table[value]).to_numpy(dtype=np.float64), layer_names, vmin, vmax,
                       cbar_label)
    x, y, order, fields = _hemisphere_fields(hemi, np.asarray(table["x_ras"], dtype=np.float64),
                                             np.asarray(table["y_ras"], dtype=np.float64), list(hemis))
    own = ax is None
    if own:
        fig, axes = _grid_figure(1, 1, (7.2, 3.0), left=0.2, right=(colour_key_width(scale) if colorbar else 0) + 0.1,
                                 top=0.3, bottom=0.35, wgap=0, hgap=0, title=title, title_size=12)
        ax = axes[0, 0]
    else:
        fig = ax.get_figure()
        if title:
            ax.set_title(title, fontsize=10, pad=4)
    width = max((f[1] + f[2] for f in fields), default=1.0)
    height = max((f[3] for f in fields), default=1.0)
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(-0.5, height + 0.5)
    ax.set_aspect("equal", adjustable="box")
    # as the study's flat maps: no axes (hidden axis objects are not even laid out)
    ax.xaxis.set_visible(False)
    ax.yaxis.set_visible(False)
    ax.set_frame_on(False)
    for h, x0, w, ht, has in fields:
        ax.add_patch(Rectangle((x0, 0.0), w, ht, facecolor="#f2f2f2", edgecolor="black", lw=0.8, zorder=0))
        ax.text(x0 + w / 2, -1.0, HEMI_NAMES.get(h, h), ha="center", va="top", fontsize=9)
        if not has:
            ax.text(x0 + w / 2, ht / 2, "no voxels", ha="center", va="center", fontsize=9)
    if len(order):
        ax.apply_aspect()  # the map's size on the page: one square per mm of surface
        mm_pt = ax.get_position().width * fig.get_figwidth() * 72 / (width + 1.0)
        ms = marker_size if marker_size is not None else max(1.0, mm_pt ** 2)
        ax.scatter(x, y, c=scale.values[order], cmap=scale.cmap, norm=scale.norm, s=ms, marker="s",
                   linewidths=0, zorder=2)
        first = next(f for f in fields if f[4])
        _scale_bar(ax, first[1], 0.0, first[2], first[3])
    if colorbar:
        colour_key(fig, [ax], scale)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_best_r2_map(table: pd.DataFrame, hemis: Sequence[str] = HEMIS, title: str | None = None,
                     vmin: float = 0.0, vmax: float = 1.0, path=None, ax=None, cbar_label: str | None = None,
                     colorbar: bool = True):
    """Flat map of the clipped median noise-corrected r² at each voxel's best layer.

    ``table`` needs ``best_median_r2_test_c`` (per voxel, or per coordinate after
    :func:`average_subject_surface` with ``value="best_median_r2_test_c"``).

    >>> t = pd.DataFrame({"hemi": ["lh"], "x_ras": [-40], "y_ras": [-20], "best_median_r2_test_c": [0.4]})
    >>> len(plot_best_r2_map(t).axes)
    2
    """
    return plot_surface_map(table, "best_median_r2_test_c", hemis=hemis, title=title, vmin=vmin,
                            vmax=vmax, path=path, ax=ax, cbar_label=cbar_label, colorbar=colorbar)


def plot_layer_histogram(tables, layer_names, title: str | None = None, ncols: int = 3, path=None,
                         permuted=None):
    """Preferred-layer histogram (voxel count per layer), one panel per model; with ``permuted``,
    the model's permuted network beside it in each panel (grey bars), so that the two can be
    compared layer by layer.

    Parameters
    ----------
    tables : DataFrame or mapping of model name -> DataFrame
        Per-voxel tables (:func:`voxel_best_layer`; only ``pos`` is read). A histogram table
        (``pos`` counts) is small, so for many models pass one table at a time or
        ``{model: table[["pos"]]}``.
    layer_names : sequence of str, or mapping of model name -> sequence of str
        Tick labels (layers in order).
    permuted : mapping of model name -> DataFrame, optional
        The permuted networks' per-voxel tables (a model may be in either mapping or both).
    path : str or Path, optional
        Save the figure (:func:`fastenc.figures.save_figure`: ``x.png``, ``x.pdf``, or both for ``x``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_layer_histogram({"A": pd.DataFrame({"pos": [1, 2, 2]})}, ["conv1", "conv2"])
    >>> fig.axes[0].get_ylabel()
    'Voxel count'
    """
    if isinstance(tables, pd.DataFrame):
        tables = {"": tables}
    permuted = dict(permuted or {})
    models = list(dict.fromkeys([*tables, *permuted]))
    n = len(models)
    nc = min(ncols, n)
    nr = int(np.ceil(n / nc))
    if isinstance(layer_names, Mapping) and any(m not in layer_names for m in models):
        raise ValueError(f"no layer names for {[m for m in models if m not in layer_names]}")
    names_of = {model: list(layer_names[model] if isinstance(layer_names, Mapping) else layer_names)
                for model in models}
    counts_of = {model: layer_histogram(tables[model], len(names_of[model])) for model in tables}
    perm_of = {model: layer_histogram(permuted[model], len(names_of[model])) for model in permuted}

    def panel_title(model):
        c = counts_of[model] if model in counts_of else perm_of[model]
        return f"{model} (n = {int(c.sum())} voxels)" if model else f"n = {int(c.sum())} voxels"
    titles = {model: panel_title(model) for model in models}
    # a fixed grid (matplotlib's layout solver costs a third of such a figure): room for the
    # rotated layer names under each panel, and for the first one's overhang to its left
    w, h = max(3.3, _text_inches(titles.values(), 10) + 0.1), 2.4
    lab_w, lab_h = _rotated_extent([n for v in names_of.values() for n in v], 8)
    fewest = min(len(v) for v in names_of.values())
    overhang = lab_w - w * 0.6 / (fewest + 0.2)  # left of the first tick, which sits 0.6 in from the edge
    side = max(0.85, overhang + 0.15)
    under = 0.12 + lab_h + 0.35               # ticks, names, the axis label
    fig, axes = _grid_figure(nr, nc, (w, h), left=side, right=0.2, top=0.35, bottom=under, wgap=side,
                             hgap=under + 0.35, title=title, title_size=12)
    axes = axes.ravel()
    for k, (ax, model) in enumerate(zip(axes, models)):
        names = names_of[model]
        L = len(names)
        pos = np.arange(1, L + 1)
        both = model in counts_of and model in perm_of
        bw = 0.42 if both else 0.85
        if model in counts_of:
            ax.bar(pos - (bw / 2 if both else 0), counts_of[model], color=_layer_colours(L), width=bw,
                   label="trained")
        if model in perm_of:
            ax.bar(pos + (bw / 2 if both else 0), perm_of[model], color="#cbd5e0", edgecolor="#4a5568",
                   linewidth=0.6, width=bw, label="permuted")
        if both and k == 0:
            ax.legend(fontsize=7.5, frameon=False, loc="best", handlelength=1.0)
        ax.set_xticks(pos)
        ax.set_xticklabels([str(s) for s in names], rotation=60, ha="right", fontsize=8)
        ax.set_xlim(0.4, L + 0.6)
        ax.set_xlabel("Preferred layer")
        ax.set_ylabel("Voxel count")
        ax.locator_params(axis="y", nbins=5)
        ax.set_title(titles[model], fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[n:]:
        ax.set_visible(False)
    if path is not None:
        save_figure(fig, path)
    return fig
