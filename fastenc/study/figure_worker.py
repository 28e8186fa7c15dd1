"""A figure helper process: ``python -m fastenc.study.figure_worker`` (started by
:class:`fastenc.study.figures.FigureHelpers`).

It imports the plotting modules, draws one tiny figure so that the font files and glyph caches are
loaded, lowers its priority (the nice value its parent asks for: it draws while the study
computes, with the CPU time the study leaves idle), then draws the figure jobs it is sent, one
at a time, until its input closes. Messages
are pickles on its standard input and output:

- in: ``("path", [sys.path entries])`` (so that the jobs' functions can be imported as in the
  parent), then ``("job", pickled (function, args, kwargs))``;
- out, one per job: ``("ok", None)``, ``("error", pickled exception)``, or ``("undrawable",
  message)`` when the job cannot be unpickled here (the parent then draws it itself).

A plain new interpreter, not a fork: the parent holds Numba's OpenMP threads (and, in a notebook
or with Dask, more), and forking a multi-threaded process can deadlock the child; and unlike
multiprocessing's spawn and forkserver methods it does not re-run the parent's ``__main__``
script, which would run a user's whole script again in every helper unless it had an
``if __name__ == "__main__":`` guard.
"""
from __future__ import annotations

import io
import os
import pickle
import sys
import traceback


def _warm() -> None:
    from .. import figures
    fig = figures._new_figure((2.0, 1.5))
    ax = fig.subplots()
    ax.scatter([0.0, 1.0], [1.0, 0.0], c=[0.2, 0.8], s=5)
    ax.set_title("R² ≥ 0 – x", fontsize=8)
    fig.suptitle("warm", fontsize=9)
    fig.savefig(io.BytesIO(), format="png", dpi=50)


def _reply_error(exc: BaseException) -> tuple:
    try:
        return "error", pickle.dumps(exc)
    except Exception:  # an exception that does not pickle: its traceback as text
        return "error", pickle.dumps(RuntimeError("".join(traceback.format_exception(exc))))


def serve(inp, out) -> None:
    """Draw the jobs read from ``inp`` until it closes; one reply per job on ``out``."""
    from .figures import _draw
    while True:
        try:
            kind, payload = pickle.load(inp)
        except EOFError:
            return
        if kind == "path":
            for p in reversed(payload):
                if p not in sys.path:
                    sys.path.insert(0, p)
            continue
        try:
            fn, args, kwargs = pickle.loads(payload)
        except Exception as exc:
            reply = ("undrawable", f"{type(exc).__name__}: {exc}")
        else:
            try:
                _draw(fn, args, kwargs)
                reply = ("ok", None)
            except Exception as exc:
                reply = _reply_error(exc)
        pickle.dump(reply, out)
        out.flush()


def _lower_priority() -> None:
    """Run at the nice value the parent asks for (``FASTENC_FIGURE_HELPER_NICE``; Unix only)."""
    try:
        os.nice(int(os.environ.get("FASTENC_FIGURE_HELPER_NICE", "0")))
    except (AttributeError, OSError, ValueError):
        pass


def main() -> None:
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # anything a job prints must not mix with the replies
    import gc

    from .. import dimensionality, figures, voxelmaps  # noqa: F401  (the plots the jobs call)
    from . import figures as study_figures  # (_map_page)
    _warm()
    # imported at the usual priority (the study has little idle CPU time to give, and the helper
    # must be ready when the first version's maps come); the drawing itself at a low one
    _lower_priority()
    gc.freeze()  # the modules loaded so far are never garbage: collections need not scan them
    gc.set_threshold(study_figures.GC_THRESHOLD_WHILE_DRAWING, 20, gc.get_threshold()[2])
    serve(inp, out)


if __name__ == "__main__":
    main()
    # every figure is written and every reply flushed: skip the interpreter's teardown (freeing
    # matplotlib's and pandas' objects one by one took 0.1-0.2 s, which run-all waited for)
    sys.stderr.flush()
    os._exit(0)
