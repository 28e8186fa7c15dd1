"""Effective dimensionality of layer activations (docs/method.md §9, METHOD §9).

The study's ``dimensionality_all_models.py`` computes, per layer, the eigenvalues ``λ`` of
``np.cov(A)`` for the (165 sounds × units) activation matrix ``A`` and reports
``ED = (Σλ)² / Σλ²``. Details of its procedure, all reproduced by default:

* ``np.cov(A)`` treats the 165 *rows* as the variables: the matrix is 165 × 165 and each sound's
  row is centred over units (``center_sounds=True``); its normalisation ``1/(units - 1)`` cancels in
  the ratio.
* Before that, the paper's runs (``*_mean_subtract_pca_*`` files, loaded by ``DIM_plot_main.py``)
  centred each unit over the sounds (``StandardScaler(with_std=False)``; ``demean_units=True``); the
  RSA comparison used the z-scored variant (``StandardScaler()``; ``scale_units=True``, population
  std, zero-std units left unscaled). The script's own default (no centring of units) is
  ``demean_units=False``.

Since ``Σλ = tr(G)`` and ``Σλ² = ‖G‖²_F`` for a symmetric ``G``, no eigendecomposition is needed:
fastenc accumulates ``G = B Bᵀ`` (165 × 165) over column blocks of the transformed activations
``B`` in float64, or ``Bᵀ B`` when there are fewer units than sounds (same non-zero spectrum), and
returns ``tr(G)² / ‖G‖²_F``. Activations are used as stored otherwise (float32 is accumulated in
float64), so a layer of any width needs only one block in memory.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["effective_dimensionality", "dimensionality_by_layer", "plot_dimensionality_vs_score"]

_BLOCK = 8192
# a matrix whose squared norm is below this fraction of its norm before the centring of the
# sounds is rounding error (e.g. z-scored copies of one unit): its ED is undefined (NaN)
_ZERO_REL = (64 * np.finfo(np.float64).eps) ** 2


def _transform_block(blk: np.ndarray, demean_units: bool, scale_units: bool) -> np.ndarray:
    b = np.asarray(blk, dtype=np.float64)
    if demean_units or scale_units:
        mu = b.mean(axis=0)
        if demean_units:
            b = b - mu
        if scale_units:
            sd = np.sqrt(((np.asarray(blk, dtype=np.float64) - mu) ** 2).mean(axis=0))
            sd[sd == 0] = 1.0  # sklearn's StandardScaler leaves zero-variance features unscaled
            b = b / sd
    return b


def effective_dimensionality(X, *, demean_units: bool = True, scale_units: bool = False,
                             center_sounds: bool = True, block: int = _BLOCK) -> float:
    """Effective dimensionality ``(Σλ)² / Σλ²`` of the sound covariance of one layer.

    Parameters
    ----------
    X : array, (n_sounds, n_units)
        Activations of one layer (float32 or float64), sounds in rows.
    demean_units : bool
        Centre each unit over the sounds first (the paper's ``mean_subtract`` runs). Default True.
    scale_units : bool
        Also divide each unit by its (population) std over the sounds (the ``std_divide`` runs,
        used with RSA). Default False.
    center_sounds : bool
        Centre each sound's row over units, as ``np.cov(X)`` does. Default True (as the study).
    block : int
        Number of units transformed and accumulated at a time.

    Returns
    -------
    float
        ED, between 1 and ``min(n_sounds, n_units)``; NaN when the transformed matrix is zero or
        only rounding error (e.g. a constant layer, or z-scored units that are all copies of one).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((165, 3)) @ rng.standard_normal((3, 500))   # rank 3
    >>> 1.0 <= effective_dimensionality(X) <= 3.0
    True
    >>> round(effective_dimensionality(np.outer(rng.standard_normal(165), rng.standard_normal(40))), 12)
    1.0
    >>> round(effective_dimensionality(np.eye(165), demean_units=False, center_sounds=False), 6)
    165.0
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (sounds, units); got shape {X.shape}")
    n, p = X.shape
    if n < 2 or p < 1:
        raise ValueError(f"X must have at least 2 sounds and 1 unit; got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"X must be real numbers; got dtype {X.dtype}")
    block = max(int(block), 1)
    starts = range(0, p, block)
    # pass 1: finiteness and the row means of the transformed matrix (needed for np.cov's centring)
    row_sum = np.zeros(n)
    for s in starts:
        blk = X[:, s:s + block]
        if not np.all(np.isfinite(blk)):
            bad = np.argwhere(~np.isfinite(blk))[0]
            raise ValueError(f"X contains NaN or inf (first at sound {bad[0]}, unit {s + bad[1]})")
        if center_sounds:
            row_sum += _transform_block(blk, demean_units, scale_units).sum(axis=1)
    row_mean = row_sum / p
    # pass 2: the smaller Gram matrix
    scale2 = 0.0  # squared norm before the sounds' centring, to recognise a numerically zero matrix
    if p < n:
        B = _transform_block(X, demean_units, scale_units)
        scale2 = float(np.sum(B * B))
        if center_sounds:
            B = B - row_mean[:, None]
        G = B.T @ B
    else:
        G = np.zeros((n, n))
        for s in starts:
            B = _transform_block(X[:, s:s + block], demean_units, scale_units)
            scale2 += float(np.sum(B * B))
            if center_sounds:
                B = B - row_mean[:, None]
            G += B @ B.T
    tr = float(np.trace(G))
    fro2 = float(np.sum(G * G))
    if fro2 == 0.0 or tr <= _ZERO_REL * scale2:
        return float("nan")
    return tr * tr / fro2


def dimensionality_by_layer(source, layers: Sequence[str] | None = None, **kwargs) -> pd.DataFrame:
    """ED of every layer of one model version, loading one layer at a time.

    Parameters
    ----------
    source : object with ``layers`` and ``load_layer(name)``
        e.g. ``fastenc.io.open_model(data_dir, model, randnetw)``.
    layers : sequence of str, optional
        Default ``source.layers``.
    **kwargs
        Passed to :func:`effective_dimensionality`.

    Returns
    -------
    DataFrame
        ``layer, pos`` (1-based), ``rel_pos``, ``n_units``, ``ed``.

    Examples
    --------
    >>> class Src:
    ...     layers = ["a", "b"]
    ...     def load_layer(self, name):
    ...         rng = np.random.default_rng(len(name))
    ...         return rng.standard_normal((165, 1 if name == "a" else 50))
    >>> dimensionality_by_layer(Src())[["layer", "pos", "n_units"]]
      layer  pos  n_units
    0     a    1        1
    1     b    2       50
    """
    names = list(source.layers if layers is None else layers)
    L = len(names)
    rows = []
    for i, name in enumerate(names):
        X = source.load_layer(name)
        rows.append({"layer": name, "pos": i + 1, "rel_pos": i / (L - 1) if L > 1 else 0.0,
                     "n_units": int(np.shape(X)[1]), "ed": effective_dimensionality(X, **kwargs)})
        del X
    return pd.DataFrame(rows, columns=["layer", "pos", "rel_pos", "n_units", "ed"])


def plot_dimensionality_vs_score(table: pd.DataFrame, x: str = "ed", y: str = "score",
                                 model: str = "model", colors: Mapping[str, str] | None = None,
                                 xlabel: str = "Effective dimensionality",
                                 ylabel: str = "Median noise-corrected R²",
                                 title: str | None = None, log_x: bool = False, path=None,
                                 panel: str | None = None):
    """Scatter of layer score against layer ED, one colour per model, R² of the fit in the title.

    As the study's ``layerwise_scatter_dim_neural``: every layer of every model is a point; the
    Pearson r over all points is reported as R² (with r, p and n) under the title.

    Parameters
    ----------
    table : DataFrame
        One row per layer: columns ``x``, ``y`` and ``model`` (rows with NaN in x or y are dropped).
    colors : mapping, optional
        Model -> colour; default a qualitative palette.
    log_x : bool
        Logarithmic ED axis.
    path : str or Path, optional
        Save the figure (:func:`fastenc.figures.save_figure`: ``x.png``, ``x.pdf``, or both for ``x``).
    panel : str, optional
        Column splitting the layers into panels side by side (e.g. trained and permuted
        networks), in order of appearance, on one scale; each panel's heading is its value and
        its own R². ``title`` then heads the figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> t = pd.DataFrame({"model": ["A"] * 3 + ["B"] * 3, "ed": [2.0, 5, 9, 3, 4, 8],
    ...                   "score": [0.2, 0.4, 0.5, 0.3, 0.35, 0.6]})
    >>> fig = plot_dimensionality_vs_score(t)
    >>> fig.axes[0].get_xlabel()
    'Effective dimensionality'
    """
    from matplotlib import colormaps
    from scipy import stats

    from .figures import _grid_figure, _legend_columns, _text_inches, _wrap, save_figure

    missing = [c for c in (x, y, model, panel) if c is not None and c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    df = table.dropna(subset=[x, y])
    models = list(pd.unique(df[model]))
    if colors is None:
        cmap = colormaps["tab20" if len(models) > 10 else "tab10"]
        colors = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
    groups = [(None, df)] if panel is None else list(df.groupby(panel, sort=False))

    def fit(d):
        if len(d) >= 3 and d[x].nunique() > 1 and d[y].nunique() > 1:
            r, pval = stats.pearsonr(d[x].to_numpy(float), d[y].to_numpy(float))
            return f"R² = {r * r:.3f} (r = {r:.3f}, p = {pval:.2g}, n = {len(d)} layers)"
        return None
    # a fixed layout (the layout solver costs about a fifth of this figure): the headings wrapped
    # to the panel's width, the legend to its right
    w, h = 5.4, 4.0
    headings = [[line for t in ((title, fit(d)) if panel is None else (str(name), fit(d))) for line in _wrap(t, w, 10)]
                for name, d in groups]
    top_lines = max(len(hd) for hd in headings)
    ylines, xlines = (len(str(label).split("\n")) for label in (ylabel, xlabel))
    ncol = _legend_columns(len(models), h + 0.2 + 0.2 * xlines, 8)
    legend_w = ncol * (0.45 + _text_inches([str(m) for m in models], 8))
    fig, axes = _grid_figure(1, len(groups), (w, h), left=0.7 + 0.2 * ylines, right=legend_w + 0.2,
                             top=0.15 + 0.2 * top_lines, bottom=0.4 + 0.2 * xlines, wgap=0.35, hgap=0.0,
                             title=title if panel is not None else None, title_size=11, sharex=True, sharey=True)
    for ax, (name, d), heading in zip(axes[0], groups, headings):
        for m in models:
            dm = d[d[model] == m]
            if len(dm):
                ax.scatter(dm[x], dm[y], s=36, color=colors.get(m, "grey"), label=str(m), edgecolors="white",
                           linewidths=0.4)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if heading:
            ax.set_title("\n".join(heading), fontsize=10)
    axes[0, 0].set_ylabel(ylabel)
    handles = {}
    for ax in axes[0]:
        for hd, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, hd)
    box = axes[0, -1].get_position()
    fig.legend(list(handles.values()), list(handles), loc="upper left", fontsize=8, frameon=False, ncol=ncol,
               bbox_to_anchor=(box.x1 + 0.15 / fig.get_figwidth(), box.y1), borderaxespad=0)
    if path is not None:
        save_figure(fig, path)
    return fig
