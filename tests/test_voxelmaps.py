"""Voxel maps (Fig. 6; METHOD §9) against the slow references of tests/naive_maps.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.io

from fastenc import voxelmaps as vm
from tests import naive_maps as nv


@pytest.fixture
def keep_global_stream():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def _meta(rng, n_vox, n_subj=4, grid=3, hemi_bytes=False):
    subj = rng.integers(1, n_subj + 1, n_vox)
    hemi = np.where(rng.random(n_vox) < 0.5, "lh", "rh")
    x = rng.integers(30, 30 + grid, n_vox) * np.where(hemi == "lh", -1, 1)
    y = rng.integers(-5, -5 + grid, n_vox)
    return pd.DataFrame({"voxel_id": np.arange(100, 100 + n_vox), "subj_idx": subj,
                         "hemi": [h.encode() for h in hemi] if hemi_bytes else hemi,
                         "x_ras": x.astype(float), "y_ras": y.astype(float)})


def _values_with_ties(rng, n_layers, n_vox, n_splits=10):
    """r2_test_c with many planted ties: exact zeros, values above 1 (tie at 1 after clipping)
    and repeated medians."""
    v = rng.uniform(-0.2, 1.4, (n_layers, n_vox, n_splits)).round(1)
    kind = rng.integers(0, 4, n_vox)
    for j in np.flatnonzero(kind == 0):  # all layers clip to 1
        v[:, j, :] = rng.uniform(1.05, 3.0, (n_layers, n_splits))
    for j in np.flatnonzero(kind == 1):  # two or three layers share the max median exactly
        k = rng.choice(n_layers, size=rng.integers(2, 4), replace=False)
        v[:, j, :] = rng.uniform(0.0, 0.4, (n_layers, n_splits))
        v[k, j, :] = 0.7
    return v


# --------------------------------------------------------------------------------------
def test_best_layer_matches_scripted_study_loop(keep_global_stream):
    rng = np.random.default_rng(1)
    L, V = 7, 400
    values = _values_with_ties(rng, L, V)
    meta = _meta(rng, V, hemi_bytes=True)
    names = [f"layer{i}" for i in range(L)]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    t = vm.voxel_best_layer(values, meta, names)
    assert np.array_equal(np.random.get_state()[1], before)  # global stream untouched
    ref = nv.naive_best_layer(values)
    n_tied = 0
    for j, (b, m) in enumerate(ref):
        meds = [min(float(np.median(values[l, j])), 1.0) for l in range(L)]
        n_tied += sum(x == max(meds) for x in meds) >= 2
        assert t["pos"].iloc[j] == b + 1
        assert t["layer"].iloc[j] == names[b]
        assert t["rel_pos"].iloc[j] == pytest.approx(b / (L - 1), abs=0)
        assert t["best_median_r2_test_c"].iloc[j] == m
    assert n_tied > 100  # the tie rule was exercised
    assert list(t.columns) == vm.VOXEL_COLUMNS
    assert set(t["hemi"]) == {"lh", "rh"}  # bytes decoded
    assert t["best_median_r2_test_c"].max() <= 1.0
    np.testing.assert_array_equal(t["voxel_id"], meta["voxel_id"])


def test_median_before_clip(keep_global_stream):
    # 10 splits: the median is the mean of the middle pair (0.8, 1.6) = 1.2 -> clipped 1.0, which beats
    # layer b's 0.95; clipping before the median would give (0.8 + 1.0)/2 = 0.9 and pick layer b
    a = [0, 0, 0, 0, 0.8, 1.6, 2, 2, 2, 2]
    values = np.array([[a], [[0.95] * 10]], dtype=float)
    meta = pd.DataFrame({"voxel_id": [0], "subj_idx": [1], "hemi": ["lh"], "x_ras": [-1], "y_ras": [2]})
    t = vm.voxel_best_layer(values, meta, ["a", "b"])
    assert t["layer"].iloc[0] == "a" and t["best_median_r2_test_c"].iloc[0] == 1.0
    assert nv.naive_best_layer(values)[0] == (0, 1.0)
    t2 = vm.voxel_best_layer(values, meta, ["a", "b"], clip=False)
    assert t2["best_median_r2_test_c"].iloc[0] == pytest.approx(1.2)


def test_best_layer_nan_policy_and_errors():
    rng = np.random.default_rng(2)
    values = rng.random((3, 5, 10))
    values[1, 2, 4] = np.nan
    meta = _meta(rng, 5)
    with pytest.raises(ValueError, match="NaN"):
        vm.voxel_best_layer(values, meta, ["a", "b", "c"])
    t = vm.voxel_best_layer(values, meta, ["a", "b", "c"], nan_policy="omit")
    assert list(t["voxel_id"]) == [100, 101, 103, 104]
    with pytest.raises(ValueError, match="layer names"):
        vm.voxel_best_layer(values, meta, ["a", "b"])
    with pytest.raises(ValueError, match="rows"):
        vm.voxel_best_layer(values, meta.iloc[:4], ["a", "b", "c"])
    one = vm.voxel_best_layer(np.nan_to_num(values)[:1], meta, ["only"])
    assert (one["pos"] == 1).all() and (one["rel_pos"] == 0).all()


# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["rel_pos", "pos", "best_median_r2_test_c"])
def test_subject_surface_matches_explicit_grouping(value):
    rng = np.random.default_rng(3)
    V = 600
    meta = _meta(rng, V, n_subj=6, grid=4)  # 2 hemis x 16 coords; subjects repeat coordinates
    t = vm.voxel_best_layer(rng.random((5, V, 10)), meta, list("abcde"))
    s = vm.average_subject_surface(t, value=value)
    ref = nv.naive_subject_surface(t.to_dict("records"), value)
    assert len(s) == len(ref)
    assert s.set_index(["hemi", "coord_id"]).index.is_unique
    for row in s.itertuples(index=False):
        med, n_subj, n_vox = ref[(row.hemi, row.coord_id)]
        assert getattr(row, value) == pytest.approx(med, abs=1e-15)
        assert row.shared_by == n_subj and row.n_voxels == n_vox
        assert row.coord_id == f"{row.x_ras}_{row.y_ras}"
    assert (s["n_voxels"] > s["shared_by"]).any()  # a subject with two voxels at a coordinate occurs
    per = vm.average_subject_surface(t, value=value, per_subject="median")
    ref2 = nv.naive_subject_surface_per_subject(t.to_dict("records"), value)
    for row in per.itertuples(index=False):
        assert getattr(row, value) == pytest.approx(ref2[(row.hemi, row.coord_id)], abs=1e-15)
    # all three values from one grouping (as the study stage takes them), each as the reference
    every = ["rel_pos", "pos", "best_median_r2_test_c"]
    for how, want in (("pool", lambda k: ref[k][0]), ("median", lambda k: ref2[k])):
        multi = vm.average_subject_surface(t, value=every, per_subject=how)
        assert list(multi.columns[-3:]) == every and len(multi) == len(ref)
        for row in multi.itertuples(index=False):
            assert getattr(row, value) == pytest.approx(want((row.hemi, row.coord_id)), abs=1e-15)


def test_subject_surface_hemisphere_is_part_of_the_key_and_int_coordinates():
    t = pd.DataFrame({"subj_idx": [1, 2, 1, 2], "hemi": [b"lh", "lh", "rh", "rh"],
                      "x_ras": [10.0, 10.7, 10.0, 10.2], "y_ras": [3.0, 3.9, 3.0, 3.0],
                      "pos": [1, 3, 5, 6]})
    s = vm.average_subject_surface(t, value="pos").set_index(["hemi", "coord_id"])
    assert s.loc[("lh", "10_3"), "pos"] == 2 and s.loc[("lh", "10_3"), "shared_by"] == 2
    assert s.loc[("rh", "10_3"), "pos"] == 5.5


def test_model_surface_median_over_models(tmp_path):
    rng = np.random.default_rng(4)
    V = 300
    meta = _meta(rng, V, n_subj=5, grid=4)
    tables, dicts, paths = [], [], []
    for m in range(5):
        L = 4 + m  # different depths: rel_pos is comparable across them
        t = vm.voxel_best_layer(rng.random((L, V, 10)), meta, [f"l{i}" for i in range(L)])
        s = vm.average_subject_surface(t)
        if m == 2:
            s.loc[s.index[:3], "rel_pos"] = np.nan
        tables.append(s)
        dicts.append({(r.hemi, r.coord_id): r.rel_pos for r in s.itertuples()})
        p = tmp_path / f"m{m}.csv"
        s.sample(frac=1.0, random_state=m).to_csv(p, index=False)  # row order may differ on disk
        paths.append(p)
    ref = nv.naive_model_surface(dicts)
    for src in (tables, paths, iter(paths)):
        out = vm.average_model_surface(src, models=[f"m{i}" for i in range(5)])
        assert len(out) == len(ref) and (out["n_models"] == 5).all()
        assert out.attrs["models"] == [f"m{i}" for i in range(5)]
        for r in out.itertuples():
            assert r.rel_pos == pytest.approx(ref[(r.hemi, r.coord_id)], abs=1e-15)
        key = ["hemi", "coord_id"]
        pd.testing.assert_frame_equal(out[key + ["x_ras", "shared_by"]].sort_values(key).reset_index(drop=True),
                                      tables[0][key + ["x_ras", "shared_by"]].sort_values(key).reset_index(drop=True),
                                      check_dtype=False)
    # two values in one pass (as the study stage takes them): each the median over models of its own
    both = [t.assign(pos2=t["rel_pos"] * 3 + i) for i, t in enumerate(tables)]
    ref_pos2 = nv.naive_model_surface([{(r.hemi, r.coord_id): r.pos2 for r in t.itertuples()} for t in both])
    out = vm.average_model_surface(both, value=["rel_pos", "pos2"])
    for r in out.itertuples():
        assert r.rel_pos == pytest.approx(ref[(r.hemi, r.coord_id)], abs=1e-15)
        assert r.pos2 == pytest.approx(ref_pos2[(r.hemi, r.coord_id)], abs=1e-14)
    bad = tables[1].iloc[1:]
    with pytest.raises(ValueError, match="other coordinates"):
        vm.average_model_surface([tables[0], bad])
    with pytest.raises(ValueError, match="no tables"):
        vm.average_model_surface([])
    np.testing.assert_array_equal(vm.study_plot_values([0.0, 0.05, 0.15, 0.449, 1.0], quantize=True),
                                  [1, 2, 2, 5, 11])  # 1.5 and 2.5 round half to even, as round()


def test_colour_scale_limit():
    t1 = pd.DataFrame({"pos": [1, 2, 3, 3]})
    t2 = pd.DataFrame({"pos": [2, 2, 4]})
    lim = vm.colour_scale_limit([t1, t2], n_layers=4)
    assert lim["argmax_pos"] == 2 and lim["argmax_pos_plus1"] == 3
    assert vm.colour_scale_limit([pd.DataFrame({"pos": [4]})], 4)["argmax_pos_plus1"] == 4


# --------------------------------------------------------------------------------------
def test_mat_export_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    V = 200
    meta = _meta(rng, V, n_subj=3, hemi_bytes=True)
    t = vm.voxel_best_layer(rng.random((6, V, 10)), meta, list("abcdef"))
    folder = tmp_path / vm.study_surface_folder("AST", "NH2015", "pos")
    paths = vm.export_surface_mat(t, folder, value="pos", model="AST")
    expected = {f"AST_{s}_{h}.mat" for s in (1, 2, 3) for h in ("lh", "rh")
                if ((t["subj_idx"] == s) & (t["hemi"] == h)).any()}
    assert {p.name for p in paths} == expected
    for p in paths:
        _, s, h = p.stem.split("_")
        sel = t[(t["subj_idx"] == int(s)) & (t["hemi"] == h)]
        d = scipy.io.loadmat(p)
        np.testing.assert_array_equal(d["vals"].ravel(), sel["pos"].to_numpy())
        np.testing.assert_array_equal(d["x_ras"].ravel(), sel["x_ras"].to_numpy().astype(np.int64))
        np.testing.assert_array_equal(d["y_ras"].ravel(), sel["y_ras"].to_numpy().astype(np.int64))
        assert d["x_ras"].dtype == np.int64
    # rel_pos per subject is written as float (the study cast only the averaged maps)
    p = vm.export_surface_mat(t, tmp_path / "rel", value="rel_pos", model="AST")[0]
    assert scipy.io.loadmat(p)["vals"].dtype == np.float64
    # averaged map: one file per hemisphere, vals truncated to int64 as the study wrote them
    s = vm.average_subject_surface(t, value="pos")
    paths = vm.export_surface_mat(s, tmp_path / "avg", value="pos", model="AST")
    assert [p.name for p in paths] == ["AST_subj-avg_lh.mat", "AST_subj-avg_rh.mat"]
    for p, h in zip(paths, ("lh", "rh")):
        sel = s[s["hemi"] == h]
        d = scipy.io.loadmat(p)
        np.testing.assert_array_equal(d["vals"].ravel(), [int(v) for v in sel["pos"]])
        np.testing.assert_array_equal(d["x_ras"].ravel(), sel["x_ras"])
    with pytest.raises(ValueError):
        vm.export_surface_mat(t.drop(columns="subj_idx"), tmp_path / "x", value="pos")


# --------------------------------------------------------------------------------------
def test_figures(tmp_path):
    rng = np.random.default_rng(6)
    V = 300
    meta = _meta(rng, V, n_subj=3, grid=8)
    names = [f"conv{i}" for i in range(1, 7)]
    t = vm.voxel_best_layer(rng.random((6, V, 10)), meta, names)
    s = vm.average_subject_surface(t, value="pos")
    vm.plot_surface_map(s, "pos", layer_names=names, title="Median subject", path=tmp_path / "pos")
    vm.plot_surface_map(s, "pos", layer_names=names, vmax=4, path=tmp_path / "pos_cap")
    vm.plot_surface_map(vm.average_subject_surface(t), "rel_pos", path=tmp_path / "rel")
    vm.plot_best_r2_map(vm.average_subject_surface(t, "best_median_r2_test_c"), path=tmp_path / "r2")
    vm.plot_layer_histogram({"A": t, "B": t.iloc[:50]}, names, path=tmp_path / "hist.png")
    for stem in ("pos", "pos_cap", "rel", "r2"):  # a path without .png / .pdf: both files
        for ext in (".png", ".pdf"):
            assert (tmp_path / f"{stem}{ext}").stat().st_size > 1000
    assert (tmp_path / "hist.png").stat().st_size > 1000 and not (tmp_path / "hist.pdf").exists()
    with pytest.raises(ValueError, match="layer_names"):
        vm.plot_surface_map(s, "pos")


def test_flat_map_puts_each_hemisphere_in_its_own_field_at_one_scale():
    """Both hemispheres in one panel: each voxel drawn at its own coordinates less its
    hemisphere's lower-left corner (minus the field's padding), the right field after the left one
    and the gap, colours from the values (pos truncated and capped as in the study's .mat)."""
    t = pd.DataFrame({"hemi": ["rh", "lh", "lh", "rh", "lh"], "x_ras": [50.0, -60.0, -41.0, 62.0, -55.0],
                      "y_ras": [-10.0, -20.0, -5.0, -30.0, -12.0], "pos": [1.0, 2.5, 4.0, 6.0, 3.0]})
    fig = vm.plot_surface_map(t, "pos", layer_names=[f"l{i}" for i in range(1, 7)], vmax=4)
    ax = fig.axes[0]
    sc = ax.collections[0]
    pad, gap = vm.FIELD_PAD_MM, vm.FIELD_GAP_MM
    lh_w = (-41.0 + pad) - (-60.0 - pad)
    offset = {"lh": 0.0, "rh": lh_w + gap}
    expected = {}
    for i, (h, x, y) in enumerate(zip(t["hemi"], t["x_ras"], t["y_ras"])):
        sel = t[t["hemi"] == h]
        expected[i] = (x - (sel["x_ras"].min() - pad) + offset[h], y - (sel["y_ras"].min() - pad))
    drawn = sc.get_offsets()
    values = np.asarray(sc.get_array())
    # the plotted points in the order of the fields (lh rows, then rh rows), each as expected
    order = [1, 2, 4, 0, 3]
    np.testing.assert_allclose(drawn, [expected[i] for i in order])
    np.testing.assert_array_equal(values, [2.0, 4.0, 3.0, 1.0, 4.0])  # 2.5 -> 2; 6 capped at 4
    fields = [p for p in ax.patches]
    assert [round(p.get_x(), 6) for p in fields] == [0.0, round(lh_w + gap, 6)]
    assert [tx.get_text() for tx in ax.texts if "hemisphere" in tx.get_text()] == ["Left hemisphere",
                                                                                   "Right hemisphere"]


def test_colour_key_labels_every_layer_that_fits_and_always_the_last():
    """A discrete key of 33 layers in a short bar labels every k-th layer and the last, without
    overlapping labels; with room, every layer; a continuous key labels its range."""
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    names = [f"layer{i}" for i in range(1, 34)]
    for height, every in ((1.5, False), (9.0, True)):
        fig = Figure(figsize=(4, height + 0.4))
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.05, 0.2 / (height + 0.4), 0.4, height / (height + 0.4)))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        key = vm.colour_key(fig, [ax], vm._map_scale("pos", np.ones(3), names, None, None, None), shrink=1.0)
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        labels = [t for t in key.texts if t.get_text().startswith("layer")]
        text = [t.get_text() for t in labels]
        assert text[0] == "layer1" and text[-1] == "layer33"
        assert (len(text) == 33) == every and len(text) >= 4
        boxes = sorted((t.get_window_extent(r) for t in labels), key=lambda b: b.y0)
        assert all(a.y1 <= b.y0 + 0.5 for a, b in zip(boxes, boxes[1:]))  # no two overlap
        # each label at the middle of its layer's colour cell
        for t in labels:
            k = names.index(t.get_text()) + 1
            assert t.get_position()[1] == k
    fig = Figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.1, 0.5, 0.8))
    key = vm.colour_key(fig, [ax], vm._map_scale("rel_pos", np.zeros(2), None, None, None, None))
    assert [t.get_text() for t in key.texts[:-1]] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]


def test_layer_histogram_counts_trained_and_permuted_side_by_side():
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 6, 200), rng.integers(1, 6, 150)
    fig = vm.plot_layer_histogram({"M": pd.DataFrame({"pos": a})}, {"M": list("ABCDE")},
                                  permuted={"M": pd.DataFrame({"pos": b})})
    ax = fig.axes[0]
    bars = [p for p in ax.patches]
    heights = np.array([p.get_height() for p in bars])
    centres = np.array([p.get_x() + p.get_width() / 2 for p in bars])
    trained, permuted = heights[:5], heights[5:]
    np.testing.assert_array_equal(trained, [np.sum(a == k) for k in range(1, 6)])
    np.testing.assert_array_equal(permuted, [np.sum(b == k) for k in range(1, 6)])
    assert np.all(centres[:5] < np.arange(1, 6)) and np.all(centres[5:] > np.arange(1, 6))
    with pytest.raises(ValueError, match="no layer names for \\['N'\\]"):
        vm.plot_layer_histogram({"M": pd.DataFrame({"pos": a})}, {"M": list("ABCDE")},
                                permuted={"N": pd.DataFrame({"pos": b})})


# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_maps(tmp_path_factory):
    import fastenc
    from fastenc.datasets import make_demo
    from fastenc.io import load_neural, open_model

    root = make_demo(tmp_path_factory.mktemp("maps") / "demo")
    nh = load_neural(root, "NH2015")
    src = open_model(root, "DemoCNN")
    values = np.stack([fastenc.score_layer(src.load_layer(l), nh.Y).r2_test_c for l in src.layers])
    return nh.roi_meta, src.layers, values


def test_demo_nonprimary_voxels_prefer_deeper_layers(demo_maps, tmp_path):
    roi_meta, layers, values = demo_maps
    t = vm.voxel_best_layer(values, roi_meta, layers)
    roi = roi_meta["roi_label_general"]
    primary = t.loc[(roi == "Primary").to_numpy(), "rel_pos"]
    nonprimary = t.loc[roi.isin(["Anterior", "Lateral", "Posterior"]).to_numpy(), "rel_pos"]
    assert len(primary) > 30 and len(nonprimary) > 60
    assert nonprimary.median() > primary.median()
    assert nonprimary.mean() > primary.mean() + 0.2
    # per participant as well (median over the participant's voxels)
    subj = t["subj_idx"].to_numpy()
    wins = 0
    for s in np.unique(subj):
        p = t.loc[(roi == "Primary").to_numpy() & (subj == s), "rel_pos"]
        q = t.loc[roi.isin(["Anterior", "Lateral", "Posterior"]).to_numpy() & (subj == s), "rel_pos"]
        wins += q.median() > p.median()
    assert wins >= 7
    # the median-subject map keeps the contrast, coordinate by coordinate
    s = vm.average_subject_surface(t.assign(primary=(roi == "Primary").to_numpy().astype(float)), value="rel_pos")
    prim = vm.average_subject_surface(t.assign(primary=(roi == "Primary").to_numpy().astype(float)), value="primary")
    assert s.loc[prim["primary"] == 1, "rel_pos"].mean() < s.loc[prim["primary"] == 0, "rel_pos"].mean()
    # the study's shared_by (precomputed in df_roi_meta, counts voxels) equals n_voxels here
    cnt = roi_meta.assign(coord_id=[f"{int(a)}_{int(b)}" for a, b in zip(roi_meta.x_ras, roi_meta.y_ras)])
    study_shared = cnt.groupby("coord_id")["shared_by"].first()
    mine = s.groupby("coord_id")["n_voxels"].sum()
    assert (study_shared.reindex(mine.index) == mine).all()
    vm.plot_surface_map(s, "rel_pos", title="DemoCNN, NH2015: median subject", path=tmp_path / "demo_rel")
    assert math.isfinite(t["best_median_r2_test_c"].mean())
