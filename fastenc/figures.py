"""Figures of the analysis stage (METHOD §5), matplotlib, no pyplot.

Each function builds a :class:`matplotlib.figure.Figure` on the Agg canvas (no global pyplot
state, no display needed), saves it when ``path`` is given (:func:`save_figure`: ``x.png`` or
``x.pdf`` writes that file, ``x`` without one of these suffixes writes both), and returns the Figure.

Scores are "median noise-corrected R²" (best layer on independent splits) unless stated.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import font_manager as _font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.figure import Figure

from . import analysis as _an

__all__ = ["plot_across_models", "plot_across_layers", "plot_components", "plot_roi_best_layer",
           "plot_rsa_across_models", "plot_roi_matrices", "plot_across_layers_roi", "plot_model_scatters",
           "plot_layer_scatters", "plot_grouped_bars", "plot_component_predictions", "save_figure",
           "CATEGORY_COLORS", "CATEGORY_LABELS"]

R2C_LABEL = "Median noise-corrected R²"
TRAINED_COLOR = "#2b6cb0"
PERMUTED_COLOR = "#a0aec0"
SPECTEMP_COLOR = "#c05621"
ROI_COLORS = {"Anterior": "#2f855a", "Lateral": "#b7791f", "Posterior": "#805ad5"}
#: Colour of each sound category (fastenc.constants.CATEGORY_ORDER): music blue, speech green,
#: vocalisations purple, non-vocal sounds red, nature / mechanical / environmental warm to grey.
CATEGORY_COLORS = {"Music": "#1f3fbf", "Song": "#4fb3e8", "EngSpeech": "#1b6b2f", "ForSpeech": "#7ccf5a",
                   "HumVoc": "#7b2fb5", "AniVoc": "#d48ae6", "HumNonVoc": "#b3202a", "AniNonVoc": "#f27fb0",
                   "Nature": "#e0b000", "Mechanical": "#f07c00", "EnvSound": "#8c8c8c"}
#: Legend names of the sound categories.
CATEGORY_LABELS = {"Music": "Instrumental music", "Song": "Vocal music", "EngSpeech": "English speech",
                   "ForSpeech": "Foreign speech", "HumVoc": "Human vocal, non-speech", "AniVoc": "Animal vocal",
                   "HumNonVoc": "Human non-vocal", "AniNonVoc": "Animal non-vocal", "Nature": "Nature",
                   "Mechanical": "Mechanical", "EnvSound": "Environmental"}


#: Bitmaps of plain text lines (see :class:`_TextCacheRenderer`), shared by all figures:
#: key -> (image, descent, x offset, y offset), in pixels. Both caches are emptied when they
#: reach ``_TEXT_CACHE_MAX`` entries.
_TEXT_BITMAPS: dict = {}
#: Metrics of plain text lines: key -> (width, height, descent), in pixels.
_TEXT_METRICS: dict = {}
_TEXT_CACHE_MAX = 4096


def _font_key(prop, dpi) -> tuple:
    """Everything of ``prop`` (and the rcParams) that changes a text line's glyphs at ``dpi``.

    Built field by field rather than with ``hash(prop)`` (a key that is a hash could collide).
    The font files the properties resolve to are part of it, so that a change of e.g.
    ``rcParams["font.sans-serif"]`` or a newly added font is not served from the cache.
    """
    family = prop.get_family()
    family = (family,) if isinstance(family, str) else tuple(family)
    math_family = getattr(prop, "get_math_fontfamily", None)
    fm = _font_manager.fontManager
    find = getattr(fm, "_find_fonts_by_props", None)
    files = tuple(find(prop)) if find is not None else (fm.findfont(prop),)
    rc = mpl.rcParams
    return (family, prop.get_style(), prop.get_variant(), prop.get_weight(), prop.get_stretch(),
            prop.get_size_in_points(), prop.get_file(), math_family() if math_family else None,
            files, float(dpi), get_hinting_flag(), rc.get("text.hinting_factor"),
            rc.get("text.kerning_factor"), rc.get("font.enable_last_resort"))


def _cache_put(cache: dict, key, value) -> None:
    if len(cache) >= _TEXT_CACHE_MAX:
        cache.clear()
    cache[key] = value


class _TextCacheRenderer(RendererAgg):
    """Agg renderer that draws each plain text line as one cached bitmap.

    matplotlib 3.11's ``RendererAgg.draw_text`` lays out and renders every glyph in a Python
    loop (``_draw_text_glyphs_and_boxes``), and its text metrics are cached per renderer only,
    so cold for every new figure: about 15-20 % of the CPU of fastenc's figures. This renderer
    draws plain text the way matplotlib <= 3.10 did: the line rendered by FreeType into one
    bitmap, placed at whole pixels and rotated by Agg; the bitmaps and the metrics are kept in
    module-level caches shared by all figures. The text's colour, alpha and clipping come from
    the graphics context, as before, and are not part of the cache.

    Mathtext, TeX, text with font features or a language set, and rotated text that is not
    antialiased are drawn by ``RendererAgg``.
    """

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        # docstring inherited
        aa = bool(gc.get_antialiased())
        if ismath or (not aa and angle % 360) or mtext is not None and (
                getattr(mtext, "get_fontfeatures", lambda: None)()
                or getattr(mtext, "get_language", lambda: None)()):
            return super().draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
        key = (s, aa) + _font_key(prop, self.dpi)
        hit = _TEXT_BITMAPS.get(key)
        if hit is None:
            font = self._prepare_font(prop)
            # angle 0: the bitmap is rotated (in raster space) by draw_text_image
            font.set_text(s, 0, flags=get_hinting_flag())
            font.draw_glyphs_to_bitmap(antialiased=aa)
            img = np.array(font.get_image(), dtype=np.uint8, copy=True)
            xo, yo = font.get_bitmap_offset()
            hit = (img, font.get_descent() / 64.0, xo / 64.0, yo / 64.0)
            _cache_put(_TEXT_BITMAPS, key, hit)
        img, d, xo, yo = hit
        # As matplotlib 3.10's RendererAgg.draw_text (x + xo + d sin, y + yo + d cos, + 1 pixel
        # down; y is downwards, draw_text_image rotates about the bitmap's lower left corner), but
        # with the offsets along the text (xo) and across it (yo + descent + 1) rotated with the
        # text: 3.10 drew rotated text up to ~2.5 pixels off along its direction (xo + 1 at 90
        # degrees), 3.11 does not. The same as 3.10 for horizontal text.
        sin, cos = math.sin(math.radians(angle)), math.cos(math.radians(angle))
        v = yo + d + 1
        self._renderer.draw_text_image(img, round(x + xo * cos + v * sin), round(y - xo * sin + v * cos),
                                       angle, gc)

    def get_text_width_height_descent(self, s, prop, ismath):
        # docstring inherited
        if ismath:  # True (mathtext) or "TeX"
            return super().get_text_width_height_descent(s, prop, ismath)
        key = (s,) + _font_key(prop, self.dpi)
        hit = _TEXT_METRICS.get(key)
        if hit is None:
            hit = super().get_text_width_height_descent(s, prop, ismath)
            _cache_put(_TEXT_METRICS, key, hit)
        return hit


class _TextCacheCanvas(FigureCanvasAgg):
    """Agg canvas drawing with :class:`_TextCacheRenderer` (cached plain text, see there)."""

    def get_renderer(self):
        # as FigureCanvasAgg.get_renderer of matplotlib 3.11: reused while (w, h, dpi) is unchanged
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if getattr(self, "_lastKey", None) != key or not isinstance(getattr(self, "renderer", None),
                                                                    _TextCacheRenderer):
            self.renderer = _TextCacheRenderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer


def _new_figure(figsize) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    _TextCacheCanvas(fig)
    return fig


def _grid_figure(nrows: int, ncols: int, panel: tuple, left: float, right: float, top: float, bottom: float,
                 wgap: float, hgap: float, title: str | None = None, title_size: float = 11, **subplot_kw):
    """A figure of ``nrows`` x ``ncols`` panels of ``panel`` = (width, height) inches, with margins
    and gaps between panels in inches: a fixed grid, for figures of many panels, where matplotlib's
    layout solver would cost as much as drawing them. ``title``: at the top, wrapped to the
    figure's width (its own line breaks kept); the top margin grows by a line per line. Returns
    ``(fig, axes)`` (2-D)."""
    import textwrap
    w, h = panel
    width = left + right + ncols * w + (ncols - 1) * wgap
    chars = int((width - 0.4) * 121 / title_size)  # about 0.65 em per character
    lines = [line for para in (title or "").split("\n") for line in textwrap.wrap(para, width=chars)]
    top += 0.21 * len(lines) * title_size / 11
    height = top + bottom + nrows * h + (nrows - 1) * hgap
    fig = Figure(figsize=(width, height))
    _TextCacheCanvas(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wgap / w, hspace=hgap / h)
    if lines:
        fig.suptitle("\n".join(lines), fontsize=title_size, y=1 - 0.08 / height, va="top")
    return fig, axes


def _text_inches(texts, fontsize: float) -> float:
    """About the width in inches of the longest line of ``texts`` at ``fontsize`` points (DejaVu
    Sans averages about 0.6 em per character; 0.65 leaves room)."""
    lines = [line for t in texts for line in str(t).split("\n")]
    return max((len(line) for line in lines), default=0) * fontsize * 0.65 / 72


def _rotated_extent(texts, fontsize: float, rotation: float = 60) -> tuple[float, float]:
    """About the (width, height) in inches of the box around the longest line of ``texts`` drawn
    at ``fontsize`` points, turned by ``rotation`` degrees (tick labels under a fixed grid)."""
    a = np.deg2rad(rotation)
    w, h = _text_inches(texts, fontsize), fontsize * 1.25 / 72
    return float(w * np.cos(a) + h * np.sin(a)), float(w * np.sin(a) + h * np.cos(a))


def _wrap(text: str | None, width_in: float, fontsize: float) -> list[str]:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (its own
    line breaks kept)."""
    import textwrap
    chars = max(12, int(width_in * 72 / (0.62 * fontsize)))
    return [line for para in (text or "").split("\n") if para for line in textwrap.wrap(para, width=chars)]


def _legend_columns(n: int, height_in: float, fontsize: float) -> int:
    """Columns for a legend of ``n`` entries at ``fontsize`` points to fit ``height_in`` inches."""
    per_column = max(1, int(height_in / (fontsize * 1.5 * 1.2 / 72)))
    return max(1, -(-n // per_column))


def _default_save_style() -> bool:
    """True when matplotlib's savefig settings leave a saved PNG as the canvas draws it."""
    import matplotlib as mpl
    rc = mpl.rcParams
    return (str(rc["savefig.facecolor"]) == "auto" and str(rc["savefig.edgecolor"]) == "auto"
            and not rc["savefig.transparent"] and rc["savefig.bbox"] in (None, "standard"))


#: zlib level of the PNGs written by :func:`save_figure` (:func:`_write_png`). Run-all's 36 demo
#: figures: level 3 without row filters writes them in 0.38 s of CPU, 2 % smaller than Pillow's
#: filtered RGB at level 3 (0.97 s) and 5 % smaller than matplotlib's RGBA at level 6.
PNG_COMPRESS_LEVEL = 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _write_png(path: Path, rgba: np.ndarray, dpi: int) -> None:
    """Write the canvas pixels ``rgba`` (rows top to bottom) as a PNG (8 bits per channel), the
    pixels matplotlib's ``savefig`` writes, with its ``Software`` text and the ``dpi``.

    - RGB when every pixel is opaque (the same image; a fourth channel of 255s only costs
      encoding time and bytes), else RGBA.
    - Every row with PNG's filter "None": a figure is mostly flat colour, which deflate packs at
      least as well unfiltered, and choosing a filter per row (Pillow and matplotlib try all five)
      costs about twice the compression itself.
    """
    import struct
    import sys
    import zlib

    import matplotlib as mpl
    from PIL import Image
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)  # the canvas buffer already is: no copy
    h, w = rgba.shape[:2]
    if sys.byteorder == "little":  # a pixel's bytes R, G, B, A read as one integer: A is the top byte
        opaque = bool((rgba.view(np.uint32) >= np.uint32(0xFF000000)).all())
    else:
        opaque = bool((rgba[..., 3] == 255).all())
    if opaque:  # Pillow drops the alpha bytes in C, several times faster than numpy's strided copy
        pixels = np.frombuffer(Image.fromarray(rgba).convert("RGB").tobytes(), np.uint8).reshape(h, 3 * w)
    else:
        pixels = rgba.reshape(h, 4 * w)
    rows = np.empty((h, pixels.shape[1] + 1), np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = pixels
    per_metre = int(round(dpi / 0.0254))
    software = f"Matplotlib version{mpl.__version__}, https://matplotlib.org/".encode("latin-1")
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2 if opaque else 6, 0, 0, 0)))
        f.write(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1)))
        f.write(_png_chunk(b"tEXt", b"Software\0" + software))
        f.write(_png_chunk(b"IDAT", zlib.compress(rows, PNG_COMPRESS_LEVEL)))
        f.write(_png_chunk(b"IEND", b""))


def save_figure(fig: Figure, path, dpi: int = 150) -> list[Path]:
    """Save ``fig``; returns the paths written.

    ``path`` ending in ``.png`` or ``.pdf`` writes that file only; any other ``path`` (e.g.
    ``figures/across-models``) writes ``path.png`` and ``path.pdf``. ``run-all`` writes PNGs only
    unless asked for PDFs (``--pdf``): a PDF costs about as much again as the PNG.

    Drawn once per format: the PNG is the canvas drawn once at ``dpi`` (a layout engine,
    e.g. ``layout="constrained"``, runs inside that draw; ``savefig`` would add a whole draw
    without rendering just for the layout), written with matplotlib's PNG writer (the pixels
    ``savefig`` gives), and the PDF is drawn with the positions that layout found (they are in
    figure coordinates and do not depend on the dpi) instead of solving it again.
    """
    p = Path(path)
    if p.suffix.lower() in (".png", ".pdf"):
        out = [p]
    else:
        out = [p.with_name(p.name + ".png"), p.with_name(p.name + ".pdf")]
    p.parent.mkdir(parents=True, exist_ok=True)
    png = next((q for q in out if q.suffix.lower() == ".png"), None)
    pdf = next((q for q in out if q.suffix.lower() == ".pdf"), None)
    if png is None:
        fig.savefig(pdf)
        return out
    if isinstance(fig.canvas, FigureCanvasAgg) and _default_save_style():
        dpi0 = fig.dpi
        fig.dpi = dpi
        try:
            fig.canvas.draw()
            _write_png(png, np.asarray(fig.canvas.buffer_rgba()), dpi)
        finally:
            fig.dpi = dpi0
    else:
        fig.savefig(png, dpi=dpi)
    if pdf is None:
        return out
    engine = fig.get_layout_engine()
    if engine is not None:
        fig.set_layout_engine("none")  # keeps the axes where the PNG's layout put them
    try:
        fig.savefig(pdf)
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
    return out


def _name(model, display_names):
    if display_names and model in display_names:
        return display_names[model]
    return str(model)


def _spectemp_band(ax, mean, sem, label):
    ax.axhspan(mean - sem, mean + sem, color=SPECTEMP_COLOR, alpha=0.18, lw=0, zorder=0)
    ax.axhline(mean, color=SPECTEMP_COLOR, lw=1.5, ls="--", zorder=1, label=label)


# --------------------------------------------------------------------------------------
def _style_bar_panel(ax, labels, permuted, positions=None):
    """Model names under the bars, panel title, grid and legend of one across-model panel."""
    positions = np.arange(len(labels)) if positions is None else np.asarray(positions)
    ax.set_xticks(positions)
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.7, (positions[-1] if len(positions) else 0) + 0.7)
    ax.set_title("Permuted networks" if permuted else "Trained networks", fontsize=11)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)


def plot_across_models(df: pd.DataFrame, spectemp: str | None = "spectemp",
                       display_names: Mapping[str, str] | None = None,
                       title: str = "Best layer on independent splits",
                       ylabel: str = R2C_LABEL, order: str = "trained",
                       pool: Sequence[str] | None = None, published: Mapping[str, float] | None = None,
                       path=None) -> Figure:
    """Bars across models: trained and permuted networks in two panels, spectemp as a band.

    ``df``: long table ``model, randnetw, subj_idx, score`` (see
    :func:`fastenc.analysis.across_models_summary`, which computes the bars: mean over
    participants, error = within-subject SEM over all models of the panel plus spectemp).
    Bars are sorted by descending score; ``order="trained"`` uses the trained panel's order for
    the permuted panel too (easier to compare), ``order="each"`` sorts each panel on its own.
    ``pool``: the figure's model set (METHOD §5): only those models are drawn and the error bars
    are pooled over them plus spectemp. ``published``: model name -> the paper's value, drawn as
    hatched bars after the computed ones in the trained panel and labelled "(published)" — for
    placing a new model among the study's when their activations are not present.
    """
    summ = _an.across_models_summary(df, spectemp=spectemp, pool=pool)
    if pool is not None:
        summ = summ[summ["in_pool"]]
    if summ.empty:
        raise ValueError("nothing to plot")
    panels = [(rn, summ[summ["randnetw"] == rn]) for rn in (False, True)
              if (summ.loc[summ["randnetw"] == rn, "is_baseline"] == False).any()]  # noqa: E712
    n_models = max(int((~p["is_baseline"]).sum()) for _, p in panels)
    n_pub = len([v for v in (published or {}).values() if v is not None])
    fig = _new_figure((max(6.0, 0.42 * (n_models * len(panels) + n_pub) + 2.5), 4.8))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    trained_order = None
    for ax, (rn, p) in zip(axes, panels):
        bars = p[~p["is_baseline"]]
        if order == "trained" and rn and trained_order is not None:
            rank = {m: k for k, m in enumerate(trained_order)}
            bars = bars.assign(_r=bars["model"].map(lambda m: rank.get(m, len(rank))))
            bars = bars.sort_values(["_r", "mean"], ascending=[True, False], kind="stable")
        else:
            bars = bars.sort_values("mean", ascending=False, kind="stable")
        if not rn:
            trained_order = list(bars["model"])
        x = np.arange(len(bars))
        color = PERMUTED_COLOR if rn else TRAINED_COLOR
        ax.bar(x, bars["mean"], yerr=bars["sem"], color=color, edgecolor="black", lw=0.5,
               capsize=2, error_kw={"lw": 0.8}, zorder=2,
               label="Permuted network" if rn else "Trained network")
        base = p[p["is_baseline"]]
        if len(base):
            b = base.iloc[0]
            _spectemp_band(ax, b["mean"], b["sem"], f"{_name(spectemp, display_names)} "
                           f"baseline ({b['mean']:.3f})")
        labels = [_name(m, display_names) for m in bars["model"]]
        if published and not rn:
            pub = sorted(((m, v) for m, v in published.items() if v is not None and np.isfinite(v)),
                         key=lambda mv: -mv[1])
            xp = len(bars) + 0.5 + np.arange(len(pub))
            ax.bar(xp, [v for _, v in pub], color="white", edgecolor=TRAINED_COLOR, hatch="///", lw=0.8,
                   zorder=2, label="Published (Tuckute et al. 2023)")
            _style_bar_panel(ax, labels + [f"{m} (published)" for m, _ in pub], rn, positions=np.r_[x, xp])
        else:
            _style_bar_panel(ax, labels, rn)
    axes[0].set_ylabel(f"{ylabel}\n(mean ± within-subject SEM, n = {int(summ['n_subjects'].iloc[0])})")
    top = float(np.nanmax(summ["mean"] + summ["sem"].fillna(0)))
    if n_pub:  # room for the legend above the published bars
        top = 1.25 * max(top, max((v for v in published.values() if v is not None), default=0.0))
    axes[0].set_ylim(0, max(1.0, top * 1.1) if top > 0.9 else top * 1.15 + 0.02)
    fig.suptitle(title, fontsize=12)
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------
def plot_across_layers(curves: Mapping[str, "_an.LayerCurve"],
                       permuted: Mapping[str, "_an.LayerCurve"] | None = None,
                       display_names: Mapping[str, str] | None = None,
                       spectemp: "_an.LayerCurve | tuple[float, float] | None" = None,
                       title: str = "Prediction across model stages", ylabel: str = R2C_LABEL,
                       ncols: int | None = None, path=None) -> Figure:
    """Per-model across-layer curves (mean over participants ± within-subject SEM, shaded).

    One panel per model (layer names on the x axis, shared y axis); the permuted network's curve
    (``permuted[model]``) is drawn in gray in the same panel; ``spectemp`` (its one-layer curve,
    or ``(mean, sem)``) as a horizontal band.
    """
    if not curves:
        raise ValueError("no curves")
    models = list(curves)
    n = len(models)
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    fig = _new_figure((3.4 * ncols + 0.6, 3.0 * nrows + 0.8))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    st = None
    if spectemp is not None:
        st = ((float(spectemp.mean[0]), float(spectemp.sem[0]))
              if isinstance(spectemp, _an.LayerCurve) else tuple(map(float, spectemp)))
    ymax = 0.0
    for ax, model in zip(axes, models):
        c = curves[model]
        x = np.arange(len(c.mean))
        items = [(c, TRAINED_COLOR, "Trained")]
        if permuted and model in permuted:
            items.append((permuted[model], "#718096", "Permuted"))
        for cur, col, lab in items:
            xx = np.arange(len(cur.mean))
            ax.plot(xx, cur.mean, "-o", color=col, ms=3, lw=1.5, label=lab, zorder=3)
            ax.fill_between(xx, cur.mean - cur.sem, cur.mean + cur.sem, color=col, alpha=0.25,
                            lw=0, zorder=2)
            ymax = max(ymax, float(np.nanmax(cur.mean + cur.sem)))
        if st is not None:
            _spectemp_band(ax, st[0], st[1], "SpectroTemporal")
            ymax = max(ymax, st[0] + st[1])
        ax.set_xticks(x)
        ax.set_xticklabels([str(l) for l in c.layers], rotation=70, ha="right", fontsize=7)
        ax.set_title(_name(model, display_names), fontsize=10)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[n:]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel(ylabel, fontsize=9)
    axes[0].set_ylim(0, ymax * 1.1 + 0.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9,
               frameon=False)
    fig.suptitle(f"{title}\n(mean over participants ± within-subject SEM across layers)",
                 fontsize=11)
    for c in range(ncols):  # x label on the lowest visible panel of each column
        col = [axes[r * ncols + c] for r in range(nrows) if r * ncols + c < n]
        if col:
            col[-1].set_xlabel("Model stage (layer)", fontsize=9)
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------
def plot_components(scores: pd.DataFrame, errors: pd.DataFrame | None = None,
                    spectemp: str | None = "spectemp",
                    display_names: Mapping[str, str] | None = None,
                    title: str = "Prediction of fMRI components (best layer on independent splits)",
                    ylabel: str = "Median R² (not noise-corrected)", ncols: int = 3,
                    path=None) -> Figure:
    """Bars per component: one panel per component, models in one order (mean over components).

    ``scores``: DataFrame, rows = models, columns = components (e.g. the ``score`` column of
    :func:`fastenc.analysis.components_independent_splits` per model). ``errors`` (same shape,
    optional) are drawn as error bars (run-all: the SD over the 10 iterations / √9). The ``spectemp``
    row, if present, is drawn as a horizontal band rather than a bar.
    """
    if scores.empty:
        raise ValueError("no scores")
    comps = list(scores.columns)
    nrows = -(-len(comps) // ncols)
    n_models = len(scores.index) - int(spectemp in scores.index)
    fig = _new_figure((max(3.0, 0.32 * n_models + 1.2) * ncols, 3.3 * nrows + 1.0))
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    # one model order in every panel: by the mean score over components, best first
    order = (scores.drop(index=[spectemp], errors="ignore").mean(axis=1)
             .sort_values(ascending=False, kind="stable").index)
    for ax, comp in zip(axes, comps):
        s = scores[comp]
        base = s.get(spectemp) if spectemp is not None else None
        bars = s.loc[order]
        x = np.arange(len(bars))
        yerr = errors.loc[bars.index, comp].to_numpy() if errors is not None else None
        ax.bar(x, bars.to_numpy(), yerr=yerr, color=TRAINED_COLOR, edgecolor="black", lw=0.5,
               capsize=2, zorder=2)
        if base is not None and np.isfinite(base):
            ax.axhline(base, color=SPECTEMP_COLOR, ls="--", lw=1.5, zorder=3,
                       label=f"{_name(spectemp, display_names)} ({base:.3f})")
            ax.legend(fontsize=7, frameon=False, loc="upper right")
        ax.set_xticks(x)
        ax.set_xticklabels([_name(m, display_names) for m in bars.index], rotation=70,
                           ha="right", fontsize=7)
        ax.set_title(str(comp), fontsize=10)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(comps):]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel(ylabel, fontsize=9)
    axes[0].set_ylim(0, min(1.0, float(np.nanmax(scores.to_numpy())) * 1.15 + 0.02))
    fig.suptitle(title, fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------
def _roi_long(table: pd.DataFrame, primary: str, others: Sequence[str]) -> pd.DataFrame:
    """Long ROI table (``source_model, randnetw, roi, rel_pos_mean, rel_pos_yerr``) from the long
    form itself or from a plain models x ROIs table (no error bars)."""
    if "roi" in table.columns:
        need = {"source_model", "roi", "rel_pos_mean"}
        if not need.issubset(table.columns):
            raise ValueError(f"table needs columns {sorted(need)}")
        d = table.copy()
        if "randnetw" not in d:
            d["randnetw"] = False
        if "rel_pos_yerr" not in d:
            d["rel_pos_yerr"] = np.nan
    else:
        missing = [c for c in (primary, *others) if c not in table.columns]
        if missing:
            raise ValueError(f"table lacks columns {missing}")
        d = (table[[primary, *others]].rename_axis("source_model").reset_index()
             .melt(id_vars="source_model", var_name="roi", value_name="rel_pos_mean"))
        d["randnetw"] = False
        d["rel_pos_yerr"] = np.nan
    missing = [r for r in (primary, *others) if r not in set(d["roi"])]
    if missing:
        raise ValueError(f"table lacks ROIs {missing}")
    d["randnetw"] = d["randnetw"].astype(bool)
    return d


def plot_roi_best_layer(table: pd.DataFrame, pvalues=None, randnetw: bool = False,
                        primary: str = "Primary",
                        others: Sequence[str] = ("Anterior", "Lateral", "Posterior"),
                        display_names: Mapping[str, str] | None = None,
                        annotate_models: bool | None = None,
                        title: str = "Best model stage per anatomical ROI", path=None) -> Figure:
    """Relative best-layer position per model: one panel per non-primary ROI, Primary on x.

    ``table``: the long table of :func:`fastenc.analysis.roi_summary` (``source_model,
    randnetw, roi, rel_pos_mean, rel_pos_yerr``; the ``randnetw`` rows are drawn) or a plain
    models x ROIs table. Error bars: the within-subject SEM over the pooled models (x for
    Primary, y for the other ROI), as the reference study drew them. Points are labelled by
    model (``annotate_models``; default: when there are at most 15 models), and the axes fit the
    data (the same range on both, so the diagonal stays the diagonal). ``pvalues``:
    :func:`fastenc.analysis.roi_wilcoxon` output (the Primary-vs-ROI row is shown in each panel
    title) or a mapping ROI -> p. Points above the diagonal: the model's best stage is later for
    that ROI.
    """
    d = _roi_long(table, primary, others)
    d = d[d["randnetw"] == bool(randnetw)]
    if d.empty:
        raise ValueError(f"no rows with randnetw={randnetw}")
    mean = d.pivot(index="source_model", columns="roi", values="rel_pos_mean")
    err = d.pivot(index="source_model", columns="roi", values="rel_pos_yerr")
    if isinstance(pvalues, pd.DataFrame):
        pv = pvalues
        if "randnetw" in pv:
            pv = pv[pv["randnetw"].astype(bool) == bool(randnetw)]
        pmap = {r2: p for r1, r2, p in zip(pv["roi_1"], pv["roi_2"], pv["p_value"]) if r1 == primary}
    else:
        pmap = dict(pvalues or {})
    if annotate_models is None:
        annotate_models = len(mean) <= 15
    vals = np.concatenate([(mean[c] - err[c].fillna(0)).to_numpy(float) for c in mean.columns]
                          + [(mean[c] + err[c].fillna(0)).to_numpy(float) for c in mean.columns])
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    pad = max(0.05, 0.08 * (hi - lo))
    lo, hi = max(-0.02, lo - pad), min(1.02, hi + pad)
    fig = _new_figure((4.3 * len(others) + 0.4, 5.8))  # square panels + two title lines
    axes = fig.subplots(1, len(others), squeeze=False)[0]
    for ax, roi in zip(axes, others):
        ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", zorder=1)
        x, y = mean[primary], mean[roi]
        xe, ye = err[primary].to_numpy(float), err[roi].to_numpy(float)
        ax.errorbar(x, y, xerr=np.where(np.isfinite(xe), xe, 0), yerr=np.where(np.isfinite(ye), ye, 0),
                    fmt="none", ecolor=ROI_COLORS.get(roi, "k"), elinewidth=0.8, alpha=0.7, zorder=2)
        ax.scatter(x, y, s=32, color=ROI_COLORS.get(roi), edgecolor="black", lw=0.4, zorder=3)
        if annotate_models:
            for m in mean.index:
                if np.isfinite(x[m]) and np.isfinite(y[m]):
                    ax.annotate(_name(m, display_names), (x[m], y[m]), fontsize=7, xytext=(4, 3),
                                textcoords="offset points")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_box_aspect(1)
        ax.set_xlabel(f"{primary}: relative best-layer position", fontsize=9)
        ax.set_ylabel(f"{roi}: relative best-layer position", fontsize=9)
        p = pmap.get(roi)
        ax.set_title(f"{roi} vs {primary}" + ("" if p is None or not np.isfinite(p)
                                               else f"\nWilcoxon p = {p:.2g}"), fontsize=10)
        ax.grid(alpha=0.3)
    net = "permuted networks" if randnetw else "trained networks"
    fig.suptitle(f"{title}, {net}\n(mean over participants ± within-subject SEM; "
                 f"0 = first layer, 1 = last; n = {len(mean)} models)", fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------
# RSA (METHOD §6)
# --------------------------------------------------------------------------------------
CEILING_COLOR = "#718096"


def plot_rsa_across_models(df: pd.DataFrame, roi: str = "All", spectemp: str | None = "spectemp",
                           display_names: Mapping[str, str] | None = None,
                           title: str = "Human–model RSA", path=None) -> Figure:
    """RSA bars (mean over participants ± SEM), trained and permuted panels, for one ROI.

    ``df``: ``rsa_across-models_<target>.csv`` rows (``source_model, randnetw, roi, rsa_mean,
    rsa_yerr, noise_ceiling, noise_ceiling_yerr``). The noise ceiling is a dashed line with a gray
    band of ± ``noise_ceiling_yerr`` (std / √(participants − 1)), spectemp a band.
    """
    d = df[df["roi"] == roi]
    if "in_pool" in d:  # the figure's model set (METHOD §5); other models' rows are not drawn
        d = d[d["in_pool"].astype(bool)]
    if d.empty:
        raise ValueError(f"no RSA rows for ROI {roi!r}")
    base = d[(d["source_model"] == spectemp) & ~d["randnetw"].astype(bool)] if spectemp else d.iloc[:0]
    panels = [(rn, d[(d["randnetw"].astype(bool) == rn) & (d["source_model"] != spectemp)]) for rn in (False, True)]
    panels = [(rn, p) for rn, p in panels if len(p)]
    n_models = max(len(p) for _, p in panels)
    fig = _new_figure((max(6.0, 0.42 * n_models * len(panels) + 2.5), 4.8))
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    ceiling = float(d["noise_ceiling"].iloc[0])
    # band: ± std / sqrt(participants - 1) of the per-participant ceilings (METHOD §6)
    ceiling_err = float(d["noise_ceiling_yerr"].iloc[0]) if "noise_ceiling_yerr" in d else 0.0
    if not np.isfinite(ceiling_err):
        ceiling_err = 0.0
    order = None
    for ax, (rn, p) in zip(axes, panels):
        if rn and order is not None:
            rank = {m: k for k, m in enumerate(order)}
            p = p.assign(_r=p["source_model"].map(lambda m: rank.get(m, len(rank)))).sort_values("_r")
        else:
            p = p.sort_values("rsa_mean", ascending=False)
            order = list(p["source_model"])
        x = np.arange(len(p))
        ax.bar(x, p["rsa_mean"], yerr=p["rsa_yerr"], color=PERMUTED_COLOR if rn else TRAINED_COLOR,
               edgecolor="black", lw=0.5, capsize=2, error_kw={"lw": 0.8}, zorder=2,
               label="Permuted network" if rn else "Trained network")
        ax.axhspan(ceiling - ceiling_err, ceiling + ceiling_err, color=CEILING_COLOR, alpha=0.35, lw=0,
                   zorder=1)
        ax.axhline(ceiling, color="black", ls="--", lw=1, zorder=1,
                   label=f"Noise ceiling ({ceiling:.3f} ± {ceiling_err:.3f})")
        if len(base):
            b = base.iloc[0]
            _spectemp_band(ax, b["rsa_mean"], b["rsa_yerr"],
                           f"{_name(spectemp, display_names)} ({b['rsa_mean']:.3f})")
        _style_bar_panel(ax, [_name(m, display_names) for m in p["source_model"]], rn)
    axes[0].set_ylabel("Spearman ρ, model vs human RSM\n(best layer on independent splits)")
    top = max(ceiling, float(np.nanmax(d["rsa_mean"] + d["rsa_yerr"].fillna(0))))
    axes[0].set_ylim(0, min(1.0, top * 1.2 + 0.02))
    fig.suptitle(f"{title} ({roi} voxels)" if roi != "All" else f"{title} (all voxels)", fontsize=12)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_rsa_per_roi(df: pd.DataFrame, rois: Sequence[str] = ("Primary", "Lateral", "Posterior", "Anterior"),
                     spectemp: str | None = "spectemp", display_names: Mapping[str, str] | None = None,
                     title: str = "Human–model RSA per anatomical ROI", path=None) -> Figure:
    """RSA per ROI: one panel per ROI, trained (dark) and permuted (light) bars side by side per
    model, each ROI's own noise ceiling as a dashed line with its ± std / √(participants − 1) band.

    ``df``: ``rsa_across-models_<target>.csv`` rows. Models are in one order in every panel (by
    their trained score in the first ROI). The ceiling is the leave-one-participant-out estimate,
    a lower bound of the true ceiling: with few voxels per participant and ROI a noise-free model
    can exceed it (docs/outputs.md).
    """
    d = df[df["roi"].isin(rois)]
    if "in_pool" in d:
        d = d[d["in_pool"].astype(bool)]
    present = [r for r in rois if (d["roi"] == r).any()]
    if not present:
        raise ValueError(f"no RSA rows for ROIs {list(rois)}")
    trained = d[~d["randnetw"].astype(bool)]
    first = trained[trained["roi"] == present[0]]
    order = list(first.sort_values("rsa_mean", ascending=False, kind="stable")["source_model"])
    order += [m for m in dict.fromkeys(d["source_model"]) if m not in order]
    # a fixed grid (the layout solver costs about a fifth of this figure): room under the panels
    # for the rotated model names, and between them for the first name's overhang
    labels = [_name(m, display_names) for m in order]
    titles = [f"{roi} (ceiling 0.00)" for roi in present]
    pw = max(1.9, 0.5 * len(order), _text_inches(titles, 10) + 0.1)
    lab_w, lab_h = _rotated_extent(labels, 8)
    overhang = lab_w - pw * 0.5 / len(order)  # left of the first bar's tick
    fig, axes = _grid_figure(1, len(present), (pw, 3.0), left=max(0.95, overhang + 0.15), right=0.2, top=0.35,
                             bottom=0.15 + lab_h, wgap=max(0.2, overhang + 0.1), hgap=0.0, title=title,
                             title_size=12, sharey=True)
    axes = axes[0]
    w = 0.4
    for ax, roi in zip(axes, present):
        r = d[d["roi"] == roi]
        x = np.arange(len(order))
        for k, (rn, color, lab) in enumerate(((False, TRAINED_COLOR, "Trained"), (True, PERMUTED_COLOR, "Permuted"))):
            p = r[r["randnetw"].astype(bool) == rn].set_index("source_model").reindex(order)
            ax.bar(x + (k - 0.5) * w, p["rsa_mean"], width=w, yerr=p["rsa_yerr"], color=color,
                   edgecolor="black", lw=0.5, capsize=1.5, error_kw={"lw": 0.7}, zorder=2, label=lab)
        ceil = float(r["noise_ceiling"].iloc[0])
        cerr = float(r["noise_ceiling_yerr"].iloc[0]) if "noise_ceiling_yerr" in r else 0.0
        cerr = cerr if np.isfinite(cerr) else 0.0
        ax.axhspan(ceil - cerr, ceil + cerr, color=CEILING_COLOR, alpha=0.35, lw=0, zorder=1)
        ax.axhline(ceil, color="black", ls="--", lw=1, zorder=1, label="Noise ceiling (LOO)")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{roi} (ceiling {ceil:.2f})", fontsize=10)
        ax.locator_params(axis="y", nbins=5)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("Spearman ρ, model vs human RSM\n(best layer on independent splits)", fontsize=9)
    axes[-1].legend(fontsize=7, frameon=False, loc="upper right")
    top = float(np.nanmax(np.r_[d["rsa_mean"] + d["rsa_yerr"].fillna(0), d["noise_ceiling"]]))
    axes[0].set_ylim(0, min(1.0, top * 1.2 + 0.02))
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_roi_matrices(rsms: Mapping[str, np.ndarray], roi_corr: pd.DataFrame | None = None,
                      category_bounds: Sequence[int] | None = None, category_names: Sequence[str] | None = None,
                      title: str = "Human representational similarity per ROI", path=None) -> Figure:
    """Mean participant RSM of each ROI (sounds in category order) and the ROI-vs-ROI Spearman matrix."""
    n = len(rsms) + (roi_corr is not None)
    fig = _new_figure((3.2 * n + 1.2, 4.4))
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (roi, M) in zip(axes, rsms.items()):
        im = ax.imshow(M, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(roi, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        if category_bounds is not None:
            for b in category_bounds[1:-1]:
                ax.axhline(b - 0.5, color="k", lw=0.3)
                ax.axvline(b - 0.5, color="k", lw=0.3)
            if category_names is not None and ax is axes[0]:
                mids = [(a + b) / 2 for a, b in zip(category_bounds[:-1], category_bounds[1:])]
                ax.set_yticks(mids)
                ax.set_yticklabels(category_names, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[:len(rsms)], shrink=0.8, label="Pearson r between sounds")
    if roi_corr is not None:
        ax = axes[-1]
        im2 = ax.imshow(roi_corr.to_numpy(float), cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(roi_corr)))
        ax.set_xticklabels(roi_corr.columns, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
        ax.set_yticks(range(len(roi_corr)))
        ax.set_yticklabels(roi_corr.index, fontsize=9)
        for i in range(len(roi_corr)):
            for j in range(len(roi_corr)):
                ax.text(j, i, f"{roi_corr.iat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if roi_corr.iat[i, j] < 0.6 else "k")
        ax.set_title("ROI vs ROI\n(Spearman of train RSMs,\nmean over participants and splits)", fontsize=9)
        fig.colorbar(im2, ax=ax, shrink=0.8)
    fig.suptitle(title, fontsize=12)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_across_layers_roi(table: pd.DataFrame, rois: Sequence[str] = ("Primary", "Anterior", "Lateral", "Posterior"),
                           display_names: Mapping[str, str] | None = None,
                           title: str = "Prediction across model stages per anatomical ROI", path=None) -> Figure:
    """Across-layer curves per anatomical ROI: one panel per ROI, one line per model over the
    relative layer position (0 = first, 1 = last), mean over participants ± within-subject SEM
    shaded; the permuted networks (when present) as dashed lines of the model's colour in the same
    panel, so that each ROI's trained and permuted curves compare directly.

    ``table``: ``across-layers-roi_<target>.csv`` rows (models with one layer are left out).
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.lines import Line2D
    d = table[table.groupby(["source_model", "randnetw"])["layer"].transform("nunique") >= 2]
    present = [r for r in rois if (d["roi"] == r).any()]
    if not present:
        raise ValueError(f"no rows for ROIs {list(rois)}")
    kinds = [rn for rn in (False, True) if (d["randnetw"].astype(bool) == rn).any()]
    models = list(dict.fromkeys(d["source_model"]))
    from matplotlib import colormaps
    cmap = colormaps["tab20" if len(models) > 10 else "tab10"]
    colors = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
    labels = [_name(m, display_names) for m in models] + (["trained (solid)", "permuted (dashed)"] if len(kinds) > 1 else [])
    legend_w = 0.75 + _text_inches(labels, 8)
    fig, axes = _grid_figure(1, len(present), (2.9, 2.5), left=0.75, right=legend_w + 0.15, top=0.45,
                             bottom=0.55, wgap=0.25, hgap=0.45, sharey=True, sharex=True,
                             title=f"{title}\n(mean over participants of the median over the ROI's voxels "
                                   "± within-subject SEM)")
    top = 0.0
    for j, roi in enumerate(present):
        ax = axes[0, j]
        bands, band_colours = [], []
        ns = []
        for rn in kinds:
            g = d[(d["roi"] == roi) & (d["randnetw"].astype(bool) == rn)]
            for m, c in g.groupby("source_model", sort=False):
                c = c.sort_values("layer_pos")
                x = c["layer_pos"].to_numpy() / max(len(c) - 1, 1)
                mu, se = c["median_r2_test_c_mean"].to_numpy(), c["median_r2_test_c_yerr"].to_numpy()
                ax.plot(x, mu, "--" if rn else "-", marker="o", ms=2.5 if not rn else 2.0, lw=1.0 if rn else 1.4,
                        color=colors[m], label=None if rn else _name(m, display_names))
                ok = np.isfinite(mu) & np.isfinite(se)
                bands.append(np.r_[np.c_[x[ok], (mu - se)[ok]], np.c_[x[ok], (mu + se)[ok]][::-1]])
                band_colours.append(colors[m])
                top = max(top, float(np.nanmax(mu + se)))
            if len(g):
                ns.append(int(g["n_participants"].max()))
        # the ± SEM bands of all models as one artist (fill_between per model costs ten times more)
        ax.add_collection(PolyCollection(bands, facecolors=band_colours, alpha=0.2, linewidths=0), autolim=False)
        ax.set_title(f"{roi}, n = {max(ns) if ns else 0}", fontsize=10)
        ax.locator_params(nbins=4)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xlabel("Relative layer position", fontsize=9)
    axes[0, 0].set_ylabel(R2C_LABEL, fontsize=9)
    axes[0, 0].set_ylim(0, top * 1.1 + 0.02)
    handles, names = axes[0, 0].get_legend_handles_labels()
    if len(kinds) > 1:
        handles += [Line2D([], [], color="0.3", lw=1.4), Line2D([], [], color="0.3", lw=1.0, ls="--")]
        names += ["trained (solid)", "permuted (dashed)"]
    top_in = (1 - fig.subplotpars.top) * fig.get_figheight()
    fig.legend(handles, names, loc="upper left", fontsize=8, frameon=False,
               bbox_to_anchor=(1 - (legend_w + 0.05) / fig.get_figwidth(), 1 - top_in / fig.get_figheight()))
    if path is not None:
        save_figure(fig, path)
    return fig


# --------------------------------------------------------------------------------------
def _corr_text(x, y, unit="models") -> str:
    r, p, n = _an.correlation_across(np.asarray(x, float), np.asarray(y, float))
    if not np.isfinite(r):
        return f"n = {n} {unit}: r undefined"
    return f"r = {r:.3f} (p = {p:.2g}), n = {n} {unit}"


def _scatter_limits(ax, x, y, identity):
    """Axis limits from 0 (or below) to the largest value; equal axes and the x = y line with
    ``identity``."""
    def span(v):
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        if not len(v):
            return 0.0, 1.0
        lo, hi = min(0.0, float(v.min())), float(v.max())
        pad = 0.06 * (hi - lo or 1.0)
        return lo - pad, hi + pad
    if identity:
        lo, hi = span(np.concatenate([np.asarray(x, float), np.asarray(y, float)]))
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--", zorder=0)
        ax.set_aspect("equal", adjustable="box")
    else:
        ax.set_xlim(*span(x))
        ax.set_ylim(*span(y))


def plot_model_scatters(table: pd.DataFrame, panels: Sequence[str] | None = None,
                        display_names: Mapping[str, str] | None = None,
                        identity: Mapping[str, bool] | bool = True, ncols: int = 4,
                        label_points: bool | None = None, title: str | None = None, path=None,
                        overlay: str | None = None, panel_column: str = "panel") -> Figure:
    """One scatter per panel, one point per model, with the Pearson r across models (and n).

    ``table``: rows ``panel, x_label, y_label, source_model, x, y`` (e.g. ``consistency.csv``, or
    seed 1 vs seed 2 per model pair). ``identity``: draw the x = y line (per panel name, or for
    all) on equal axes. ``label_points``: write each model's name beside its point (default:
    when a panel has at most 12 points). Panels of one ``comparison`` (column, if present) share
    their axis limits. Points of ``spectemp`` are drawn in its colour, points
    of permuted networks (column ``networks`` == "permuted", if present) grey.

    ``panel_column``: the column naming the figure's panels (default ``panel``). ``overlay``: a
    column whose groups share a panel (e.g. ``networks``: trained and permuted networks in one
    panel, told apart by colour), each with its own r on a line of the panel's heading.
    """
    missing = [c for c in (panel_column, overlay) if c is not None and c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing} (panel_column / overlay)")
    panels = list(dict.fromkeys(table[panel_column])) if panels is None else list(panels)
    panels = [p for p in panels if (table[panel_column] == p).any()]
    if not panels:
        raise ValueError("no panel to draw")
    group = "comparison" if "comparison" in table else None
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    lines = max(len(table.loc[table[panel_column] == p, overlay].unique()) for p in panels) if overlay else 1
    fig, axes = _grid_figure(nrows, ncols, (2.9, 2.9), left=0.65, right=0.3, top=0.4 + 0.15 * lines, bottom=0.5,
                             wgap=0.75, hgap=0.8 + 0.15 * lines, title=title)
    axes = axes.ravel()
    for ax, p in zip(axes, panels):
        d = table[table[panel_column] == p]
        heading = [str(p)]
        groups = list(d.groupby(overlay, sort=False)) if overlay else [(None, d)]
        for key, g in groups:
            permuted = "networks" in g and str(g["networks"].iloc[0]) == "permuted"
            colour = [SPECTEMP_COLOR if m == "spectemp" else ("#4a5568" if permuted else TRAINED_COLOR)
                      for m in g["source_model"]]
            ax.scatter(g["x"], g["y"], s=30, c=colour, edgecolors="white", linewidths=0.5, zorder=3)
            heading.append(f"{key}: {_corr_text(g['x'], g['y'])}" if len(groups) > 1 else _corr_text(g["x"], g["y"]))
        if label_points if label_points is not None else len(d) <= 12:
            ok = d[np.isfinite(d["x"].to_numpy(float)) & np.isfinite(d["y"].to_numpy(float))].sort_values("y")
            for i, (m, x, y) in enumerate(zip(ok["source_model"], ok["x"], ok["y"])):
                # alternate below / above, so that points close together keep readable names
                ax.annotate(_name(m, display_names), (x, y), xytext=(4, -9 if i % 2 == 0 else 4),
                            textcoords="offset points", fontsize=6.5, color="0.25")
        # one scale for the panels of one comparison (e.g. trained and permuted networks), so that
        # a panel near the floor looks it
        same = table[table[group] == d[group].iloc[0]] if group else d
        _scatter_limits(ax, same["x"], same["y"],
                        identity.get(p, True) if isinstance(identity, Mapping) else identity)
        ax.set_title("\n".join(heading), fontsize=8.5)
        ax.set_xlabel(str(d["x_label"].iloc[0]), fontsize=8.5)
        ax.set_ylabel(str(d["y_label"].iloc[0]), fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.locator_params(nbins=4)  # few ticks: they are most of a small panel's drawing time
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_layer_scatters(layers: pd.DataFrame, x: str, y: str, display_names: Mapping[str, str] | None = None,
                        xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
                        path=None) -> Figure:
    """Every layer of every model as a point (``x`` against ``y``, e.g. its across-layer score on
    NH2015 and on B2021), one colour per model, trained and permuted networks side by side; the
    Pearson r across all layers in the panel title and each model's r across its own layers in
    the legend. ``layers``: rows ``source_model, randnetw, layer_pos, <x>, <y>``."""
    from matplotlib import colormaps
    d = layers.dropna(subset=[x, y])
    versions = [rn for rn in (False, True) if (d["randnetw"].astype(bool) == rn).any()]
    if not versions:
        raise ValueError("no layer to draw")
    models = list(dict.fromkeys(d["source_model"]))
    cmap = colormaps["tab20" if len(models) > 10 else "tab10"]
    colors = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
    legend = {}
    for rn in versions:
        for m, gm in d[d["randnetw"].astype(bool) == rn].groupby("source_model", sort=False):
            r, _, _ = _an.correlation_across(gm[x].to_numpy(float), gm[y].to_numpy(float))
            name = f"{_name(m, display_names)}{' (permuted)' if rn else ''}"
            legend[rn, m] = f"{name}: r = {r:.2f}" if np.isfinite(r) else name
    # a fixed grid (the layout solver costs about a quarter of this figure), the legend to the right
    ylines, xlines = (len(str(label).split("\n")) for label in (ylabel or y, xlabel or x))
    bottom = 0.42 + 0.17 * xlines
    ncol = _legend_columns(len(legend), 3.6 + bottom - 0.3, 7.5)
    legend_w = max(ncol * (0.45 + _text_inches(legend.values(), 7.5)), _text_inches(["r across the model's layers"], 8))
    fig, axes = _grid_figure(1, len(versions), (3.8, 3.6), left=0.55 + 0.17 * ylines, right=legend_w + 0.2,
                             top=0.6, bottom=bottom, wgap=0.55 + 0.17 * ylines, hgap=0.0,
                             title=title, title_size=11)
    axes = axes[0]
    for ax, rn in zip(axes, versions):
        g = d[d["randnetw"].astype(bool) == rn]
        for m, gm in g.groupby("source_model", sort=False):
            gm = gm.sort_values("layer_pos")
            ax.plot(gm[x], gm[y], "-o", ms=4, lw=0.8, color=colors[m], label=legend[rn, m], alpha=0.9)
        _scatter_limits(ax, g[x], g[y], True)
        ax.set_title(f"{'Permuted' if rn else 'Trained'} networks\n{_corr_text(g[x], g[y], 'layers')}", fontsize=9)
        ax.set_xlabel(xlabel or x, fontsize=9)
        ax.set_ylabel(ylabel or y, fontsize=9)
        ax.locator_params(nbins=5)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    right = axes[-1].get_position().x1
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(right + 0.15 / fig.get_figwidth(),
               axes[-1].get_position().y1), fontsize=7.5, frameon=False, title="r across the model's layers",
               title_fontsize=8, borderaxespad=0, ncol=ncol)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_grouped_bars(table: pd.DataFrame, panels: Sequence[str] | None = None, ylabel: str = R2C_LABEL,
                      notes: Mapping[tuple, str] | None = None, colors: Mapping[str, str] | None = None,
                      ncols: int = 3, sharey: bool = True, title: str | None = None, path=None) -> Figure:
    """Bars in groups (e.g. each speech model trained on noisy and on clean speech, paper Fig. 8).

    ``table``: rows ``panel, group, bar, kind, mean, yerr``: one bar each, named ``bar`` under it,
    coloured by ``kind`` (``colors``), bars of one ``group`` side by side. ``notes``:
    ``{(panel, group): text}`` written above a group (e.g. the comparison's p value).
    """
    panels = list(dict.fromkeys(table["panel"])) if panels is None else list(panels)
    if not panels:
        raise ValueError("no panel to draw")
    kinds = list(dict.fromkeys(table["kind"]))
    palette = ["#2b6cb0", "#90cdf4", "#2f855a", "#9ae6b4", "#b7791f", "#fbd38d"]
    colors = dict(colors or {}) or {k: palette[i % len(palette)] for i, k in enumerate(kinds)}
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    n_bars = int(table.groupby("panel").size().max())
    width = max(6.0, max(3.4, 0.42 * n_bars + 1.6) * ncols)
    fig = _new_figure((width, 3.9 * nrows + 1.3))
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel()
    top = float(np.nanmax((table["mean"] + table["yerr"].fillna(0)).to_numpy(float)))
    for ax, p in zip(axes, panels):
        d = table[table["panel"] == p]
        x, ticks, labels = 0.0, [], []
        for g, gd in d.groupby("group", sort=False):
            xs = x + np.arange(len(gd))
            ax.bar(xs, gd["mean"], yerr=gd["yerr"], color=[colors.get(k, "grey") for k in gd["kind"]],
                   edgecolor="black", lw=0.5, capsize=2, zorder=2)
            ticks += list(xs)
            labels += list(gd["bar"])
            note = (notes or {}).get((p, g))
            if note:
                h = float(np.nanmax((gd["mean"] + gd["yerr"].fillna(0)).to_numpy(float)))
                ax.text(xs.mean(), h + 0.03 * (top or 1), note, ha="center", va="bottom", fontsize=7)
            x = xs[-1] + 1.8
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7.5)
        ax.set_title(str(p), fontsize=10)
        ax.grid(axis="y", alpha=0.3, zorder=0)
        ax.spines[["top", "right"]].set_visible(False)
        ax.axhline(0, color="black", lw=0.6)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for r in range(nrows):
        axes[r * ncols].set_ylabel(ylabel, fontsize=9)
    if sharey and np.isfinite(top):
        axes[0].set_ylim(min(0.0, float(np.nanmin(table["mean"]))), top * 1.2 + 0.02)
    from matplotlib.patches import Patch
    fig.legend([Patch(color=colors[k]) for k in kinds], kinds, loc="outside lower center", ncol=len(kinds),
               fontsize=8, frameon=False)
    if title:
        import textwrap
        fig.suptitle(textwrap.fill(title, width=int(width * 12)), fontsize=11)
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_component_predictions(table: pd.DataFrame, versions: Sequence[tuple] | None = None,
                               components: Sequence[str] | None = None,
                               scores: Mapping[tuple, float] | None = None,
                               display_names: Mapping[str, str] | None = None,
                               title: str | None = None, path=None) -> Figure:
    """Predicted vs measured response of each component over the sounds (paper Fig. 4): one row
    per model version, one panel per component, one point per sound coloured by its category,
    the component's layer and the Pearson r across the sounds in each panel.

    ``table``: rows ``source_model, randnetw, component, layer, category, measured, predicted``
    (``component-predictions_NH2015comp.csv``: the prediction at the component's most frequent
    best layer, the mean over the splits that tested the sound; sounds never tested are left
    out). ``versions``: ``(model, randnetw)`` rows to draw (default: all in ``table``).
    ``scores``: ``{(model, randnetw, component): value}`` written under r (e.g. the median R² of
    the best layer on independent splits). Panels are square, with the x = y line; a fixed grid
    (no layout solver), so that the figure stays cheap to draw.
    """
    from matplotlib.patches import Patch
    d = table.dropna(subset=["measured", "predicted"])
    d = d.assign(randnetw=d["randnetw"].astype(bool))
    if versions is None:
        versions = list(dict.fromkeys(zip(d["source_model"], d["randnetw"])))
    versions = [(m, bool(r)) for m, r in versions
                if ((d["source_model"] == m) & (d["randnetw"] == bool(r))).any()]
    if not versions:
        raise ValueError("no model version with predictions to draw")
    comps = list(dict.fromkeys(d["component"])) if components is None else list(components)
    nrows, ncols = len(versions), len(comps)
    # square panels of side `ax` inches on a fixed grid: gaps for tick labels between them
    # one scale per component (column): the measured responses are the same in every row, so only
    # the bottom row labels its x ticks (a fixed grid: no room between the rows for them)
    fig, axes = _grid_figure(nrows, ncols, (1.7, 1.7), left=0.8, right=0.15, top=0.4, bottom=0.95, wgap=0.45,
                             hgap=0.25, title=title)
    cats = [c for c in CATEGORY_COLORS if (d["category"] == c).any()]
    cats += [c for c in dict.fromkeys(d["category"]) if c not in CATEGORY_COLORS]
    shown = d[[(m, r) in set(versions) for m, r in zip(d["source_model"], d["randnetw"])]]
    span = {}
    for comp, g in shown.groupby("component", sort=False):
        v = g[["measured", "predicted"]].to_numpy(float)
        lo, hi = float(v.min()), float(v.max())
        pad = 0.06 * (hi - lo or 1.0)
        span[comp] = (lo - pad, hi + pad)
    for i, (m, rn) in enumerate(versions):
        dv = d[(d["source_model"] == m) & (d["randnetw"] == rn)]
        for j, comp in enumerate(comps):
            ax = axes[i, j]
            g = dv[dv["component"] == comp]
            x, y = g["measured"].to_numpy(float), g["predicted"].to_numpy(float)
            if len(g):
                ax.scatter(x, y, s=7, c=[CATEGORY_COLORS.get(c, "black") for c in g["category"]],
                           linewidths=0, zorder=3)
                lo, hi = span[comp]
                ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.7, ls="--", zorder=1)
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
                r = _an.correlation_across(x, y)[0]
                note = f"r = {r:.2f}" if np.isfinite(r) else "r undefined"
                sc = (scores or {}).get((m, rn, comp))
                if sc is not None and np.isfinite(sc):
                    note += f"\nR² = {sc:.2f}"
                ax.text(0.97, 0.03, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=7)
                ax.text(0.03, 0.97, str(g["layer"].iloc[0]), transform=ax.transAxes, ha="left", va="top",
                        fontsize=7, color="0.25")
            ax.set_aspect("equal", adjustable="box")
            ax.tick_params(labelsize=6.5, length=2, pad=1.5)
            ax.locator_params(nbins=4)
            ax.spines[["top", "right"]].set_visible(False)
            if i == 0:
                ax.set_title(str(comp), fontsize=10)
            if i == nrows - 1:
                ax.set_xlabel("Measured", fontsize=8)
            else:
                ax.tick_params(labelbottom=False)
            if j == 0:
                label = f"{_name(m, display_names)}{' (permuted)' if rn else ''}"
                ax.set_ylabel(f"{label}\nPredicted", fontsize=8)
    fig.legend([Patch(color=CATEGORY_COLORS.get(c, "black")) for c in cats],
               [CATEGORY_LABELS.get(c, c) for c in cats], loc="lower center", ncols=min(6, len(cats)),
               fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.0), handlelength=1.0, columnspacing=1.2)
    if path is not None:
        save_figure(fig, path)
    return fig
