"""Plain text drawn from fastenc's cached text bitmaps (figures._TextCacheRenderer) looks like
matplotlib's own text, and the caches never serve a stale bitmap or metric."""
import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from fastenc import figures


@pytest.fixture(autouse=True)
def _cold_caches():
    figures._TEXT_BITMAPS.clear()
    figures._TEXT_METRICS.clear()
    yield
    figures._TEXT_BITMAPS.clear()
    figures._TEXT_METRICS.clear()


def _draw(canvas, texts, size=(2.6, 1.6), dpi=100):
    """RGBA pixels (int) of a white figure with ``texts``: (x, y, string, kwargs) in figure coords."""
    fig = Figure(figsize=size, dpi=dpi, facecolor="white")
    canvas(fig)
    artists = [fig.text(x, y, s, **kw) for x, y, s, kw in texts]
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).astype(int), fig, artists


def _ink(rgba):
    """Ink (255 - grey level), its total and its centroid (row, column)."""
    ink = 255 - rgba[..., :3].mean(axis=2)
    total = ink.sum()
    rows, cols = np.indices(ink.shape)
    return ink, total, ((rows * ink).sum() / total, (cols * ink).sum() / total)


def _cached_strings():
    return {key[0] for key in figures._TEXT_BITMAPS}


TEXTS = [
    ("Median noise-corrected R²", dict(fontsize=9)),
    ("Hello Wg", dict(fontsize=10, rotation=90)),
    ("Layer (relative)", dict(fontsize=9, rotation=45)),
    ("Bold title", dict(fontsize=14, weight="bold")),
    ("R² ≥ 0 – x", dict(fontsize=11)),
    ("italic jq", dict(fontsize=7, style="italic", rotation=60)),
]


@pytest.mark.parametrize("text,kw", TEXTS, ids=[t for t, _ in TEXTS])
@pytest.mark.parametrize("pos", [(0.3, 0.3), (0.2371, 0.4137)], ids=["whole", "fractional"])
def test_plain_text_ink_matches_matplotlib(text, kw, pos):
    ref, _, _ = _draw(FigureCanvasAgg, [(*pos, text, kw)])
    new, fig, _ = _draw(figures._TextCacheCanvas, [(*pos, text, kw)])
    assert isinstance(fig.canvas.get_renderer(), figures._TextCacheRenderer)
    assert text in _cached_strings()  # drawn by the cached path, not matplotlib's own
    _, ink_ref, (r_ref, c_ref) = _ink(ref)
    _, ink_new, (r_new, c_new) = _ink(new)
    assert ink_ref > 1000
    # the same ink; a bitmap rotated by Agg (spline36 filter) at other than right angles is a
    # little blurred: 4-6 % more ink (so did matplotlib <= 3.10)
    oblique = kw.get("rotation", 0) % 90 != 0
    assert ink_new == pytest.approx(ink_ref, rel=0.07 if oblique else 0.01)
    assert abs(r_new - r_ref) < 0.8 and abs(c_new - c_ref) < 0.8, (r_new - r_ref, c_new - c_ref)


def test_second_draw_from_cache_is_identical():
    texts = [(0.05, 0.8, "Across models", dict(fontsize=12, weight="bold")),
             (0.05, 0.5, "Median noise-corrected R²", dict(fontsize=9)),
             (0.9, 0.1, "Layer", dict(fontsize=8, rotation=90)),
             (0.5, 0.2, "r = 0.62, p < 0.001", dict(fontsize=8, rotation=30))]
    first, _, _ = _draw(figures._TextCacheCanvas, texts)
    n = len(figures._TEXT_BITMAPS)
    assert n == len(texts)
    cached = {k: v[0].copy() for k, v in figures._TEXT_BITMAPS.items()}
    second, _, _ = _draw(figures._TextCacheCanvas, texts)
    assert len(figures._TEXT_BITMAPS) == n  # all served from the cache
    np.testing.assert_array_equal(second, first)
    for k, img in cached.items():  # a cached bitmap is not changed by later text rendering
        np.testing.assert_array_equal(figures._TEXT_BITMAPS[k][0], img)


def test_colour_comes_from_the_text_not_the_cache():
    fig = Figure(figsize=(2, 1), dpi=100, facecolor="white")
    figures._TextCacheCanvas(fig)
    t = fig.text(0.1, 0.4, "Colour", fontsize=14, color="black")
    fig.canvas.draw()
    black = np.asarray(fig.canvas.buffer_rgba()).astype(int).copy()
    t.set_color("red")
    fig.canvas.draw()
    red = np.asarray(fig.canvas.buffer_rgba()).astype(int)
    assert len(figures._TEXT_BITMAPS) == 1  # the second draw was a cache hit
    full = black[..., 0] < 30  # fully inked pixels of the black text
    assert full.sum() > 20
    assert (red[full, 0] > 225).all() and (red[full, 1] < 30).all() and (red[full, 2] < 30).all()
    # the same glyph coverage, in the new colour: green channel of red text == black text's grey
    np.testing.assert_array_equal(red[..., 1], black[..., 1])


def test_size_weight_and_alpha():
    base = (0.1, 0.4, "Size", dict(fontsize=10))
    one, _, _ = _draw(figures._TextCacheCanvas, [base])
    bigger, _, _ = _draw(figures._TextCacheCanvas, [(0.1, 0.4, "Size", dict(fontsize=12))])
    bold, _, _ = _draw(figures._TextCacheCanvas, [(0.1, 0.4, "Size", dict(fontsize=10, weight="bold"))])
    assert len(figures._TEXT_BITMAPS) == 3
    imgs = [v[0] for v in figures._TEXT_BITMAPS.values()]
    assert imgs[0].shape != imgs[1].shape and not np.array_equal(imgs[0], imgs[2])
    t1, t2, t3 = (_ink(x)[1] for x in (one, bigger, bold))
    assert t2 > 1.15 * t1 and t3 > 1.15 * t1
    faint, _, _ = _draw(figures._TextCacheCanvas, [(0.1, 0.4, "Size", dict(fontsize=10, alpha=0.5))])
    assert _ink(faint)[1] == pytest.approx(0.5 * t1, rel=0.05)


def test_font_family_rc_change_is_not_served_stale():
    sans, _, _ = _draw(figures._TextCacheCanvas, [(0.1, 0.4, "Family", dict(fontsize=12))])
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Serif"]}):
        serif_ref, _, _ = _draw(FigureCanvasAgg, [(0.1, 0.4, "Family", dict(fontsize=12))])
        serif, _, _ = _draw(figures._TextCacheCanvas, [(0.1, 0.4, "Family", dict(fontsize=12))])
    assert not np.array_equal(serif, sans)
    _, ink_ref, (r_ref, c_ref) = _ink(serif_ref)
    _, ink_new, (r_new, c_new) = _ink(serif)
    _, ink_sans, (r_sans, c_sans) = _ink(sans)
    assert ink_new == pytest.approx(ink_ref, rel=0.01) and ink_new != pytest.approx(ink_sans, rel=0.05)
    assert abs(r_new - r_ref) < 0.5 and abs(c_new - c_ref) < 0.5
    assert len(figures._TEXT_BITMAPS) == 2


@pytest.mark.parametrize("text", ["$x^2$", r"$\alpha$ = 0.05", "a $R^2_c$ b"])
def test_mathtext_falls_back_to_matplotlib(text):
    for kw in (dict(fontsize=12), dict(fontsize=10, rotation=90)):
        ref, _, _ = _draw(FigureCanvasAgg, [(0.2, 0.4, text, kw)])
        new, _, _ = _draw(figures._TextCacheCanvas, [(0.2, 0.4, text, kw)])
        np.testing.assert_array_equal(new, ref)
    assert not figures._TEXT_BITMAPS
    assert not figures._TEXT_METRICS


def test_text_width_height_descent_equal_to_agg():
    new = figures._TextCacheRenderer(200, 100, 150)
    ref = RendererAgg(200, 100, 150)
    props = [FontProperties(size=9), FontProperties(size=14, weight="bold"),
             FontProperties(size=7, style="italic"), FontProperties(family="serif", size=11)]
    for s in ["Median noise-corrected R²", "jq, Wg", "R² ≥ 0 – x", "lp"]:
        for prop in props:
            want = ref.get_text_width_height_descent(s, prop, False)
            assert new.get_text_width_height_descent(s, prop, False) == want  # computed
            assert new.get_text_width_height_descent(s, prop, False) == want  # cached
    assert len(figures._TEXT_METRICS) == 16
    for s in ["$x^2$", r"$\sum_i a_i$"]:
        prop = FontProperties(size=10)
        assert new.get_text_width_height_descent(s, prop, True) == ref.get_text_width_height_descent(s, prop, True)
    assert len(figures._TEXT_METRICS) == 16
    # another dpi is another key
    assert (figures._TextCacheRenderer(200, 100, 72).get_text_width_height_descent("lp", props[0], False)
            == RendererAgg(200, 100, 72).get_text_width_height_descent("lp", props[0], False))


def test_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(figures, "_TEXT_CACHE_MAX", 5)
    _draw(figures._TextCacheCanvas, [(0.05, 0.05 + 0.08 * i, f"line {i}", {}) for i in range(12)])
    assert 0 < len(figures._TEXT_BITMAPS) <= 5
    assert len(figures._TEXT_METRICS) <= 5


def test_fastenc_figures_use_the_cached_canvas(tmp_path):
    fig = figures._new_figure((2, 1.5))
    fig2, axes = figures._grid_figure(1, 2, (1.0, 1.0), 0.5, 0.1, 0.3, 0.4, 0.3, 0.2, title="Title")
    for f in (fig, fig2):
        assert isinstance(f.canvas, figures._TextCacheCanvas) and isinstance(f.canvas, FigureCanvasAgg)
    axes[0, 0].set_xlabel("Layer")
    out = figures.save_figure(fig2, tmp_path / "grid.png", dpi=80)
    assert out[0].stat().st_size > 0
    assert isinstance(fig2.canvas.renderer, figures._TextCacheRenderer)
    assert {"Title", "Layer"} <= _cached_strings()
