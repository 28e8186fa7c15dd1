"""fastenc.analysis against docs/method.md §5 constants, slow reference loops (tests/naive_analysis.py)
and scipy."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fastenc import analysis as A

from . import naive_analysis as naive


@pytest.fixture(autouse=True)
def _keep_global_stream():
    """The naive references use the global legacy stream; fastenc must not touch it."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def _subj(n_vox, n_subj):
    return np.repeat(np.arange(n_subj), -(-n_vox // n_subj))[:n_vox]


# ----------------------------------------------------------------------------- masks
def test_first_masks_match_method_constants():
    m = A.split_masks(0, 1, 3).astype(int)[0]
    assert m.tolist() == [[0, 0, 0, 1, 1, 0, 1, 1, 0, 1],
                          [1, 1, 1, 0, 1, 0, 0, 0, 1, 0],
                          [0, 1, 0, 0, 1, 1, 0, 0, 1, 1]]
    # and the literal loop agrees
    assert A.split_masks(0, 1, 3, method="loop").astype(int)[0].tolist() == m.tolist()


@pytest.mark.parametrize("seed", list(range(0, 40)) + [123, 4567, 2**31 - 1, 2**32 - 1])
def test_numba_masks_bit_identical_to_np_random_shuffle(seed):
    n = 1500
    ref = naive.naive_masks(seed, n).astype(bool)
    A.clear_mask_cache()
    got = A.split_masks(seed, 3, n // 3)  # layer-major order = shuffle order
    assert np.array_equal(got.reshape(n, 10), ref)


def test_mask_cache_prefix_and_extension():
    A.clear_mask_cache()
    small = A.split_masks(2, 2, 50)            # 100 shuffles
    big = A.split_masks(2, 30, 5000)           # extends the cached stream
    again = A.split_masks(2, 2, 50)
    assert np.array_equal(small.reshape(-1, 10), big.reshape(-1, 10)[:100])
    assert np.array_equal(small, again)
    ref = naive.naive_masks(2, 150000).astype(bool)
    assert np.array_equal(big.reshape(-1, 10), ref)
    # masks of a (L, V) are the first L*V shuffles, laid out layer-major
    m = A.split_masks(5, 4, 7)
    ref5 = naive.naive_masks(5, 28).astype(bool).reshape(4, 7, 10)
    assert np.array_equal(m, ref5)


def test_masks_always_five_of_ten():
    m = A.split_masks(7, 9, 1000)
    assert (m.sum(-1) == 5).all()


def test_global_stream_untouched():
    np.random.seed(99)
    before = np.random.get_state()[1].copy(), np.random.get_state()[2]
    A.clear_mask_cache()
    vals = np.random.RandomState(0).rand(3, 20, 10)
    np.random.seed(99)
    A.best_layer_independent_splits(vals, _subj(20, 2))
    after = np.random.get_state()
    assert np.array_equal(after[1], before[0]) and after[2] == before[1]


# ----------------------------------------------------------------------------- tie-breaking
def test_argmax_random_ties_against_naive():
    rs = np.random.RandomState(3)
    sel = rs.randint(0, 3, size=(5, 200)).astype(float)  # many ties
    sel[:, 7] = 0.4                                       # all layers tie
    sel[2, 8] = np.nan
    got = A.argmax_random_ties(sel)
    ref = naive.naive_argmax_ties(sel)
    assert got.tolist() == ref
    assert got[8] == -1


def test_argmax_no_ties_is_plain_argmax():
    sel = np.random.RandomState(1).rand(6, 300)
    assert np.array_equal(A.argmax_random_ties(sel), sel.argmax(0))


def test_ties_uniform():
    sel = np.zeros((3, 30000))
    b = A.argmax_random_ties(sel)
    frac = np.bincount(b, minlength=3) / b.size
    assert np.allclose(frac, 1 / 3, atol=0.015)


# ----------------------------------------------------------------------------- best layer
def _check_best_layer(values, subj, clip):
    res = A.best_layer_independent_splits(values, subj, clip=clip)
    scores, per_iter, vox = naive.naive_best_layer(values, subj, clip=clip)
    assert np.array_equal(res.voxel_scores, vox, equal_nan=True)
    for s in scores:
        assert res.subject_scores[s] == pytest.approx(scores[s], rel=1e-15, abs=0, nan_ok=True)
        assert [per_iter[i][s] for i in range(10)] == pytest.approx(
            res.per_iteration[s].tolist(), rel=1e-15, abs=0, nan_ok=True)
    return res


def test_best_layer_matches_naive_random():
    rs = np.random.RandomState(10)
    vals = rs.rand(4, 45, 10) * 1.3 - 0.1        # some > 1 to exercise clipping
    res = _check_best_layer(vals, _subj(45, 3), clip=True)
    assert res.per_iteration.shape == (10, 3)
    assert res.best_layer.shape == (10, 45)
    assert res.score == pytest.approx(res.subject_scores.mean())


def test_best_layer_matches_naive_with_ties_and_clipping():
    rs = np.random.RandomState(11)
    vals = rs.rand(5, 40, 10) * 1.5
    vals[:, :10, :] = 0.3                          # constant across layers and splits: all tie
    vals[:, 10:20, :] = 2.0                        # all clip to 1: all tie after clipping
    vals[:, 20:25, :] = np.round(vals[:, 20:25, :], 1)  # partial ties
    res = _check_best_layer(vals, _subj(40, 4), clip=True)
    assert (res.voxel_scores[:, :10] == 0.3).all()
    assert (res.voxel_scores[:, 10:20] == 1.0).all()
    # tied voxels pick varied layers
    assert len(np.unique(res.best_layer[:, :20])) > 1


def test_best_layer_unclipped_and_single_voxel_subjects():
    rs = np.random.RandomState(12)
    vals = rs.rand(3, 5, 10) * 2
    subj = np.array([0, 1, 2, 3, 4])              # one voxel per subject
    res = _check_best_layer(vals, subj, clip=False)
    assert res.voxel_scores.max() > 1
    assert np.allclose(res.per_iteration.to_numpy(), res.voxel_scores)


def test_best_layer_nan_propagates():
    rs = np.random.RandomState(13)
    vals = rs.rand(3, 12, 10)
    vals[1, 4, 6] = np.nan
    res = _check_best_layer(vals, _subj(12, 2), clip=True)
    assert np.isnan(res.subject_scores[0])
    assert not np.isnan(res.subject_scores[1])
    assert np.isnan(res.score)


def test_loop_and_numba_paths_agree():
    rs = np.random.RandomState(14)
    vals = rs.rand(7, 300, 10)
    vals[:, :30] = 0.5
    a = A.best_layer_independent_splits(vals, _subj(300, 5))
    b = A.best_layer_independent_splits(vals, _subj(300, 5), mask_method="loop")
    assert np.array_equal(a.voxel_scores, b.voxel_scores)
    assert np.array_equal(a.best_layer, b.best_layer)


def test_best_layer_independent_of_subject_labels_order():
    rs = np.random.RandomState(15)
    vals = rs.rand(3, 30, 10)
    subj = np.array(["b", "a", "c"] * 10)
    res = A.best_layer_independent_splits(vals, subj)
    assert list(res.subject_scores.index) == ["a", "b", "c"]


def test_spectemp_single_layer():
    rs = np.random.RandomState(16)
    vals = rs.rand(25, 10) * 1.2
    subj = _subj(25, 3)
    res = A.spectemp_independent_splits(vals, subj)
    assert (res.best_layer == 0).all()
    ref, _, _ = naive.naive_best_layer(vals[None], subj, clip=True)
    for s, v in ref.items():
        assert res.subject_scores[s] == pytest.approx(v, rel=1e-15)
    # readout over the mask-0 splits of the first n_voxels shuffles of each stream
    for i in range(10):
        m = A.split_masks(i, 1, 25)[0]
        exp = np.minimum(np.median(vals[~m].reshape(25, 5), axis=1), 1)
        assert np.array_equal(res.voxel_scores[i], exp)


def test_components():
    rs = np.random.RandomState(17)
    vals = rs.rand(4, 6, 10)
    vals[:, 0] = 0.2
    names = ["lowfreq", "highfreq", "envsounds", "pitch", "speech", "music"]
    df = A.components_independent_splits(vals, names)
    _, _, vox = naive.naive_best_layer(vals, np.arange(6), clip=False)
    assert list(df.index) == names
    assert np.array_equal(df[[f"iter_{i}" for i in range(10)]].to_numpy(), vox.T)
    assert np.allclose(df["score"], vox.mean(0), rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------- summaries
def test_voxel_summary():
    rs = np.random.RandomState(18)
    arrays = {n: rs.rand(20, 10) * 1.5 for n in ["r_test", "r2_test", "r2_test_c", "alpha"]}
    df = A.voxel_summary(arrays)
    exp_cols = [f"{s}_{n}" for n in arrays for s in ("mean", "median", "std")]
    assert list(df.columns) == exp_cols
    assert np.array_equal(df["median_r2_test_c"], np.minimum(np.median(arrays["r2_test_c"], 1), 1))
    assert df["median_r2_test_c"].max() == 1.0
    assert np.array_equal(df["median_r2_test"], np.median(arrays["r2_test"], 1))  # not clipped
    assert np.allclose(df["std_alpha"], [np.sqrt(np.mean((r - r.mean()) ** 2)) for r in arrays["alpha"]])
    with pytest.raises(ValueError):
        A.voxel_summary({"a": np.zeros((3, 10)), "b": np.zeros((4, 10))})
    with pytest.raises(ValueError):
        A.voxel_summary({"a": np.zeros(10)})


def test_within_subject_sem_against_naive():
    rs = np.random.RandomState(19)
    m = rs.rand(8, 11)
    assert np.allclose(A.within_subject_sem(m), naive.naive_within_subject_sem(m.tolist()),
                       rtol=1e-12, atol=0)
    # adding a per-subject offset does not change it
    assert np.allclose(A.within_subject_sem(m + rs.rand(8, 1) * 5), A.within_subject_sem(m))
    with pytest.raises(ValueError):
        A.within_subject_sem(m[:1])


def test_across_layer_curve():
    rs = np.random.RandomState(20)
    vals = rs.rand(6, 40)
    subj = _subj(40, 4)
    c = A.across_layer_curve(vals, subj, layer_names=list("abcdef"))
    assert c.per_subject.shape == (4, 6) and c.layers == list("abcdef")
    for s in range(4):
        assert np.array_equal(c.per_subject.loc[s].to_numpy(), np.median(vals[:, subj == s], axis=1))
    assert np.allclose(c.mean, c.per_subject.to_numpy().mean(0))
    assert np.allclose(c.sem, naive.naive_within_subject_sem(c.per_subject.to_numpy().tolist()))
    with pytest.raises(ValueError):
        A.across_layer_curve(vals, subj[:-1])
    with pytest.raises(ValueError):
        A.across_layer_curve(vals, subj, layer_names=["a"])


def test_across_models_summary():
    rows = []
    rs = np.random.RandomState(21)
    for model in ["m1", "m2", "spectemp"]:
        for rn in ([False, True] if model != "spectemp" else [False]):
            for s in range(5):
                rows.append({"model": model, "randnetw": rn, "subj_idx": s, "score": rs.rand()})
    df = pd.DataFrame(rows)
    out = A.across_models_summary(df)
    trained = out[~out.randnetw]
    assert set(trained.model) == {"m1", "m2", "spectemp"}
    assert list(trained["mean"]) == sorted(trained["mean"], reverse=True)
    wide = df[~df.randnetw].pivot(index="subj_idx", columns="model", values="score")
    sem = dict(zip(wide.columns, naive.naive_within_subject_sem(wide.to_numpy().tolist())))
    for _, r in trained.iterrows():
        assert r["sem"] == pytest.approx(sem[r["model"]])
    perm = out[out.randnetw]
    assert set(perm.model) == {"m1", "m2", "spectemp"}
    with pytest.raises(ValueError):
        A.across_models_summary(df.iloc[1:])
    with pytest.raises(ValueError):
        A.across_models_summary(df.drop(columns="score"))


def test_across_models_summary_pool():
    rs = np.random.RandomState(27)
    rows = [{"model": m, "randnetw": rn, "subj_idx": s, "score": rs.rand()}
            for m in ["m1", "m2", "m3"] for rn in (False, True) for s in range(6)]
    rows += [{"model": "spectemp", "randnetw": False, "subj_idx": s, "score": rs.rand()} for s in range(6)]
    df = pd.DataFrame(rows)
    out = A.across_models_summary(df, pool=["m1", "m2"])
    for rn in (False, True):
        panel = df[(df.randnetw == rn) | (df.model == "spectemp")]
        wide = panel.pivot(index="subj_idx", columns="model", values="score")
        pooled = wide[["m1", "m2", "spectemp"]]
        sem_pool = dict(zip(pooled.columns, naive.naive_within_subject_sem(pooled.to_numpy().tolist())))
        sem_all = dict(zip(wide.columns, naive.naive_within_subject_sem(wide.to_numpy().tolist())))
        got = out[out.randnetw == rn].set_index("model")
        for m in ("m1", "m2", "spectemp"):
            assert got.loc[m, "sem"] == pytest.approx(sem_pool[m], rel=1e-12)
            assert got.loc[m, "in_pool"] and set(got.loc[m, "pooled_models"].split(";")) == {"m1", "m2", "spectemp"}
        # a model outside the set: SEM over every condition of its panel, recorded as such
        assert got.loc["m3", "sem"] == pytest.approx(sem_all["m3"], rel=1e-12)
        assert not got.loc["m3", "in_pool"]
        assert set(got.loc["m3", "pooled_models"].split(";")) == {"m1", "m2", "m3", "spectemp"}
    # no pool: every row pooled over its whole panel (the previous behaviour)
    plain = A.across_models_summary(df)
    assert plain["in_pool"].all()


# ----------------------------------------------------------------------------- ROI
def test_best_layer_per_roi_against_naive():
    rs = np.random.RandomState(22)
    L, V = 7, 120
    split_vals = rs.rand(L, V, 10) * 1.2
    split_vals[:, :15] = 0.5                           # ties
    subj = _subj(V, 4)
    rois = np.array(["Primary", "Anterior", "Lateral", "Posterior", None, "Primary"] * 20, dtype=object)
    med = np.minimum(np.median(split_vals, 2), 1)
    t = A.best_layer_per_roi(med, subj, rois)
    t3 = A.best_layer_per_roi(split_vals, subj, rois)
    pd.testing.assert_frame_equal(t, t3)
    ref = naive.naive_roi(med, subj, rois)
    assert len(t) == len(ref)
    for _, r in t.iterrows():
        assert r["rel_pos"] == ref[(r["subj_idx"], r["roi"])]
    assert t["rel_pos"].between(0, 1).all()
    assert list(t.columns) == ["subj_idx", "roi", "rel_pos", "n_voxels"]
    with pytest.raises(ValueError):
        A.best_layer_per_roi(med[:1], subj, rois)
    with pytest.raises(ValueError):
        A.best_layer_per_roi(med, subj, rois[:-1])


def test_roi_model_table_and_wilcoxon():
    rs = np.random.RandomState(23)
    per_model = {}
    for k in range(15):
        rows = [{"subj_idx": s, "roi": roi, "rel_pos": rs.rand() * (0.6 if roi == "Primary" else 1),
                 "n_voxels": 3} for s in range(4) for roi in A.ROI_ORDER]
        per_model[f"m{k}"] = pd.DataFrame(rows)
    table = A.roi_model_table(per_model)
    assert list(table.columns) == list(A.ROI_ORDER) and list(table.index) == list(per_model)
    assert table.loc["m3", "Lateral"] == pytest.approx(
        per_model["m3"].query("roi == 'Lateral'")["rel_pos"].mean())
    w = A.roi_wilcoxon(table)
    # Primary vs each non-primary ROI, then the non-primary ROIs against each other
    assert list(zip(w["roi_1"], w["roi_2"])) == list(A.ROI_PAIRS)
    assert {("Anterior", "Lateral"), ("Anterior", "Posterior"), ("Lateral", "Posterior")} <= set(A.ROI_PAIRS)
    for _, r in w.iterrows():
        t, p = naive.naive_wilcoxon_approx(table[r["roi_1"]].tolist(), table[r["roi_2"]].tolist())
        assert r["statistic"] == pytest.approx(t)
        assert r["p_value"] == pytest.approx(p, rel=1e-10)
        assert r["n_models"] == 15
        assert r["mean_1"] == pytest.approx(table[r["roi_1"]].mean())
    with pytest.raises(ValueError):
        A.roi_wilcoxon(table.drop(columns="Lateral"))
    # a model with a NaN ROI is left out of that ROI's pairs only
    t2 = table.copy()
    t2.loc["m0", "Anterior"] = np.nan
    w2 = A.roi_wilcoxon(t2).set_index(["roi_1", "roi_2"])
    assert w2.loc[("Primary", "Anterior"), "n_models"] == 14
    assert w2.loc[("Primary", "Lateral"), "n_models"] == 15
    _, p = naive.naive_wilcoxon_approx(t2["Primary"].iloc[1:].tolist(), t2["Anterior"].iloc[1:].tolist())
    assert w2.loc[("Primary", "Anterior"), "p_value"] == pytest.approx(p, rel=1e-10)


def _roi_long(rs, models, n_subj=6, rois=A.ROI_ORDER, randnetw=(False, True)):
    rows = []
    for rn in randnetw:
        for m in models:
            for s in range(n_subj):
                for roi in rois:
                    rows.append({"source_model": m, "randnetw": rn, "subj_idx": s, "roi": roi,
                                 "rel_pos": rs.rand() * (0.5 if roi == "Primary" else 1.0)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("sem", ["subjects", "models"])
def test_roi_summary_against_naive(sem):
    rs = np.random.RandomState(30)
    models = ["m1", "m2", "m3", "m4", "other"]
    long = _roi_long(rs, models)
    pool = ["m3", "m1", "m4", "m2"]                      # "other" is not pooled
    out = A.roi_summary(long, models=pool, sem=sem)
    assert list(out.columns[:6]) == ["source_model", "randnetw", "roi", "rel_pos_mean", "rel_pos_yerr",
                                     "n_participants"]
    assert set(out["source_model"]) == set(pool)
    assert len(out) == len(pool) * 2 * 4                 # trained and permuted, 4 ROIs
    for (rn, roi), g in out.groupby(["randnetw", "roi"]):
        sub = long[(long.randnetw == rn) & (long.roi == roi)]
        ref = naive.naive_roi_summary(
            {m: dict(zip(sub[sub.source_model == m].subj_idx, sub[sub.source_model == m].rel_pos)) for m in pool},
            sem=sem)
        for _, r in g.iterrows():
            mean, err = ref[r["source_model"]]
            assert r["rel_pos_mean"] == pytest.approx(mean, rel=1e-12)
            assert r["rel_pos_yerr"] == pytest.approx(err, rel=1e-12)
            assert r["n_participants"] == 6 and r["n_models"] == 4
            assert r["pooled_models"] == "m3;m1;m4;m2"


def test_roi_summary_missing_participants_and_single_model():
    rs = np.random.RandomState(31)
    long = _roi_long(rs, ["a", "b"], randnetw=(False,))
    # participant 5 has no Lateral voxels (for every model): left out of Lateral only
    long = long[~((long.subj_idx == 5) & (long.roi == "Lateral"))]
    out = A.roi_summary(long).set_index(["source_model", "roi"])
    assert out.loc[("a", "Lateral"), "n_participants"] == 5
    assert out.loc[("a", "Primary"), "n_participants"] == 6
    exp = long[(long.source_model == "a") & (long.roi == "Lateral")].rel_pos.mean()
    assert out.loc[("a", "Lateral"), "rel_pos_mean"] == pytest.approx(exp)
    # an ROI nobody has: NaN row, 0 participants
    out2 = A.roi_summary(long[long.roi != "Anterior"]).set_index(["source_model", "roi"])
    assert np.isnan(out2.loc[("a", "Anterior"), "rel_pos_mean"])
    assert out2.loc[("a", "Anterior"), "n_participants"] == 0
    # one pooled model: no within-subject error over models
    one = A.roi_summary(long, models=["a"])
    assert one["rel_pos_yerr"].isna().all() and one["rel_pos_mean"].notna().all()
    with pytest.raises(ValueError):
        A.roi_summary(long, sem="bogus")
    with pytest.raises(ValueError):
        A.roi_summary(pd.concat([long, long.iloc[:1]]))


# ----------------------------------------------------------------------------- comparisons
def test_bootstrap_matches_sequential_global_stream():
    rs = np.random.RandomState(24)
    v1 = rs.rand(8) * 0.1 + 0.6
    v2 = rs.rand(8) * 0.1 + 0.6
    res = A.bootstrap_model_comparison(v1, v2, n_boot=2000)
    p, means = naive.naive_bootstrap(v1, v2, n_boot=2000)
    assert np.allclose(res.bootstrap_distribution, means, rtol=1e-15, atol=0)
    assert res.p_value_study == p                        # the study's raw fraction
    k = sum(1 for m in means if m >= v1.mean())
    assert res.p_value == (k + 1) / 2001 and res.n_resamples == 2000
    # never 0, even when every resample is below model 1
    far = A.bootstrap_model_comparison(v1 + 1.0, v2, n_boot=500)
    assert far.p_value_study == 0.0 and far.p_value == 1 / 501
    assert res.reference == v1.mean() and res.statistic == v2.mean()
    assert (res.mean_1, res.mean_2) == (res.reference, res.statistic)  # deprecated names, one release
    with pytest.raises(ValueError):
        A.bootstrap_model_comparison(v1, v2[:, None])


def test_permutation_component_comparison():
    rs = np.random.RandomState(25)
    a = rs.rand(10) + 0.1
    b = rs.rand(10)
    res = A.permutation_component_comparison(a, b, n_permutations=500)
    null, p, p_study = naive.naive_component_permutation(a, b, n_perm=500)
    np.testing.assert_allclose(res.null_distribution, null, rtol=0, atol=1e-15)
    assert res.statistic == pytest.approx(a.mean() - b.mean())
    assert res.p_value == p and res.p_value_study == p_study and res.n_resamples == 500
    # one-sided: model 1 below model 2 gives a large p
    rev = A.permutation_component_comparison(b, a, n_permutations=500)
    assert rev.p_value > 0.5
    # never 0: far apart
    far = A.permutation_component_comparison(a + 5, b, n_permutations=300)
    _, p_far, p_far_study = naive.naive_component_permutation(a + 5, b, n_perm=300)
    assert far.p_value_study == p_far_study == 0.0 and far.p_value == p_far == 1 / 301
    # different sizes and seeds
    c = rs.rand(7)
    r2 = A.permutation_component_comparison(a, c, n_permutations=200, seed=3)
    null2, p2, ps2 = naive.naive_component_permutation(a, c, n_perm=200, seed=3)
    np.testing.assert_allclose(r2.null_distribution, null2, rtol=0, atol=1e-15)
    assert (r2.p_value, r2.p_value_study) == (p2, ps2)
    # the deprecated names (one release): n_perm=, .observed, .null
    with pytest.warns(DeprecationWarning, match="n_permutations"):
        old = A.permutation_component_comparison(a, c, n_perm=200, seed=3)
    assert old.observed == r2.statistic and old.null is old.null_distribution and old.p_value == p2


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("shape", [(3, 10), (3, 5, 9), (0, 5, 10), (3, 0, 10)])
def test_best_layer_bad_shapes(shape):
    with pytest.raises(ValueError):
        A.best_layer_independent_splits(np.zeros(shape), np.zeros(shape[1] if len(shape) > 1 else 0))


def test_best_layer_bad_subj_and_iterations():
    v = np.zeros((2, 5, 10))
    with pytest.raises(ValueError):
        A.best_layer_independent_splits(v, np.zeros(4))
    with pytest.raises(ValueError):
        A.best_layer_independent_splits(v, np.zeros((5, 1)))
    with pytest.raises(ValueError):
        A.best_layer_independent_splits(v, np.zeros(5), n_iterations=0)
    with pytest.raises(ValueError):
        A.spectemp_independent_splits(v, np.zeros(5))
    with pytest.raises(ValueError):
        A.split_masks(0, 0, 5)


# ----------------------------------------------------------------------------- figures
def test_figures_smoke(tmp_path):
    from matplotlib.figure import Figure

    from fastenc import figures as F

    rs = np.random.RandomState(26)
    rows = [{"model": m, "randnetw": rn, "subj_idx": s, "score": rs.rand()}
            for m in ["a", "b", "c"] for rn in (False, True) for s in range(4)]
    rows += [{"model": "spectemp", "randnetw": False, "subj_idx": s, "score": 0.5} for s in range(4)]
    df = pd.DataFrame(rows)
    fig = F.plot_across_models(df, display_names={"a": "Model A"}, path=tmp_path / "models.png")  # .png: that file only
    assert isinstance(fig, Figure)
    assert (tmp_path / "models.png").stat().st_size > 0 and not (tmp_path / "models.pdf").exists()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "Model A" in labels and len(fig.axes) == 2

    subj = _subj(40, 4)
    curves = {m: A.across_layer_curve(rs.rand(5, 40), subj) for m in ["a", "b"]}
    F.plot_across_layers(curves, permuted=curves, spectemp=(0.5, 0.01), path=tmp_path / "layers")
    assert (tmp_path / "layers.png").exists()

    sc = pd.DataFrame(rs.rand(4, 6), index=["a", "b", "c", "spectemp"], columns=list("uvwxyz"))
    F.plot_components(sc, path=tmp_path / "comp")
    assert (tmp_path / "comp.pdf").exists()

    long = _roi_long(rs, list("abcdefgh"))
    summ = A.roi_summary(long)
    wide = summ[~summ.randnetw].pivot(index="source_model", columns="roi", values="rel_pos_mean")
    fig = F.plot_roi_best_layer(summ, A.roi_wilcoxon(wide), path=tmp_path / "roi")
    assert (tmp_path / "roi.png").exists() and len(fig.axes) == 3
    assert "p = " in fig.axes[0].get_title()
    F.plot_roi_best_layer(summ, randnetw=True, path=tmp_path / "roi_perm")
    assert (tmp_path / "roi_perm.pdf").exists()
    F.plot_roi_best_layer(wide, path=tmp_path / "roi_wide")      # a plain models x ROIs table
    with pytest.raises(ValueError):
        F.plot_roi_best_layer(summ[summ.roi != "Primary"])


# ----------------------------------------------------------------------------- model sets, comparison pairs
def test_model_pool_uses_the_papers_sets():
    from fastenc.study.analysis import model_pool
    from fastenc.registry import load_registry
    reg = load_registry()
    pool, label = model_pool(["VGGish", "Kell2018wordSeed2", "AST", "spectemp"], reg, "FIG_2_5_MODEL_LIST",
                             with_baseline=True)
    assert pool == ["AST", "VGGish", "spectemp"] and label.startswith("FIG_2_5_MODEL_LIST (2 of 19 present)")
    full, label = model_pool(reg.model_set("FIG_7_MODEL_LIST") + ["DS2"], reg, "FIG_7_MODEL_LIST")
    assert full == reg.model_set("FIG_7_MODEL_LIST") and label == "FIG_7_MODEL_LIST"
    demo = load_registry(manifest={"models": {m: {"layers": ["a", "b"], "storage": "h5"} for m in ("D1", "D2")}})
    pool, label = model_pool(["D1", "D2", "spectemp"], demo, "FIG_7_MODEL_LIST")
    assert pool == ["D1", "D2"] and "none of FIG_7_MODEL_LIST present" in label
    pool, _ = model_pool(["D1", "D2", "spectemp"], demo, "FIG_2_5_MODEL_LIST", with_baseline=True)
    assert pool == ["D1", "D2", "spectemp"]


def test_comparison_pairs():
    from fastenc.study.analysis import comparison_pairs
    from fastenc.registry import load_registry
    versions = [("ResNet50multitask", False), ("ResNet50multitask", True), ("Kell2018word", False),
                ("Kell2018wordClean", False), ("AST", False), ("spectemp", False)]
    pairs = comparison_pairs(versions, load_registry())
    fam = {}
    for f, a, b in pairs:
        fam.setdefault(f, []).append((a, b))
    assert fam["trained vs permuted"] == [(("ResNet50multitask", False), ("ResNet50multitask", True))]
    assert len(fam["vs spectemp"]) == 5 and all(b == ("spectemp", False) for _, b in fam["vs spectemp"])
    assert fam["ResNet50multitask vs in-house"] == [(("ResNet50multitask", False), ("Kell2018word", False))]
    assert set(fam["clean vs noisy"]) == {(("Kell2018wordClean", False), ("Kell2018word", False)),
                                          (("Kell2018word", False), ("Kell2018wordClean", False))}


def test_component_plot_layer_breaks_ties_as_the_study():
    """most_frequent_layer with layer names: the study's choice of the plotted layer (ties among
    sorted names drawn from one seed-0 stream, components in order), on iterations with many ties."""
    names = ["relu1", "conv2", "avgpool", "Block_10", "block_2"]  # sorted order differs from layer order
    state = np.random.get_state()
    try:
        for seed in range(40):
            rs = np.random.RandomState(seed)
            best = rs.randint(0, len(names), size=(10, 6))
            best[:, 0] = rs.permutation(10)[:10] % len(names)  # a component with 2 of each
            if seed % 4 == 0:
                best[:, 1] = 2  # one layer every time
            got = A.most_frequent_layer(best, layer_names=names)
            ref = naive.naive_component_plot_layer([[names[i] for i in best[:, c]] for c in range(6)])
            assert [names[i] for i in got] == ref, seed
    finally:
        np.random.set_state(state)
    # every layer chosen once (more layers than iterations): the first name in sorted order
    many = [f"layer{i}" for i in range(12)]
    assert many[A.most_frequent_layer(np.arange(10)[:, None] + 2, layer_names=many)[0]] == "layer10"
    # undefined iterations are not counted; none defined gives -1
    assert list(A.most_frequent_layer(np.array([[-1, -1], [3, -1], [3, -1]]))) == [3, -1]


def test_mean_test_prediction():
    P = np.array([[[1.0, np.nan, 3.0], [np.nan, np.nan, 5.0]]])  # 1 target, 2 splits, 3 stimuli
    mean, n = A.mean_test_prediction(P)
    np.testing.assert_array_equal(n, [[1, 0, 2]])
    np.testing.assert_array_equal(mean, [[1.0, np.nan, 4.0]])
