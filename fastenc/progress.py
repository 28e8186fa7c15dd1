"""Progress lines with ETA and phase messages, written to stderr (no extra dependency).

On a terminal a bar redraws in place; in a log (output not a terminal) a bar prints one line
per ~10 % of its units (the last one when it finishes), so a log of a long run stays short.
"""
from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def say(message: str, enabled: bool = True, stream=None) -> None:
    """Print one phase message (``fastenc: message``) so that no long phase is silent."""
    if enabled:
        stream = stream or sys.stderr
        stream.write(f"fastenc: {message}\n")
        stream.flush()


class Progress:
    """Count finished units and print ``label [####....] k/n elapsed<eta``.

    The ETA is extrapolated from the units computed (not reused) after the first one: the first
    unit of a run also pays for compiling the kernels, so it says nothing about the rest.

    Examples
    --------
    >>> p = Progress(3, "units", enabled=False)
    >>> p.update(2); p.done
    2
    >>> import io
    >>> log = io.StringIO()
    >>> p = Progress(100, "units", stream=log)
    >>> for _ in range(100): p.update(1)
    >>> len(log.getvalue().splitlines())    # not a terminal: one line per 10 %
    10
    """

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None, width: int = 28):
        self.total = max(int(total), 0)
        self.label = label
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.skipped = 0
        # On a terminal the line redraws in place; in a log, one line per ~10 % of the work.
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = 0  # in a log, no line before the first 10 %
        self.t0 = time.perf_counter()
        self._t_first = None  # when the first computed unit finished
        self._render()

    def update(self, n: int = 1, note: str = "", skipped: bool = False) -> None:
        self.done += n
        if skipped:
            self.skipped += n
        elif self._t_first is None:
            self._t_first = (time.perf_counter(), self.done - self.skipped)
        self._render(note)

    def eta(self) -> float:
        """Seconds left (NaN until two units were computed)."""
        worked = self.done - self.skipped
        if self._t_first is None or worked <= self._t_first[1]:
            return float("nan")
        t1, w1 = self._t_first
        return (time.perf_counter() - t1) / (worked - w1) * (self.total - self.done)

    def _render(self, note: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        frac = self.done / self.total if self.total else 1.0
        eta = self.eta()
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        eta_s = _fmt(eta) if eta == eta else "--:--"
        line = f"{self.label} [{bar}] {self.done}/{self.total} {_fmt(elapsed)}<{eta_s} {note[:40]:<40}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done >= self.total else ""))
        else:
            decile = int(frac * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()
