"""Effective dimensionality (docs/method.md §9) against numpy's eigenvalues (tests/naive_maps.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastenc.dimensionality import dimensionality_by_layer, effective_dimensionality, plot_dimensionality_vs_score
from tests import naive_maps as nv


def _acts(rng, n, p, rank=None):
    if rank is None:
        X = rng.standard_normal((n, p)) * rng.uniform(0.1, 3.0, p) + rng.uniform(-2, 2, p)
    else:
        X = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, p))
    return X


@pytest.mark.parametrize("n,p", [(165, 20), (165, 164), (165, 165), (165, 300), (40, 500)])
@pytest.mark.parametrize("opts", [dict(), dict(demean_units=False), dict(scale_units=True),
                                  dict(center_sounds=False), dict(demean_units=False, center_sounds=False)])
def test_ed_matches_numpy_eigenvalues(n, p, opts):
    rng = np.random.default_rng(n * 7 + p)
    X = _acts(rng, n, p)
    X[:, 3] = 5.0  # a constant unit (zero std: left unscaled)
    ed = effective_dimensionality(X, **opts)
    ref = nv.naive_ed(X, **opts)
    assert ed == pytest.approx(ref, rel=1e-10)
    assert 1.0 - 1e-12 <= ed <= min(n, p) + 1e-9


@pytest.mark.parametrize("p", [30, 3000])
def test_ed_matches_the_study_line(p):
    rng = np.random.default_rng(p)
    X = _acts(rng, 165, p).astype(np.float32)
    for demean in (True, False):
        assert effective_dimensionality(X, demean_units=demean) == pytest.approx(
            nv.study_cov_ed(X.astype(np.float64), demean_units=demean), rel=1e-9)


def test_ed_blocks_and_dtypes_do_not_matter():
    rng = np.random.default_rng(1)
    X = _acts(rng, 165, 1000)
    ref = effective_dimensionality(X)
    for block in (1, 7, 128, 10_000):
        assert effective_dimensionality(X, block=block) == pytest.approx(ref, rel=1e-12)
    assert effective_dimensionality(X.astype(np.float32)) == pytest.approx(
        effective_dimensionality(X.astype(np.float32).astype(np.float64)), rel=1e-12)


@pytest.mark.parametrize("p", [2, 5, 500])
def test_rank_one_is_one(p):
    rng = np.random.default_rng(p)
    w = rng.standard_normal(p) + 3
    w[0] = -w[0]  # mixed signs: z-scored columns are +-(u - mean)/sd, not all one column
    X = np.outer(rng.standard_normal(165), w)
    for opts in (dict(), dict(demean_units=False), dict(scale_units=True), dict(center_sounds=False)):
        assert effective_dimensionality(X, **opts) == pytest.approx(1.0, abs=1e-10)


def test_numerically_zero_is_nan():
    rng = np.random.default_rng(0)
    X = np.outer(rng.standard_normal(165), rng.uniform(1, 3, 50))  # z-scored: 50 copies of one unit
    assert np.isnan(effective_dimensionality(X, scale_units=True))
    assert np.isnan(effective_dimensionality(np.ones((165, 1))))
    assert effective_dimensionality(X) == pytest.approx(1.0, abs=1e-10)


def test_low_rank_and_white():
    rng = np.random.default_rng(2)
    X = _acts(rng, 165, 2000, rank=4)
    assert 1.0 < effective_dimensionality(X) <= 4.0 + 1e-9
    # equal eigenvalues -> ED = their number
    Q, _ = np.linalg.qr(rng.standard_normal((165, 165)))
    assert effective_dimensionality(Q[:, :10], demean_units=False, center_sounds=False) == pytest.approx(10, rel=1e-12)


def test_ed_degenerate_and_errors():
    assert np.isnan(effective_dimensionality(np.ones((165, 10))))
    with pytest.raises(ValueError, match="NaN"):
        X = np.zeros((165, 10)); X[3, 4] = np.nan
        effective_dimensionality(X)
    with pytest.raises(ValueError, match="2-D"):
        effective_dimensionality(np.zeros(165))


def test_by_layer_and_plot(tmp_path):
    rng = np.random.default_rng(3)

    class Src:
        layers = ["l1", "l2", "l3"]

        def load_layer(self, name):
            return _acts(np.random.default_rng(int(name[1])), 165, 50 * int(name[1]), rank=2 * int(name[1]))

    t = dimensionality_by_layer(Src())
    assert list(t["layer"]) == Src.layers and list(t["n_units"]) == [50, 100, 150]
    for row in t.itertuples():
        assert row.ed == pytest.approx(nv.naive_ed(Src().load_layer(row.layer)), rel=1e-10)
    assert t["ed"].is_monotonic_increasing
    table = pd.concat([t.assign(model="A", score=rng.random(3)), t.assign(model="B", score=rng.random(3))])
    fig = plot_dimensionality_vs_score(table, path=tmp_path / "ed")
    assert (tmp_path / "ed.png").stat().st_size > 1000 and (tmp_path / "ed.pdf").exists()
    assert fig.axes[0].get_ylabel() == "Median noise-corrected R²"


def test_dimensionality_panels_each_report_the_fit_of_their_own_layers():
    """With ``panel``, one panel per group (in order), each headed by its name and the R² of its
    own points (scipy's Pearson r), every point drawn in its panel."""
    from scipy import stats
    rng = np.random.default_rng(4)
    t = pd.DataFrame({"model": np.repeat(["A", "B", "C"], 8), "ed": rng.uniform(1, 30, 24),
                      "score": rng.uniform(0, 0.6, 24), "networks": np.tile(np.repeat(["trained", "permuted"], 4), 3)})
    fig = plot_dimensionality_vs_score(t, panel="networks", title="ED vs score")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax, name in zip(panels, ["trained", "permuted"]):
        d = t[t["networks"] == name]
        r = stats.pearsonr(d["ed"], d["score"])[0]
        assert ax.get_title().startswith(f"{name}\nR² = {r * r:.3f} (r = {r:.3f}")
        pts = np.concatenate([c.get_offsets() for c in ax.collections])
        assert sorted(map(tuple, pts)) == sorted(zip(d["ed"], d["score"]))
    with pytest.raises(ValueError, match="'kind'"):
        plot_dimensionality_vs_score(t, panel="kind")
