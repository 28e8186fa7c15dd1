"""Figure stage: draw every figure of the study from the tables of a run.

The plotting functions live in :mod:`fastenc.figures`; this module only picks the tables of
:class:`~fastenc.study.results.StudyResults` and names the files ``<out>/figures/<name>.png``
(and ``.pdf`` on request).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis as an
from ..constants import ROI_ORDER, SPECTEMP
from .analysis import CLEAN_PAIRS, baseline
from .results import StudyResults

__all__ = ["draw_figures", "FigureHelpers", "remove_stale_figures", "version_map_job", "draw_version_maps"]

_log = logging.getLogger(__name__)

R2C = "median noise-corrected R²\n(mean over participants)"


def draw_figures(results: StudyResults, registry, workers: int | None = None, pdf: bool = False,
                 helpers: "FigureHelpers | None" = None, early=()) -> list:
    """Draw the figures of ``results`` into ``<out>/figures``; returns the PNG paths.

    ``early``: model versions ``(model, randnetw)`` whose voxel maps were already handed to
    ``helpers`` (:func:`version_map_job`, :meth:`FigureHelpers.submit`) while the study computed.

    ``pdf``: also write each figure as a PDF (about twice the drawing time). Without it, a PDF
    left beside a figure by an earlier run is removed, so that no PDF is older than its PNG.

    Figures are independent jobs: with ``workers`` > 1 they are drawn by this process and
    ``workers - 1`` helper processes (matplotlib draws on one core; see :func:`_run_jobs`), those
    of ``helpers`` (:class:`FigureHelpers`, started earlier) if given, else started here.
    Default: with ``helpers``, all of them (already started and warm, they cost nothing more to
    use; on a machine busy with other work, two processes still get a larger share of it than
    one); without, as many as there are idle cores now (:class:`_IdleCores`; at most 4), so that
    helpers are started only where they can help. Figures whose models are absent are listed
    with the reason in ``results.skipped`` and ``figures/SKIPPED.txt``.
    """
    from .. import figures as _figures  # matplotlib: imported only when drawing

    # measured while the jobs are queued; not with helpers already started (the probe's minimum
    # interval would only delay them, and a busy moment would leave them idle)
    probe = _IdleCores() if workers is None and helpers is None else None
    jobs = []
    figures = _Jobs(_figures, jobs)
    fig_dir = Path(results.out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    names = {m: registry.display_name(m) for m in registry.model_names()}
    drawn = []
    skipped = results.skipped
    skipped.clear()

    def path(name):
        return figure_path(fig_dir, name, pdf, drawn)

    for t, reg in results.regression.items():
        long = reg.subject_scores.rename(columns={"source_model": "model"})
        if len(long):
            summ = reg.across_models
            pool = list(summ.loc[summ["in_pool"], "source_model"]) if "in_pool" in summ else None
            figures.plot_across_models(long, spectemp=baseline(long["model"]), pool=pool,
                                       display_names=names, title=f"{t}: best layer on independent splits",
                                       published=_published(t, long["model"]),
                                       path=path(f"across-models_{t}"))
        if len(reg.across_layers):
            _plot_curves(figures, reg.across_layers, names, t, path)
    for t in dict.fromkeys([*results.regression, *results.rsa]):
        for prefix, tabs, what in (
                ("", results.regression.get(t), "best model stage per anatomical ROI (regression)"),
                ("rsa_", results.rsa.get(t), "best model stage per anatomical ROI (RSA, all sounds)")):
            roi = None if tabs is None else tabs.best_layer_roi
            if roi is None or not len(roi):
                continue
            for rn in (False, True):
                if (roi["randnetw"] == rn).any():
                    figures.plot_roi_best_layer(roi, pvalues=tabs.best_layer_roi_wilcoxon, randnetw=rn,
                                                display_names=names, title=f"{t}: {what}",
                                                path=path(f"{prefix}best-layer-roi{'_randnetw' if rn else ''}_{t}"))
        vox = results.voxels.get(t)
        if vox is not None and vox.across_layers_roi is not None and len(vox.across_layers_roi):
            if (vox.across_layers_roi.groupby(["source_model", "randnetw"])["layer"].transform("nunique") >= 2).any():
                figures.plot_across_layers_roi(vox.across_layers_roi, display_names=names,
                                               title=f"{t}: prediction across model stages per anatomical ROI",
                                               path=path(f"across-layers-roi_{t}"))
        r = results.rsa.get(t)
        if r is None:
            continue
        if len(r.across_models) and r.across_models["roi"].isin(ROI_ORDER).any():
            figures.plot_rsa_per_roi(r.across_models, display_names=names,
                                     spectemp=baseline(r.across_models["source_model"]),
                                     title=f"{t}: human–model RSA per anatomical ROI (each ROI's noise ceiling)",
                                     path=path(f"rsa_per-roi_{t}"))
        if len(r.across_models):
            figures.plot_rsa_across_models(r.across_models, display_names=names, title=f"{t}: human–model RSA",
                                           spectemp=baseline(r.across_models["source_model"]),
                                           path=path(f"rsa_across-models_{t}"))
        if r.roi_matrices:
            cats = r.category_order
            bounds = [0] + [i for i in range(1, len(cats)) if cats[i] != cats[i - 1]] + [len(cats)]
            figures.plot_roi_matrices(r.roi_matrices, r.roi_vs_roi, category_bounds=bounds,
                                      category_names=[cats[b] for b in bounds[:-1]],
                                      title=f"{t}: human representational similarity per ROI",
                                      path=path(f"rsa_roi-matrices_{t}"))
    dim = results.dimensionality
    if dim is not None and len(dim):
        from ..dimensionality import plot_dimensionality_vs_score
        for t in results.regression:
            col = f"score_{t}"
            d = dim.dropna(subset=["ed", col]) if col in dim else dim.iloc[:0]
            if not len(d):
                continue
            d = d.sort_values("randnetw", kind="stable").assign(
                model=[names.get(m, m) for m in d["source_model"]],
                networks=np.where(d["randnetw"].astype(bool), "Permuted networks", "Trained networks"))
            jobs.append((plot_dimensionality_vs_score, (d,), {
                "y": col, "ylabel": f"{t}: median noise-corrected R² of the layer\n(mean over participants)",
                "panel": "networks", "title": f"{t}: effective dimensionality vs prediction, every layer",
                "log_x": bool(d["ed"].max() > 10 * d["ed"].min()),  # log axis only over decades
                "path": path(f"dimensionality-vs-score_{t}")}))
    cons = results.consistency
    if cons is not None and len(cons.scores):
        d = cons.scores
        # trained and permuted networks in one panel (blue and grey), except where they are the axes
        d = d.assign(figure_panel=[p if c == "trained vs permuted" else p.rsplit(", ", 1)[0]
                                   for p, c in zip(d["panel"], d["comparison"])])
        identity = {p: c != "regression vs RSA" for p, c in zip(d["figure_panel"], d["comparison"])}
        figures.plot_model_scatters(d, display_names=names, identity=identity, panel_column="figure_panel",
                                    overlay="networks",
                                    title="Consistency across models: the headline score of each model "
                                          "(best layer; RSA over all voxels; grey: permuted networks)",
                                    path=path("consistency_across-models"))
    if cons is not None and cons.layers is not None and len(cons.layers):
        lay = cons.layers[cons.layers["source_model"] != SPECTEMP]
        if len(lay):
            figures.plot_layer_scatters(lay, "NH2015", "B2021", display_names=names,
                                        xlabel=f"NH2015: {R2C}", ylabel=f"B2021: {R2C}",
                                        title="Consistency across layers: each layer's score on NH2015 vs B2021",
                                        path=path("consistency_across-layers"))
    seeds = results.seeds
    if seeds is not None and len(seeds.scores):
        figures.plot_model_scatters(seeds.scores, display_names=names, ncols=4,
                                    title="Seed 1 vs seed 2 of each model pair (FIG2_SEED_PAIRS): headline scores",
                                    path=path("seeds_across-models"))
    else:
        skipped.append(("seeds_across-models", "no model pair of FIG2_SEED_PAIRS has both seeds present"))
    _clean_vs_noisy(results, registry, names, figures, path, skipped)
    if results.voxels:
        _voxel_figures(results.voxels, registry, names, path, skipped, jobs, early=early)
    for comp in results.components.values():
        if len(comp.across_models):
            trained = comp.across_models[~comp.across_models["randnetw"]]
            scores = trained.pivot(index="source_model", columns="component", values="median_r2_test_mean")
            errors = trained.pivot(index="source_model", columns="component", values="median_r2_test_yerr")
            figures.plot_components(scores, errors, display_names=names,
                                    spectemp=SPECTEMP if SPECTEMP in scores.index else None,
                                    path=path("components_NH2015comp"))
    _component_predictions(results, names, figures, path, skipped)
    if probe is not None:
        workers = probe.workers()
    elif workers is None:
        workers = 1 + len(helpers)
    _run_jobs(jobs, workers, helpers=helpers)
    _write_skipped(fig_dir, skipped)
    return drawn


def figure_path(fig_dir: Path, name: str, pdf: bool, drawn: list) -> Path:
    """The ``path`` to give a plotting function for figure ``name``: ``<name>.png``, or ``<name>``
    (PNG and PDF) with ``pdf``; the PNG is appended to ``drawn``. Without ``pdf`` an earlier run's
    ``<name>.pdf`` is removed (it would no longer match the PNG)."""
    drawn.append(fig_dir / f"{name}.png")
    if pdf:
        return fig_dir / name
    (fig_dir / f"{name}.pdf").unlink(missing_ok=True)
    return fig_dir / f"{name}.png"


def remove_stale_figures(fig_dir: Path, drawn) -> list:
    """Remove the figures (``*.png``, ``*.pdf``) in ``fig_dir`` that this run did not draw (e.g.
    an earlier run's maps of a model no longer present), so that the folder and ``report.html``
    show this run's results only. ``drawn``: the PNG paths drawn (a PDF stays beside its drawn
    PNG). Returns the paths removed."""
    fig_dir = Path(fig_dir)
    keep = {Path(p).stem for p in drawn}
    gone = []
    if fig_dir.is_dir():
        for p in sorted(fig_dir.iterdir()):
            if p.suffix.lower() in (".png", ".pdf") and p.is_file() and p.stem not in keep:
                p.unlink(missing_ok=True)
                gone.append(p)
    if gone:
        _log.info("removed %d figure(s) of an earlier run: %s", len(gone), ", ".join(p.name for p in gone))
    return gone


class _Jobs:
    """Stands for a plotting module: ``jobs_module.plot_x(...)`` queues ``(plot_x, args, kwargs)``."""

    def __init__(self, module, jobs):
        self._module, self._jobs = module, jobs

    def __getattr__(self, name):
        fn = getattr(self._module, name)

        def queue(*args, **kwargs):
            self._jobs.append((fn, args, kwargs))
        return queue


#: Matplotlib settings while run-all draws its figures:
#:
#: - ``axes.titley`` = 1.0 puts each panel's title at the top of its axes; the default (None)
#:   first measures every tick label of the axes to move the title above anything drawn on top of
#:   them (top x ticks, a y offset text). No figure here draws there: the demo's PNGs are
#:   pixel-identical, drawn in about 8 % less time.
#: - ``text.hinting`` = "none": glyphs rasterised as drawn, without FreeType's auto-hinter (the
#:   default, "force_autohint", snaps their outlines to the pixel grid). Text looks the same at
#:   150 dpi (a glyph's edges are a little softer); the figures are drawn in about 15 % less time.
FIGURE_RC = {"axes.titley": 1.0, "text.hinting": "none"}


def _draw(fn, args, kwargs) -> None:
    """Draw one figure job (here or in a helper process): ``fn(*args, **kwargs)`` saves the
    figure (the Figure itself is not sent back), under :data:`FIGURE_RC`."""
    import matplotlib as mpl
    with mpl.rc_context(FIGURE_RC):
        fn(*args, **kwargs)


class _IdleCores:
    """How many cores are free for drawing: measured between its creation and :meth:`workers`
    from the machine's CPU counters (``/proc/stat``: idle time of all cores) plus the CPU this
    process used meanwhile (it is about to draw, so its own core counts as free). On a machine
    busy with other work this gives 1 (draw here, no helpers: on a shared 2-core machine helpers
    only add their start-up); where the counters are not readable, the core count. At most 4."""

    MIN_INTERVAL_S = 0.2

    def __init__(self):
        import time
        self._t0, self._c0, self._idle0 = time.perf_counter(), time.process_time(), self._idle_ticks()

    @staticmethod
    def _idle_ticks():
        try:
            with open("/proc/stat", encoding="ascii") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return v[3] + v[4], sum(v[:8])  # idle + iowait, all (user ... steal)
        except (OSError, ValueError, IndexError):
            return None

    def workers(self) -> int:
        import time
        cores = min(_cores(), 4)
        if self._idle0 is None:
            return cores
        wait = self.MIN_INTERVAL_S - (time.perf_counter() - self._t0)
        if wait > 0:
            time.sleep(wait)
        idle1 = self._idle_ticks()
        dt = time.perf_counter() - self._t0
        if idle1 is None or idle1[1] <= self._idle0[1] or dt <= 0:
            return cores
        n_all = os.cpu_count() or 1
        idle = n_all * (idle1[0] - self._idle0[0]) / (idle1[1] - self._idle0[1])
        own = (time.process_time() - self._c0) / dt
        return max(1, min(cores, int(idle + own + 0.5)))


#: Nice value of the figure helpers (:class:`FigureHelpers`; Unix): while the study computes they
#: draw only with the CPU time it leaves idle (its serial steps between the parallel kernels).
#: When nothing else runs (the figure stage) a helper still gets a whole core.
HELPER_NICE = 19

#: Fewest figure jobs for which helper processes are used (below it, handing jobs out costs more
#: than it saves).
MIN_JOBS_FOR_WORKERS = 8


class HelperLost(RuntimeError):
    """A figure helper process ended while drawing (killed, out of memory): its job is drawn here."""


class FigureHelpers:
    """Helper processes that draw figure jobs (:mod:`fastenc.study.figure_worker`), started ahead
    of the figures so that their imports (about 2 s of CPU each) run while the study computes.

    ``n`` helpers (default: one per core beyond this process's, at most 3; none on one core).
    ``nice``: their nice value (Unix; default :data:`HELPER_NICE`, a low priority: while the study
    computes they only take the CPU time its own threads leave idle, so they do not slow it down;
    on a machine busy with other work they get little, and this process draws what they do not).
    :func:`run_all` starts them when it starts and closes them when it ends; :meth:`submit`
    hands them a job to draw at once, in the background (e.g. a model version's voxel maps while
    the next version computes); :func:`_run_jobs` hands them the figure stage's jobs. Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(self, n: int | None = None, nice: int | None = None):
        import threading
        from collections import deque
        if n is None:
            n = min(_cores(), 4) - 1
        self._procs = []
        self._early = deque()      # jobs of submit() not yet handed out
        self._lock = threading.Lock()
        self._feeders = {}         # helper index -> thread drawing early jobs with it
        self._dead = set()         # helpers that ended unexpectedly
        self._early_errors = []    # errors of early jobs, raised by the figure stage
        self._early_undrawn = []   # early jobs a helper could not draw (drawn by the figure stage)
        self._stopped = False
        nice = HELPER_NICE if nice is None else int(nice)
        for _ in range(max(0, int(n))):
            try:
                self._procs.append(self._start(nice))
            except OSError as exc:  # no helper: the figures are drawn in this process
                _log.warning("could not start a figure helper process (%s); drawing in this process", exc)
                break

    @staticmethod
    def _start(nice: int):
        import pickle
        import subprocess
        import sys
        env = dict(os.environ)
        root = _package_root()
        if root is not None:  # this fastenc, from a source tree: first on the helper's path
            env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["FASTENC_FIGURE_HELPER_NICE"] = str(nice)
        proc = subprocess.Popen([sys.executable, "-m", "fastenc.study.figure_worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)
        pickle.dump(("path", list(sys.path)), proc.stdin)  # the jobs' functions import as they do here
        proc.stdin.flush()
        return proc

    def __len__(self) -> int:
        return len(self._procs)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def live(self) -> list:
        """Indices of the helpers still running."""
        return [k for k in range(len(self._procs)) if k not in self._dead]

    def submit(self, job) -> None:
        """Draw ``job`` = ``(fn, args, kwargs)`` now, in the background, with the first free
        helper; without helpers (or after :meth:`take_early`) it waits for the figure stage
        (:func:`_run_jobs` draws it). Its error, if any, is raised by the figure stage."""
        import threading
        with self._lock:
            self._early.append(job)
            if self._stopped:
                return
            for k in self.live():
                if k not in self._feeders:
                    t = threading.Thread(target=self._feed_early, args=(k,), daemon=True,
                                         name=f"fastenc-figure-helper-{k}")
                    self._feeders[k] = t
                    t.start()
                    break

    def _feed_early(self, k: int) -> None:
        while True:
            with self._lock:
                if self._stopped or not self._early:
                    del self._feeders[k]
                    return
                job = self._early.popleft()
            try:
                if not self.draw(k, job):
                    self._early_undrawn.append(job)
            except HelperLost as exc:
                _log.warning("%s; its figures are drawn in this process", exc)
                with self._lock:
                    self._dead.add(k)
                    self._early_undrawn.append(job)
                    self._early_undrawn.extend(self._early)  # the others wait for the figure stage
                    self._early.clear()
                    del self._feeders[k]
                return
            except BaseException as exc:
                self._early_errors.append(exc)

    def take_early(self) -> list:
        """Stop drawing submitted jobs in the background: returns those not started yet (the
        figure stage draws them); the ones being drawn finish (:meth:`wait_early`)."""
        with self._lock:
            self._stopped = True
            rest = list(self._early)
            self._early.clear()
        return rest

    def wait_early(self, k: int | None = None) -> None:
        """Wait until helper ``k`` (default: every helper) has finished its background job."""
        with self._lock:
            threads = list(self._feeders.values()) if k is None else [self._feeders.get(k)]
        for t in threads:
            if t is not None:
                t.join()

    def early_outcome(self) -> tuple[list, list]:
        """``(errors, undrawn jobs)`` of the background jobs (after :meth:`wait_early`); each is
        reported once."""
        with self._lock:
            out = list(self._early_errors), list(self._early_undrawn)
            self._early_errors.clear()
            self._early_undrawn.clear()
        return out

    def draw(self, k: int, job) -> bool:
        """Draw ``job`` with helper ``k``; True when drawn, False when the job cannot be sent to or
        unpickled by a helper (draw it here). A failed job's error is raised here."""
        import pickle
        try:
            payload = pickle.dumps(job)
        except Exception:  # e.g. a lambda: not for a helper
            return False
        proc = self._procs[k]
        try:
            pickle.dump(("job", payload), proc.stdin)
            proc.stdin.flush()
            kind, value = pickle.load(proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise HelperLost(f"figure helper process {proc.pid} ended unexpectedly "
                             f"(exit code {proc.poll()})") from exc
        if kind == "error":
            raise pickle.loads(value)
        return kind == "ok"

    def close(self, wait: bool = True) -> None:
        """End the helpers: each finishes the job it is drawing and exits. ``wait``: until they
        have exited; else they exit on their own, and a later ``close()`` reaps them."""
        import subprocess
        self.take_early()
        if wait:
            self.wait_early()
        for proc in self._procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        if not wait:
            return
        procs, self._procs = self._procs, []
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


#: Allocations between two collections of the youngest generation while figures are drawn
#: (Python's default is 700). Matplotlib makes many short-lived objects in reference cycles, and
#: at the default the collector took about 13 % of the drawing time of run-all's figures.
GC_THRESHOLD_WHILE_DRAWING = 20_000


@contextmanager
def fewer_collections():
    """Run the cyclic garbage collector less often inside the block (:data:`GC_THRESHOLD_WHILE_DRAWING`);
    the thresholds are restored after it."""
    import gc
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_THRESHOLD_WHILE_DRAWING), max(old[1], 20), old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _package_root() -> str | None:
    """The folder holding this ``fastenc`` package when that is not a site-packages folder (a
    source tree, an editable install, a path a script put on ``sys.path``), so that a helper
    imports the same fastenc; None when it is installed (a new interpreter finds it anyway, and
    putting site-packages ahead of the standard library on its path could shadow modules)."""
    import site
    root = Path(__file__).resolve().parents[2]
    installed = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    installed.append(site.getusersitepackages())
    if any(root == Path(p).resolve() for p in installed if p):
        return None
    return str(root)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_jobs(jobs, workers=None, helpers: FigureHelpers | None = None) -> None:
    """Draw the figure ``jobs`` with ``workers`` processes in all: this one and ``workers - 1``
    helpers (default: one per core, at most 4), those of ``helpers`` if given (already started),
    else new ones. This process starts at once from the front of the list; each helper takes the
    next job from the back, where the costly voxel-map pages are queued, as it finishes one (after
    the job it may be drawing for :meth:`FigureHelpers.submit`; submitted jobs not started yet join
    the back of the list). With fewer than :data:`MIN_JOBS_FOR_WORKERS` jobs, or ``workers`` <= 1,
    everything is drawn here. A job's error (a submitted job's too) is raised here (the jobs not
    yet started are dropped)."""
    import threading
    from collections import deque

    early = helpers.take_early() if helpers is not None else []
    jobs = list(jobs) + early
    workers = min(_cores(), 4) if workers is None else int(workers)
    workers = min(workers, len(jobs))
    if workers <= 1 or len(jobs) < MIN_JOBS_FOR_WORKERS:
        if helpers is not None:
            helpers.wait_early()
            _raise_early(helpers, jobs)
        with fewer_collections():
            for fn, args, kwargs in jobs:
                _draw(fn, args, kwargs)
        return
    own = helpers is None
    if own:  # started for these jobs only: at the usual priority
        helpers = FigureHelpers(workers - 1, nice=0)
    pending = deque(jobs)  # pop / popleft are atomic: the helpers' threads and this one share it
    local = deque()        # jobs a helper could not take (not picklable): drawn here
    errors = []

    def feed(k):
        helpers.wait_early(k)
        while not errors:
            try:
                job = pending.pop()
            except IndexError:
                return
            try:
                if not helpers.draw(k, job):
                    local.append(job)
            except HelperLost as exc:  # this helper is gone: its job and the rest are drawn here
                _log.warning("%s; its figures are drawn in this process", exc)
                local.append(job)
                return
            except BaseException as exc:
                errors.append(exc)
                pending.clear()  # a job failed: start no more

    threads = [threading.Thread(target=feed, args=(k,), daemon=True) for k in helpers.live()[:workers - 1]]
    try:
        for t in threads:
            t.start()
        try:
            with fewer_collections():
                while not errors:
                    try:
                        job = pending.popleft()
                    except IndexError:
                        break
                    _draw(*job)
        except BaseException:
            pending.clear()
            raise
        finally:
            for t in threads:
                t.join()
            helpers.wait_early()
        if errors:
            raise errors[0]
        _raise_early(helpers, local)
        with fewer_collections():
            for job in local:
                _draw(*job)
    finally:
        if own:
            helpers.close()


def _raise_early(helpers: FigureHelpers, local) -> None:
    """Raise the first error of the jobs :meth:`FigureHelpers.submit` drew in the background; add
    those no helper could draw to ``local``."""
    errors, undrawn = helpers.early_outcome()
    if errors:
        raise errors[0]
    local.extend(undrawn)


#: The model whose component predictions the paper shows (Fig. 4: trained, permuted, and SpectroTemporal).
FIG4_MODEL = "ResNet50multitask"


def component_figure_versions(across_models: pd.DataFrame) -> list:
    """The model versions of the predicted-vs-measured component figure, as in the paper's Fig. 4:
    ResNet50multitask (else the trained model with the best mean component score), trained and
    permuted, and the SpectroTemporal baseline; those present, in that order."""
    d = across_models.assign(randnetw=across_models["randnetw"].astype(bool))
    have = set(zip(d["source_model"], d["randnetw"]))
    nets = d[d["source_model"] != SPECTEMP]
    featured = None
    if (FIG4_MODEL, False) in have or (FIG4_MODEL, True) in have:
        featured = FIG4_MODEL
    elif len(nets):
        pref = nets[~nets["randnetw"]] if (~nets["randnetw"]).any() else nets
        mean = pref.groupby("source_model", sort=False)["median_r2_test_mean"].mean()
        featured = mean.index[int(np.argmax(mean.to_numpy()))]
    out = [(featured, rn) for rn in (False, True) if featured is not None and (featured, rn) in have]
    return out + ([(SPECTEMP, False)] if (SPECTEMP, False) in have else [])


def _component_predictions(results, names, figures, path, skipped) -> None:
    """Paper Fig. 4: each component's predicted vs measured response over the sounds, at its most
    frequent best layer, for the versions of :func:`component_figure_versions`."""
    from ..constants import COMPONENT_TARGET
    if COMPONENT_TARGET not in results.components:
        skipped.append((f"component-predictions_{COMPONENT_TARGET}",
                        f"the {COMPONENT_TARGET} target (data/neural/{COMPONENT_TARGET}) was not run"))
        return
    for t, comp in results.components.items():
        pred, am = comp.predictions, comp.across_models
        versions = component_figure_versions(am) if pred is not None and len(pred) else []
        if not versions:
            skipped.append((f"component-predictions_{t}", "no model version with stored component predictions"))
            continue
        key = list(zip(pred["source_model"], pred["randnetw"].astype(bool)))
        rows = pred[[k in set(versions) for k in key]]
        scores = {(m, bool(r), c): v for m, r, c, v in
                  zip(am["source_model"], am["randnetw"], am["component"], am["median_r2_test_mean"])}
        figures.plot_component_predictions(
            rows, versions=versions, scores=scores, display_names=names,
            title=f"{t}: predicted vs measured response of each component at its most frequent best layer "
                  "(mean over the test splits of each sound; R²: best layer on independent splits)",
            path=path(f"component-predictions_{t}"))


def _published(target, models):
    """The paper's values for ``target`` (docs/method.md §7) when none of the study's own models
    (other than the SpectroTemporal baseline) is among ``models``: a new model is then shown
    against them, marked as published. None otherwise."""
    from ..constants import PUBLISHED_SCORES, SPECTEMP
    from ..registry import load_registry
    study = set(load_registry().model_names()) - {SPECTEMP}
    col = {"NH2015": 0, "B2021": 1}.get(target)
    if col is None or study & set(models):
        return None
    return {name: v[col] for name, v in PUBLISHED_SCORES.items() if v[col] is not None}


def _write_skipped(fig_dir: Path, skipped: list) -> None:
    p = fig_dir / "SKIPPED.txt"
    if not skipped:
        p.unlink(missing_ok=True)
        return
    lines = ["Figures not drawn in this run, and why (they need models that are not present).", ""]
    lines += [f"{name}: {why}" for name, why in skipped]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def version_map_name(model: str, randnetw: bool) -> str:
    """File name (no suffix) of one model version's voxel maps."""
    return f"voxel-maps_{model}{'_randnetw' if randnetw else ''}"


def version_label(model: str, randnetw: bool, names: dict) -> str:
    return f"{names.get(model, model)}{' (permuted)' if randnetw else ''}"


def version_map_job(plan, model: str, randnetw: bool, pdf: bool = False):
    """The job drawing the voxel maps of one model version from its stored units
    (:func:`draw_version_maps`), for :meth:`FigureHelpers.submit` as soon as the version's
    regression is done; None when no target of ``plan`` has voxel coordinates."""
    from .voxels import voxel_targets
    targets = [(t, plan.bundles[t].voxel_meta, np.asarray(plan.bundles[t].kept, bool)) for t in voxel_targets(plan)]
    if not targets:
        return None
    path = figure_path(Path(plan.out) / "figures", version_map_name(model, randnetw), pdf, [])
    path.parent.mkdir(parents=True, exist_ok=True)
    return (draw_version_maps, (str(plan.out), model, bool(randnetw), list(plan.registry.layers(model)), targets,
                                version_label(model, randnetw, {model: plan.registry.display_name(model)}), path), {})


def draw_version_maps(out, model: str, randnetw: bool, layers, targets, label: str, path):
    """One model version's voxel maps (:func:`_version_page`) computed from its stored units
    (:func:`fastenc.study.voxels.version_surfaces`: the numbers of the voxel stage's tables)."""
    from .voxels import version_surfaces
    surfs, limit = version_surfaces(out, model, randnetw, layers, targets)
    return _version_page(surfs, layers, limit, label, path)


def _version_page(surfs: dict, layers, limit: int, label: str, path):
    """Fig. 6 for one model version: per neural target the preferred layer of each surface
    position (the median participant; the study's colour scale, capped at ``limit``, the layer
    after the most preferred one), then per target the median noise-corrected R² at the best
    layer (0 to 1). A version with one layer has no layer map (every voxel prefers it)."""
    rows = []
    if len(layers) >= 2:
        rows += [("pos", surf, list(layers), int(limit), f"{t}: preferred layer") for t, surf in surfs.items()]
    rows += [("best_median_r2_test_c", surf, None, 1.0, f"{t}: median noise-corrected R² at the best layer")
             for t, surf in surfs.items()]
    what = "each voxel's preferred layer and its score there" if len(layers) >= 2 else \
        "each voxel's score (one layer: no layer map)"
    return _map_page(rows, f"{label}: {what} (median over participants per surface position)", path)


def _voxel_figures(voxels: dict, registry, names, path, skipped, jobs, early=()) -> None:
    """Fig. 6 in Python: per model version its voxel maps (:func:`_version_page`; not for the
    versions in ``early``, drawn while the study computed, but named in the figure list); the
    median over models (relative position) per target, trained and permuted; preferred-layer
    histograms per target. Queues the drawing in ``jobs``."""
    from .. import voxelmaps as vm

    versions = list(dict.fromkeys((m, bool(r)) for vox in voxels.values()
                                  for m, r in zip(vox.subject_surface["source_model"], vox.subject_surface["randnetw"])))
    for m, rn in versions:
        p = path(version_map_name(m, rn))
        if (m, rn) in early:
            continue
        surfs, limit = {}, None
        for t, vox in voxels.items():
            subj = vox.subject_surface
            rows = subj[(subj["source_model"] == m) & (subj["randnetw"].astype(bool) == rn)]
            if len(rows):
                surfs[t] = rows.reset_index(drop=True)
            cnt = vox.layer_counts
            c = cnt[(cnt["source_model"] == m) & (cnt["randnetw"].astype(bool) == rn)]
            if len(c):
                limit = int(c["colour_scale_max_pos"].iloc[0])
        jobs.append((_version_page, (surfs, registry.layers(m), limit if limit is not None else 1,
                                     version_label(m, rn, names), p), {}))
    rows = []
    for t, vox in voxels.items():
        med = vox.model_surface
        for rn in (False, True):
            med_rn = None if med is None else med[med["randnetw"].astype(bool) == rn]
            if med_rn is not None and len(med_rn):
                n = len(med_rn["pooled_models"].iloc[0].split(";"))
                rows.append(("rel_pos", med_rn[["hemi", "x_ras", "y_ras", "rel_pos"]], None, None,
                             f"{t}: median over {n} model{'s' if n != 1 else ''}{' (permuted)' if rn else ''}"))
    if rows:
        jobs.append((_map_page, (rows, "Preferred layer per voxel, median over models (relative position in "
                                       "each model; median over participants per surface position first)",
                                 path("voxel-maps_median-over-models")), {}))
    else:
        skipped.append(("voxel-maps_median-over-models", "no model with two or more layers"))
    multi = [v for v in versions if len(registry.layers(v[0])) >= 2]
    for t, vox in voxels.items() if multi else ():
        cnt = vox.layer_counts
        tabs, perm, layer_names = {}, {}, {}
        for m, r in multi:
            c = cnt[(cnt["source_model"] == m) & (cnt["randnetw"].astype(bool) == r)]
            if not len(c):
                continue
            (perm if r else tabs)[names.get(m, m)] = pd.DataFrame(
                {"pos": np.repeat(c["pos"].to_numpy(), c["n_voxels"].to_numpy())})
            layer_names[names.get(m, m)] = registry.layers(m)
        jobs.append((vm.plot_layer_histogram, (tabs, layer_names),
                     {"permuted": perm, "ncols": 4, "path": path(f"voxel-layer-histogram_{t}"),
                      "title": f"{t}: preferred layer of the voxels"
                               f"{' (grey: the permuted network)' if perm and tabs else ''}"}))


def _map_page(rows, title, path):
    """One page of flat maps: a row per entry ``(value, table, layer_names, vmax, label)`` (both
    hemispheres, :func:`fastenc.voxelmaps.plot_surface_map`) with its colour key; rows of one
    colour scale (the best-R² maps) share one key beside the page. A fixed grid (no layout
    solver: these figures have many panels). Returns the Figure."""
    from .. import figures as _figures
    from .. import voxelmaps as vm

    r2 = "best_median_r2_test_c"

    def key_label(value):  # the rows' titles say at which layer
        return "Median noise-corrected R²" if value == r2 else None

    def scale(value, layer_names, vmax):
        # the key's labels and limits only (plot_surface_map maps each row's values itself)
        return vm._map_scale(value, np.zeros(0), layer_names, 0.0 if value == r2 else None, vmax, key_label(value))

    shared = len({(v, m) for v, _, _, m, _ in rows}) == 1 and rows[0][0] == r2
    keys = [scale(v, names, m) for v, _, names, m, _ in (rows[:1] if shared else rows)]
    # a row: two hemispheres' maps (each about square) of 3 inches, its title above, the
    # hemispheres' names under it
    fig, axes = _figures._grid_figure(len(rows), 1, (7.2, 3.0), left=0.2, right=max(map(vm.colour_key_width, keys)) + 0.1,
                                      top=0.4, bottom=0.35, wgap=0, hgap=0.75, title=title, title_size=12)
    axes = axes[:, 0]
    for ax, (value, table, layer_names, vmax, label) in zip(axes, rows):
        vm.plot_surface_map(table, value, layer_names=layer_names, ax=ax, vmin=0.0 if value == r2 else None,
                            vmax=vmax, title=label, colorbar=not shared, cbar_label=key_label(value))
    if shared:
        vm.colour_key(fig, axes, keys[0], shrink=min(0.9, 3.0 / len(rows) + 0.3))
    vm.save_figure(fig, path)
    return fig


def _plot_curves(figures, curves, names, target, path):
    def as_curves(df):
        out = {}
        for m, g in df.groupby("source_model", sort=False):
            g = g.sort_values("layer_pos")
            out[m] = an.LayerCurve(per_subject=pd.DataFrame(columns=g["layer"].tolist()),
                                   mean=g["median_r2_test_c_mean"].to_numpy(),
                                   sem=g["median_r2_test_c_yerr"].to_numpy())
        return out
    trained = as_curves(curves[~curves["randnetw"]])
    permuted = as_curves(curves[curves["randnetw"]])
    st = trained.pop(SPECTEMP, None)
    if trained:
        figures.plot_across_layers(trained, permuted=permuted, display_names=names,
                                   spectemp=(float(st.mean[0]), float(st.sem[0])) if st is not None else None,
                                   title=f"{target}: prediction across model stages",
                                   path=path(f"across-layers_{target}"))


def _p_note(comps, panel_key, clean, noisy, rn, component=None) -> str | None:
    """'p = ..' of "clean above noisy" and of "noisy above clean" from a model-comparisons table."""
    if comps is None or not len(comps):
        return None
    c = comps[(comps["comparison"] == "clean vs noisy") & (comps["model_1_randnetw"].astype(bool) == rn)]
    if component is not None:
        c = c[c["component"] == component]
    def p(a, b):
        r = c[(c["model_1"] == a) & (c["model_2"] == b)]
        return float(r["p_value"].iloc[0]) if len(r) else None
    pc, pn = p(clean, noisy), p(noisy, clean)
    if pc is None or pn is None:
        return None
    return f"p(clean>noisy)={pc:.2g}\np(noisy>clean)={pn:.2g}"


_NO_SPEECH_PAIR = "no noisy/clean model pair of CLEAN_SPEECH_LIST_PAIRS (FIG_8_MODEL_LIST) has both models present"


def _clean_vs_noisy(results, registry, names, figures, path, skipped) -> None:
    """Paper Fig. 8: speech models trained on noisy vs clean speech (CLEAN_SPEECH_LIST_PAIRS, with
    their seed-2 versions of CLEAN_SPEECH_LIST_2SEEDS when present): grouped bars of the headline
    score per target (trained, permuted) and per component, with the subject-bootstrap (components:
    permutation) p values of model-comparisons_<t>."""
    pairs = registry.model_set(CLEAN_PAIRS) if CLEAN_PAIRS in registry.model_sets else []
    seed2 = dict(registry.model_set("CLEAN_SPEECH_LIST_2SEEDS")) if "CLEAN_SPEECH_LIST_2SEEDS" in registry.model_sets else {}

    def members(have, noisy, clean):
        out = []
        for kind, m in (("noisy", noisy), ("clean", clean)):
            for k, mm in ((kind, m), (f"{kind}, seed 2", seed2.get(m))):
                if mm is not None and mm in have:
                    out.append((k, mm))
        return out

    def pair_rows(dd, panel, value):
        """Per noisy/clean pair with both models in ``dd`` (indexed by model): its bar rows."""
        for noisy, clean in pairs:
            if noisy in dd.index and clean in dd.index:
                group = names.get(noisy, noisy)
                yield noisy, clean, group, [
                    {"panel": panel, "group": group, "bar": names.get(m, m), "kind": kind,
                     "mean": dd.loc[m, f"{value}_mean"], "yerr": dd.loc[m, f"{value}_yerr"]}
                    for kind, m in members(set(dd.index), noisy, clean)]

    for t, reg in results.regression.items():
        d = reg.across_models
        rows, notes = [], {}
        for rn in (False, True):
            dd = d[d["randnetw"].astype(bool) == rn].set_index("source_model")
            panel = "Permuted networks" if rn else "Trained networks"
            for noisy, clean, group, new in pair_rows(dd, panel, "median_r2_test_c"):
                rows += new
                notes[(panel, group)] = _p_note(reg.model_comparisons, panel, clean, noisy, rn)
        if rows:
            figures.plot_grouped_bars(pd.DataFrame(rows), notes=notes, ncols=2,
                                      title=f"{t}: speech models trained on noisy vs clean speech "
                                            "(best layer on independent splits; p: subject bootstrap)",
                                      path=path(f"clean-vs-noisy_{t}"))
        else:
            skipped.append((f"clean-vs-noisy_{t}", _NO_SPEECH_PAIR))
    for t, comp in results.components.items():
        d = comp.across_models
        d = d[~d["randnetw"].astype(bool)]
        rows, notes = [], {}
        for c, dc in d.groupby("component", sort=False):
            dd = dc.set_index("source_model")
            for noisy, clean, group, new in pair_rows(dd, c, "median_r2_test"):
                rows += new
                notes[(c, group)] = _p_note(comp.model_comparisons, c, clean, noisy, False, component=c)
        if rows:
            figures.plot_grouped_bars(pd.DataFrame(rows), notes=notes, ncols=3,
                                      ylabel="Median R² (not noise-corrected)",
                                      title=f"{t}: speech models trained on noisy vs clean speech, per component "
                                            "(p: permutation of the iteration scores)",
                                      path=path(f"clean-vs-noisy_{t}"))
        else:
            skipped.append((f"clean-vs-noisy_{t}", _NO_SPEECH_PAIR))
