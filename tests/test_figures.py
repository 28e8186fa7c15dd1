"""Figures draw the numbers of their tables, readably (values read back from the artists)."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.lines import Line2D

from fastenc import figures


def _rsa_table():
    rows = []
    rng = np.random.default_rng(0)
    for roi, ceil in (("All", 0.6), ("Primary", 0.3), ("Lateral", 0.25)):
        for m in ("A", "B", "spectemp"):
            for rn in (False, True):
                if m == "spectemp" and rn:
                    continue
                rows.append(dict(source_model=m, randnetw=rn, roi=roi, rsa_mean=float(rng.uniform(0, 0.5)),
                                 rsa_yerr=0.01, noise_ceiling=ceil, noise_ceiling_yerr=0.02))
    return pd.DataFrame(rows)


def test_rsa_per_roi_bars_and_ceilings():
    df = _rsa_table()
    fig = figures.plot_rsa_per_roi(df, rois=("Primary", "Lateral"))
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["Primary (ceiling 0.30)", "Lateral (ceiling 0.25)"]
    for ax, roi in zip(axes, ("Primary", "Lateral")):
        order = [t.get_text() for t in ax.get_xticklabels()]
        heights = [p.get_height() for p in ax.patches if p.get_width() < 0.5]   # bars, not the band
        r = df[df["roi"] == roi]
        want = [r[(r.source_model == m) & (r.randnetw == rn)]["rsa_mean"] for rn in (False, True) for m in order]
        want = [float(w.iloc[0]) if len(w) else np.nan for w in want]
        np.testing.assert_allclose(heights, want)
        ceil = [ln.get_ydata()[0] for ln in ax.lines if isinstance(ln, Line2D) and ln.get_linestyle() == "--"]
        assert ceil == [pytest.approx(r["noise_ceiling"].iloc[0])]
    # one model order in every panel, by the trained score in the first ROI
    assert [t.get_text() for t in axes[0].get_xticklabels()] == [t.get_text() for t in axes[1].get_xticklabels()]
    p = df[(df.roi == "Primary") & ~df.randnetw].sort_values("rsa_mean", ascending=False)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == list(p["source_model"])


def test_components_one_model_order():
    scores = pd.DataFrame({"lowfreq": [0.9, 0.2, 0.5], "speech": [0.3, 0.6, 0.2]}, index=["A", "B", "C"])
    fig = figures.plot_components(scores, spectemp=None)
    orders = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes if ax.get_visible()]
    assert orders[0] == orders[1] == ["A", "B", "C"]     # by the mean: A .6, B .4, C .35 (speech alone: B, A, C)
    heights = [p.get_height() for p in fig.axes[1].patches]
    np.testing.assert_allclose(heights, [0.3, 0.6, 0.2])


def test_roi_scatter_labels_points_and_keeps_labels_inside():
    t = pd.DataFrame([dict(source_model=m, randnetw=False, roi=r, rel_pos_mean=v, rel_pos_yerr=0.02)
                      for m, vals in (("A", (0.1, 0.6, 0.7, 0.8)), ("B", (0.2, 0.5, 0.9, 0.6)))
                      for r, v in zip(("Primary", "Anterior", "Lateral", "Posterior"), vals)])
    fig = figures.plot_roi_best_layer(t)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert sorted(a.get_text() for a in ax.texts) == ["A", "B"]
    offsets = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), [[0.1, 0.6], [0.2, 0.5]])
    lo, hi = ax.get_xlim()
    assert lo > -0.03 and hi < 1.03 and ax.get_ylim() == (lo, hi)
    for a in fig.axes:
        assert a.xaxis.label.get_window_extent().y0 >= 0    # not cut off at the bottom


def test_across_models_with_published_values():
    from fastenc.constants import PUBLISHED_SCORES
    from fastenc.study.figures import _published
    long = pd.DataFrame({"model": ["New"] * 4 + ["spectemp"] * 4, "randnetw": False,
                         "subj_idx": [1, 2, 3, 4] * 2, "score": [0.6, 0.62, 0.58, 0.61, 0.3, 0.32, 0.28, 0.31]})
    pub = _published("NH2015", long["model"])
    assert pub == {m: v[0] for m, v in PUBLISHED_SCORES.items()}
    assert _published("NH2015", ["AST", "New"]) is None            # the study's models are present
    assert "SpectroTemporal" not in _published("B2021", ["New"])    # the paper gives no B2021 value
    fig = figures.plot_across_models(long, published=pub)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "New" and labels[1] == "CochResNet50-MultiTask (published)"
    hatched = [p.get_height() for p in ax.patches if p.get_hatch()]
    assert hatched == sorted(pub.values(), reverse=True)
