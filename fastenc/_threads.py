"""Thread limits of the compiled code: Numba's threads and BLAS's, set together.

Every public function that runs a parallel Numba kernel (or BLAS next to one) enters
:func:`thread_limits` once: Numba runs on ``n_threads`` threads (default: as many as it is
currently set to), BLAS is held single-threaded inside, so the two pools never oversubscribe
the cores and results do not depend on the thread count (the kernels reduce in a fixed order).

Examples
--------
>>> import numba
>>> before = numba.get_num_threads()
>>> with thread_limits(1):
...     numba.get_num_threads()
1
>>> numba.get_num_threads() == before
True
"""
from __future__ import annotations

import contextlib

import numba
from threadpoolctl import threadpool_limits

__all__ = ["thread_limits", "check_n_threads"]


def check_n_threads(n_threads):
    """``None`` or an int >= 1 (``ValueError`` otherwise); returns it as int (or None)."""
    if n_threads is None:
        return None
    if int(n_threads) != n_threads or n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return int(n_threads)


@contextlib.contextmanager
def thread_limits(n_threads: int | None = None):
    """Run Numba kernels on ``n_threads`` threads with BLAS held single-threaded inside.

    ``n_threads=None`` keeps Numba's current setting (all cores unless an outer
    ``thread_limits`` lowered it), so nested calls inherit the outer limit. Numba's setting
    is restored on exit.
    """
    n_threads = check_n_threads(n_threads)
    old = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)
