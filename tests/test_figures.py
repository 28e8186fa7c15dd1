"""Figures draw the numbers of their tables, readably (values read back from the artists)."""
import matplotlib
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


# ------------------------------------------------------------------ component predictions
def _prediction_table():
    rng = np.random.default_rng(3)
    cats = ["Music", "EngSpeech", "Nature"]
    rows = []
    for m, rn, noise in (("A", False, 0.1), ("A", True, 2.0), ("spectemp", False, 0.5)):
        for c in ("lowfreq", "speech"):
            meas = rng.standard_normal(30)
            pred = meas + noise * rng.standard_normal(30)
            pred[0] = np.nan  # a sound never tested: left out
            rows += [dict(source_model=m, randnetw=rn, component=c, layer=f"{m}-{c}", stim_id=f"s{i}",
                          category=cats[i % 3], measured=meas[i], predicted=pred[i], n_test_splits=int(i > 0))
                     for i in range(30)]
    return pd.DataFrame(rows)


def test_component_predictions_draw_each_sound_with_its_category_colour_and_r(tmp_path):
    from matplotlib.colors import to_rgba
    t = _prediction_table()
    versions = [("A", False), ("A", True), ("spectemp", False)]
    fig = figures.plot_component_predictions(t, versions=versions, scores={("A", False, "speech"): 0.81},
                                             display_names={"A": "Model A"}, title="x", path=tmp_path / "cp")
    axes = np.array(fig.axes).reshape(3, 2)
    assert [a.get_title() for a in axes[0]] == ["lowfreq", "speech"]
    assert axes[1, 0].get_ylabel().startswith("Model A (permuted)")
    for (m, rn), row in zip(versions, axes):
        for comp, ax in zip(("lowfreq", "speech"), row):
            g = t[(t.source_model == m) & (t.randnetw == rn) & (t.component == comp)].dropna()
            pts = ax.collections[0]
            np.testing.assert_allclose(pts.get_offsets(), g[["measured", "predicted"]].to_numpy())
            np.testing.assert_allclose(pts.get_facecolors(), [to_rgba(figures.CATEGORY_COLORS[c]) for c in g.category])
            texts = [x.get_text() for x in ax.texts]
            r = np.corrcoef(g.measured, g.predicted)[0, 1]
            assert any(x.startswith(f"r = {r:.2f}") for x in texts) and g["layer"].iloc[0] in texts
            assert ax.get_xlim() == ax.get_ylim()  # square, with the x = y line
    assert any("R² = 0.81" in x.get_text() for x in axes[0, 1].texts)
    legend = fig.legends[0]
    assert [x.get_text() for x in legend.get_texts()] == [figures.CATEGORY_LABELS[c] for c in
                                                           ("Music", "EngSpeech", "Nature")]
    assert (tmp_path / "cp.png").stat().st_size > 10_000 and (tmp_path / "cp.pdf").is_file()


def test_component_figure_versions_follow_fig4():
    from fastenc.study.figures import component_figure_versions
    am = pd.DataFrame({"source_model": ["B", "B", "C", "C", "spectemp"], "randnetw": [False, True, False, True, False],
                       "median_r2_test_mean": [0.5, 0.1, 0.6, 0.2, 0.3]})
    assert component_figure_versions(am) == [("C", False), ("C", True), ("spectemp", False)]
    am2 = pd.concat([am, pd.DataFrame({"source_model": ["ResNet50multitask"], "randnetw": [False],
                                       "median_r2_test_mean": [0.1]})])
    assert component_figure_versions(am2)[0] == ("ResNet50multitask", False)


def test_skipped_without_components(tmp_path):
    from pathlib import Path
    from fastenc.registry import load_registry
    from fastenc.study.figures import draw_figures
    from fastenc.study.results import StudyResults
    res = StudyResults(out=Path(tmp_path), regression_units=pd.DataFrame(), regression={})
    draw_figures(res, load_registry(), workers=1)
    assert "component-predictions_NH2015comp: the NH2015comp target" in (tmp_path / "figures" / "SKIPPED.txt").read_text()


# ------------------------------------------------------------------ saving and drawing
def test_model_scatters_overlay_puts_groups_in_one_panel_each_with_its_own_r():
    """overlay="networks": the trained and permuted rows of a comparison share a panel; each
    group's r on its own line of the heading (scipy's pearsonr), every point drawn once, grey for
    the permuted networks."""
    from scipy import stats
    rng = np.random.default_rng(2)
    rows = []
    for comp, panel in (("A vs B", "A vs B: reg"), ("trained vs permuted", "trained vs permuted: A")):
        for net in (("trained", "permuted") if comp == "A vs B" else ("trained vs permuted",)):
            for m in "MNOPQ":
                rows.append(dict(panel=f"{panel}, {net}", figure_panel=panel, comparison=comp, networks=net,
                                 x_label="x", y_label="y", source_model=m, x=rng.random(), y=rng.random()))
    t = pd.DataFrame(rows)
    fig = figures.plot_model_scatters(t, panel_column="figure_panel", overlay="networks")
    drawn = [ax for ax in fig.axes if ax.get_visible()]
    assert len(drawn) == 2
    head = drawn[0].get_title().split("\n")
    assert head[0] == "A vs B: reg"
    for line, net in zip(head[1:], ("trained", "permuted")):
        g = t[(t["figure_panel"] == "A vs B: reg") & (t["networks"] == net)]
        r, p = stats.pearsonr(g["x"], g["y"])
        assert line == f"{net}: r = {r:.3f} (p = {p:.2g}), n = 5 models"
    pts = np.concatenate([c.get_offsets() for c in drawn[0].collections])
    assert len(pts) == 10
    grey = [c for c in drawn[0].collections if np.allclose(c.get_facecolors()[:, :3], matplotlib.colors.to_rgb("#4a5568"))]
    assert len(grey) == 1 and len(grey[0].get_offsets()) == 5
    assert len(drawn[1].get_title().split("\n")) == 2  # one group: its r without a prefix
    with pytest.raises(ValueError, match="'group'"):
        figures.plot_model_scatters(t, panel_column="figure_panel", overlay="group")


def test_roi_curves_draw_each_model_trained_solid_and_permuted_dashed_in_its_roi_panel():
    """One panel per ROI; in it, every model's curve over the relative layer position (the
    table's means), solid for the trained and dashed for the permuted network."""
    rng = np.random.default_rng(5)
    rows = []
    for roi in ("Primary", "Lateral"):
        for m, L in (("A", 4), ("B", 6)):
            for rn in (False, True):
                for pos in range(L):
                    rows.append(dict(source_model=m, randnetw=rn, roi=roi, layer=f"l{pos}", layer_pos=pos,
                                     median_r2_test_c_mean=rng.random(), median_r2_test_c_yerr=0.01,
                                     n_participants=8))
    t = pd.DataFrame(rows)
    fig = figures.plot_across_layers_roi(t)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Primary, n = 8", "Lateral, n = 8"]
    for ax, roi in zip(panels, ("Primary", "Lateral")):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]
        assert len(lines) == 4
        for ln in lines:
            rn = ln.get_linestyle() == "--"
            y = np.asarray(ln.get_ydata())
            L = len(y)
            m = "A" if L == 4 else "B"
            ref = t[(t.roi == roi) & (t.source_model == m) & (t.randnetw == rn)].sort_values("layer_pos")
            np.testing.assert_allclose(ln.get_xdata(), np.arange(L) / (L - 1))
            np.testing.assert_allclose(y, ref["median_r2_test_c_mean"])
        assert sorted(ln.get_linestyle() for ln in lines) == ["-", "-", "--", "--"]


def test_pdf_reuses_the_png_layout_and_stays_on_the_page(tmp_path):
    """save_figure solves a figure's layout once (for the PNG): the PDF is drawn with those
    positions, its content inside the page, and the figure keeps its layout engine."""
    t = pd.DataFrame({"panel": ["p1"] * 3 + ["p2"] * 3, "x_label": "x " * 8, "y_label": "a long y label\nof two lines",
                      "source_model": ["A", "B", "C"] * 2, "x": [0.1, 0.5, 0.9] * 2, "y": [0.2, 0.4, 0.8] * 2})
    fig = figures.plot_model_scatters(t, title="a title")
    engine = fig.get_layout_engine()
    boxes = []
    fig.canvas.mpl_connect("draw_event", lambda ev: boxes.append((fig.get_tightbbox(ev.renderer),
                                                                   [a.get_position().bounds for a in fig.axes])))
    figures.save_figure(fig, tmp_path / "f")
    (png_box, png_pos), (pdf_box, pdf_pos) = boxes[-2:]  # (the PNG's layout pass draws once more)
    assert pdf_pos == png_pos
    w, h = fig.get_size_inches()
    assert pdf_box.x0 >= 0 and pdf_box.y0 >= 0 and pdf_box.x1 <= w and pdf_box.y1 <= h
    assert fig.get_layout_engine() is engine


def _job_writes_pid(path):
    import os
    from pathlib import Path
    Path(path).write_text(str(os.getpid()))


def _job_fails(path):
    raise ValueError(f"cannot draw {path}")


def test_figure_jobs_run_once_each_in_this_process_and_helpers(tmp_path):
    import os
    from fastenc.study.figures import MIN_JOBS_FOR_WORKERS, _run_jobs
    n = MIN_JOBS_FOR_WORKERS + 4
    jobs = [(_job_writes_pid, (tmp_path / f"j{i}",), {}) for i in range(n)]
    _run_jobs(jobs, workers=2)
    pids = [(tmp_path / f"j{i}").read_text() for i in range(n)]
    assert pids[0] == str(os.getpid())  # this process draws from the front of the list
    assert pids[-1] != str(os.getpid())  # a helper from the back
    with pytest.raises(ValueError, match="cannot draw"):
        _run_jobs(jobs[:-1] + [(_job_fails, ("x",), {})], workers=2)  # a helper's job fails
    with pytest.raises(ValueError, match="cannot draw"):
        _run_jobs([(_job_fails, ("x",), {})] + jobs, workers=2)  # this process's job fails


def test_figure_helpers_take_started_helpers_and_jobs_they_cannot_unpickle(tmp_path):
    import os
    from fastenc.study.figures import MIN_JOBS_FOR_WORKERS, FigureHelpers, _run_jobs
    n = MIN_JOBS_FOR_WORKERS + 2
    jobs = [(_job_writes_pid, (tmp_path / f"j{i}",), {}) for i in range(n)]
    jobs[-1] = (lambda p: _job_writes_pid(p), (tmp_path / "lambda",), {})  # not picklable: drawn here
    with FigureHelpers(1, nice=0) as helpers:  # (a low-priority helper may get no CPU on a busy machine)
        assert len(helpers) == 1
        _run_jobs(jobs, workers=2, helpers=helpers)
        _run_jobs(jobs[:MIN_JOBS_FOR_WORKERS], workers=2, helpers=helpers)  # helpers serve more than one call
    pids = [(tmp_path / f"j{i}").read_text() for i in range(n - 1)]
    assert (tmp_path / "lambda").read_text() == str(os.getpid())
    assert str(os.getpid()) in pids and len(set(pids)) == 2  # this process and the helper
    assert len(helpers) == 0  # closed


def _job_dies_in_a_helper(path, parent_pid):
    import os
    if os.getpid() != parent_pid:
        os._exit(3)  # as a helper killed by the system
    _job_writes_pid(path)


def test_a_helper_that_dies_loses_no_figure(tmp_path, caplog):
    import os
    from fastenc.study.figures import MIN_JOBS_FOR_WORKERS, _run_jobs
    n = MIN_JOBS_FOR_WORKERS + 2
    jobs = [(_job_writes_pid, (tmp_path / f"j{i}",), {}) for i in range(n - 1)]
    jobs.append((_job_dies_in_a_helper, (tmp_path / "dies", os.getpid()), {}))  # the helper's first job
    with caplog.at_level("WARNING", logger="fastenc.study.figures"):
        _run_jobs(jobs, workers=2)
    assert (tmp_path / "dies").read_text() == str(os.getpid())  # drawn here after the helper died
    assert all((tmp_path / f"j{i}").read_text() == str(os.getpid()) for i in range(n - 1))
    assert "ended unexpectedly" in caplog.text


def _job_writes_pid_and_nice(path):
    import os
    from pathlib import Path
    Path(path).write_text(f"{os.getpid()} {os.nice(0)}")


def test_submitted_jobs_are_drawn_in_the_background_by_a_low_priority_helper(tmp_path):
    """FigureHelpers.submit: the job is drawn at once by a helper (another process, at the nice
    value asked for), before any figure stage; a submitted job's error is raised by the figure
    stage (_run_jobs), and jobs submitted after the figure stage took the queue are drawn by it."""
    import os
    from fastenc.study.figures import HELPER_NICE, FigureHelpers, _run_jobs
    with FigureHelpers(1) as helpers:
        helpers.submit((_job_writes_pid_and_nice, (tmp_path / "a",), {}))
        helpers.wait_early()
        pid, nice = (tmp_path / "a").read_text().split()
        assert pid != str(os.getpid())
        assert int(nice) == min(19, os.nice(0) + HELPER_NICE)
        helpers.submit((_job_fails, ("early",), {}))
        helpers.wait_early()
        with pytest.raises(ValueError, match="cannot draw early"):
            _run_jobs([], helpers=helpers)
        helpers.submit((_job_writes_pid, (tmp_path / "late",), {}))  # after take_early: for the next stage
        assert not (tmp_path / "late").exists()
        _run_jobs([], helpers=helpers)
        assert (tmp_path / "late").read_text() == str(os.getpid())


def test_submitted_jobs_without_helpers_or_after_a_helper_died(tmp_path, caplog):
    """No helper (one core): submitted jobs wait and the figure stage draws them here. A helper
    that dies while drawing a submitted job: that job and the ones queued after it are drawn here."""
    import os
    from fastenc.study.figures import FigureHelpers, _run_jobs
    with FigureHelpers(0) as none:
        none.submit((_job_writes_pid, (tmp_path / "n",), {}))
        assert not (tmp_path / "n").exists()
        _run_jobs([], helpers=none)
    assert (tmp_path / "n").read_text() == str(os.getpid())
    with FigureHelpers(1, nice=0) as helpers, caplog.at_level("WARNING", logger="fastenc.study.figures"):
        helpers.submit((_job_dies_in_a_helper, (tmp_path / "dies", os.getpid()), {}))
        helpers.submit((_job_writes_pid, (tmp_path / "next",), {}))
        helpers.wait_early()
        assert helpers.live() == []
        _run_jobs([(_job_writes_pid, (tmp_path / "stage",), {})], helpers=helpers)
    for name in ("dies", "next", "stage"):
        assert (tmp_path / name).read_text() == str(os.getpid()), name
    assert "ended unexpectedly" in caplog.text


def test_remove_stale_figures(tmp_path):
    """Figures this run did not draw are removed (PNG and PDF); a PDF beside a drawn PNG and
    other files stay."""
    from fastenc.study.figures import remove_stale_figures
    for name in ("a.png", "a.pdf", "old.png", "old.pdf", "SKIPPED.txt", "notes.md"):
        (tmp_path / name).write_text("x")
    gone = remove_stale_figures(tmp_path, [tmp_path / "a.png"])
    assert sorted(p.name for p in gone) == ["old.pdf", "old.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SKIPPED.txt", "a.pdf", "a.png", "notes.md"]
    assert remove_stale_figures(tmp_path / "missing", []) == []


def test_figure_helpers_do_not_run_the_users_main_script(tmp_path):
    """A user's script without an ``if __name__ == "__main__"`` guard runs once: the helpers are new
    interpreters that import the plotting modules, not the script (multiprocessing's spawn and
    forkserver start methods would run it again in every helper)."""
    import subprocess
    import sys
    script = tmp_path / "user_script.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from pathlib import Path\n"
        "from fastenc.study.figures import MIN_JOBS_FOR_WORKERS, _run_jobs\n"
        "from jobmod import write_pid\n"
        f"out = Path({str(tmp_path)!r})\n"
        "with open(out / 'runs.txt', 'a') as f:\n"
        "    f.write('run\\n')\n"
        "_run_jobs([(write_pid, (out / f'j{i}',), {}) for i in range(MIN_JOBS_FOR_WORKERS + 2)], workers=2)\n")
    (tmp_path / "jobmod.py").write_text(
        "import os\nfrom pathlib import Path\n\ndef write_pid(p):\n    Path(p).write_text(str(os.getpid()))\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert len({(tmp_path / f"j{i}").read_text() for i in range(10)}) == 2


def test_save_figure_formats_and_no_stale_pdf(tmp_path):
    from fastenc.study.figures import figure_path
    fig = figures._new_figure((2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    assert figures.save_figure(fig, tmp_path / "a") == [tmp_path / "a.png", tmp_path / "a.pdf"]
    assert figures.save_figure(fig, tmp_path / "b.pdf") == [tmp_path / "b.pdf"]
    assert not (tmp_path / "b.png").exists() and (tmp_path / "b.pdf").read_bytes()[:5] == b"%PDF-"
    drawn = []
    assert figure_path(tmp_path, "a", True, drawn) == tmp_path / "a" and (tmp_path / "a.pdf").exists()
    # a run without PDFs removes the earlier run's PDF of the figure it draws (it would be stale)
    assert figure_path(tmp_path, "a", False, drawn) == tmp_path / "a.png" and not (tmp_path / "a.pdf").exists()
    assert drawn == [tmp_path / "a.png"] * 2


def test_saved_png_has_the_pixels_of_matplotlibs_savefig(tmp_path):
    """save_figure writes its own PNG (RGB when opaque, unfiltered rows at zlib level 3): the
    image matplotlib's savefig writes, pixel for pixel, with its dpi and Software text; a figure
    with transparent parts keeps its alpha channel. Pillow's verify() checks every chunk's CRC."""
    from PIL import Image
    for alpha in (1.0, 0.0):
        fig, axes = figures._grid_figure(1, 1, (1.8, 1.2), left=0.4, right=0.2, top=0.3, bottom=0.3, wgap=0, hgap=0)
        fig.patch.set_alpha(alpha)
        ax = axes[0, 0]
        ax.scatter([0, 1, 2], [1, 0, 2], c=[0.1, 0.5, 0.9])
        ax.set_title("R² ≥ 0")
        figures.save_figure(fig, tmp_path / "ours.png")
        fig.savefig(tmp_path / "theirs.png", dpi=150)
        ours, theirs = Image.open(tmp_path / "ours.png"), Image.open(tmp_path / "theirs.png")
        assert ours.mode == ("RGB" if alpha == 1.0 else "RGBA") and np.allclose(ours.info["dpi"], 150, atol=0.1)
        assert np.array_equal(np.asarray(ours.convert("RGBA")), np.asarray(theirs.convert("RGBA")))
        assert ours.info["Software"] == theirs.info["Software"]
        with Image.open(tmp_path / "ours.png") as im:
            im.verify()


def test_helpers_get_this_source_tree_on_their_path_but_never_site_packages_first(monkeypatch):
    import site
    from pathlib import Path

    import fastenc
    from fastenc.study.figures import _package_root
    root = Path(fastenc.__file__).resolve().parents[1]
    monkeypatch.setattr(site, "getsitepackages", lambda: ["/nonexistent/site-packages"])
    assert _package_root() == str(root)  # a source tree (or editable install): put first
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(root)])
    assert _package_root() is None  # installed: a new interpreter finds it; site-packages is not put first


def _spare_inches(fig):
    """Room left between everything drawn and the figure's edges (left, bottom, right, top), in
    inches: negative where something is cut off."""
    fig.canvas.draw()
    bb = fig.get_tightbbox(fig.canvas.get_renderer())
    w, h = fig.get_size_inches()
    return bb.x0, bb.y0, w - bb.x1, h - bb.y1


def test_fixed_grid_figures_keep_long_names_and_large_legends_inside(tmp_path):
    """The figures drawn on a fixed grid (no layout solver) size their margins from their texts:
    long layer and model names (also in the colour keys of the map pages), two-line axis labels and
    legends of 40 entries stay inside."""
    from fastenc import dimensionality, voxelmaps
    rng = np.random.default_rng(0)
    models = [f"Model{k}-with-a-long-display-name"[: 12 + k] for k in range(20)]
    names = [f"encoder.layers.{i}.fc2" for i in range(24)]
    hist = voxelmaps.plot_layer_histogram({f"{m}-trained": pd.DataFrame({"pos": rng.integers(1, 25, 300)})
                                           for m in models[-5:]}, names, title="preferred layer")
    rsa = figures.plot_rsa_per_roi(pd.DataFrame(
        [dict(roi=roi, source_model=m, randnetw=rn, rsa_mean=rng.uniform(0, 0.4), rsa_yerr=0.02,
              noise_ceiling=0.3, noise_ceiling_yerr=0.02)
         for roi in ("Primary", "Lateral") for m in models for rn in (False, True)]))
    two_lines = "B2021: median noise-corrected R²\n(mean over participants)"
    dims = dimensionality.plot_dimensionality_vs_score(
        pd.DataFrame({"model": np.repeat(models, 3), "ed": rng.uniform(1, 50, 60), "score": rng.uniform(0, 0.5, 60)}),
        title="NH2015: effective dimensionality vs prediction, every layer (trained networks)", ylabel=two_lines)
    layers = figures.plot_layer_scatters(pd.DataFrame(
        {"source_model": np.repeat(models, 4), "randnetw": np.tile([False, False, True, True], 20),
         "layer_pos": np.tile([1, 2, 1, 2], 20), "a": rng.uniform(0, 0.6, 80), "b": rng.uniform(0, 0.6, 80)}),
        "a", "b", xlabel=two_lines, ylabel=two_lines, title="each layer's score on NH2015 vs B2021")
    hist2 = voxelmaps.plot_layer_histogram({m: pd.DataFrame({"pos": rng.integers(1, 25, 300)}) for m in models[-3:]},
                                           names, permuted={m: pd.DataFrame({"pos": rng.integers(1, 25, 300)})
                                                            for m in models[-4:]})
    from fastenc.study.figures import _map_page
    n = 40
    t = pd.DataFrame({"hemi": np.repeat(["lh", "rh"], n), "x_ras": np.r_[rng.integers(-70, -30, n), rng.integers(30, 80, n)],
                      "y_ras": rng.integers(-40, 10, 2 * n), "pos": rng.integers(1, 25, 2 * n).astype(float),
                      "rel_pos": rng.random(2 * n), "best_median_r2_test_c": rng.random(2 * n)})
    maps = _map_page([("pos", t, names, 20, models[-1]), ("rel_pos", t, None, None, "Median over 20 models")],
                     "NH2015: preferred layer per voxel (median over participants per surface position), "
                     "permuted networks", tmp_path / "maps.png")
    r2 = _map_page([("best_median_r2_test_c", t, None, 0.9, m) for m in models[:3]], "best R²", tmp_path / "r2.png")
    for fig in (hist, hist2, rsa, dims, layers, maps, r2):
        assert min(_spare_inches(fig)) > -0.02, fig.texts[0].get_text() if fig.texts else fig
