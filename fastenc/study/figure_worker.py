"""Preloaded by the fork server that starts the figure workers (:func:`fastenc.study.figures.draw_figures`).

Importing this module imports every plotting module of the study and draws one tiny figure to PNG
and PDF in memory, so that the font files, the glyph caches and the PDF backend are loaded once,
in the fork server, and every worker forked from it starts drawing at once. Nothing else: the
server holds no data and runs no threads, which is what makes forking it safe (unlike forking the
main process, which holds Numba's OpenMP threads and, in a notebook or with Dask, many more).
"""
from __future__ import annotations

import io

from .. import dimensionality, figures, voxelmaps  # noqa: F401  (the plots the jobs call)
from . import figures as study_figures  # noqa: F401  (_draw, _map_page)


def _warm() -> None:
    fig = figures._new_figure((2.0, 1.5))
    ax = fig.subplots()
    ax.scatter([0.0, 1.0], [1.0, 0.0], c=[0.2, 0.8], s=5)
    ax.set_title("R² ≥ 0 – x", fontsize=8)
    fig.suptitle("warm", fontsize=9)
    fig.savefig(io.BytesIO(), format="png", dpi=50)
    fig.savefig(io.BytesIO(), format="pdf")


_warm()
