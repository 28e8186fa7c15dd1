"""A small progress line with ETA, written to stderr (no extra dependency)."""
from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Count finished units and print ``label [####....] k/n elapsed<eta``.

    Examples
    --------
    >>> p = Progress(3, "units", enabled=False)
    >>> p.update(2); p.done
    2
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
        self._last_decile = -1
        self.t0 = time.perf_counter()
        self._render()

    def update(self, n: int = 1, note: str = "", skipped: bool = False) -> None:
        self.done += n
        if skipped:
            self.skipped += n
        self._render(note)

    def _render(self, note: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        frac = self.done / self.total if self.total else 1.0
        worked = self.done - self.skipped
        left = self.total - self.done
        eta = elapsed / worked * left if worked else float("nan")
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
