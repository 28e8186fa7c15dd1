"""On-disk results of the regression stage: one HDF5 file per unit, written atomically.

A unit is (target dataset, model, trained/permuted, layer). Its file
``<out>/regression/<target>/<model>[_randnetw]/<layer>.h5`` holds the (targets x splits)
arrays of :class:`fastenc.LayerScores` and the per-target summary (METHOD §5). A file is
written under a temporary name and renamed into place only when complete, so a killed run
never leaves a file that reads as finished; its fingerprint and identity (model, layer,
version, file format) are checked on reading so results of other data are never mixed in. The fingerprint covers the neural data, splits and alpha grid, not the model
activations: after re-extracting activations, use a new output folder or ``overwrite``.
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import __version__

__all__ = ["ResultStore", "fingerprint"]

FORMAT_VERSION = 1


def fingerprint(*arrays) -> str:
    """Short SHA-1 of the bytes of the given arrays (data identity for resume checks)."""
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


class ResultStore:
    """Regression results under an output folder.

    Examples
    --------
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.is_complete("NH2015", "spectemp", False, "avgpool", "abc")
    False
    """

    def __init__(self, out):
        self.out = Path(out)

    def path(self, target: str, model: str, randnetw: bool, layer: str) -> Path:
        version = f"{_safe(model)}_randnetw" if randnetw else _safe(model)
        return self.out / "regression" / target / version / f"{_safe(layer)}.h5"

    def is_complete(self, target, model, randnetw, layer, data_fingerprint) -> bool:
        """True when the unit's file exists, is readable and matches ``data_fingerprint``.

        Raises
        ------
        ValueError
            The file is complete but was computed from other data/splits/alphas: it is kept,
            and the caller must choose another output folder or pass ``overwrite``.
        """
        p = self.path(target, model, randnetw, layer)
        if not p.exists():
            return False
        try:
            with h5py.File(p, "r") as f:
                fp = f.attrs.get("fingerprint")
                complete = bool(f.attrs.get("complete", False))
                same_unit = (f.attrs.get("model") == model and f.attrs.get("layer") == layer
                             and bool(f.attrs.get("randnetw")) == bool(randnetw)
                             and f.attrs.get("format_version") == FORMAT_VERSION)
        except OSError:
            return False  # unreadable (e.g. disk full during a rename): redo it
        if not complete:
            return False
        if not same_unit:
            raise ValueError(f"{p} holds another unit (model {model!r}, layer {layer!r} map to the same "
                             "file name, or the file is of another fastenc format); use another output folder")
        if fp != data_fingerprint:
            raise ValueError(f"{p} holds results computed from different data, splits or alphas "
                             f"(fingerprint {fp}, now {data_fingerprint}); use another output folder "
                             "or overwrite=True to recompute")
        return True

    def write(self, target, model, randnetw, layer, arrays: dict, summary: pd.DataFrame,
              target_names, data_fingerprint, attrs=None) -> Path:
        """Write one unit atomically (temporary file in the same folder, then rename)."""
        p = self.path(target, model, randnetw, layer)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with h5py.File(tmp, "w") as f:
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)
                g = f.create_group("summary")
                for c in summary.columns:
                    g.create_dataset(c, data=summary[c].to_numpy())
                f.create_dataset("target_names", data=np.array([str(t) for t in target_names], dtype="S"))
                f.attrs.update({"target": target, "model": model, "randnetw": bool(randnetw),
                                "layer": layer, "fastenc_version": __version__,
                                "format_version": FORMAT_VERSION, "fingerprint": data_fingerprint})
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
                f.attrs["complete"] = True
            os.replace(tmp, p)
        finally:
            if tmp.exists():
                tmp.unlink()
        return p

    def read(self, target, model, randnetw, layer, names=None) -> dict:
        """Arrays of one unit: all of them plus ``summary`` (a DataFrame), or only ``names``."""
        p = self.path(target, model, randnetw, layer)
        if not p.exists():
            raise FileNotFoundError(f"no regression result for {target}/{model}"
                                    f"{' (randnetw)' if randnetw else ''}/{layer}: {p}")
        with h5py.File(p, "r") as f:
            keys = [k for k in f.keys() if k not in ("summary", "target_names")]
            out = {k: f[k][()] for k in (names or keys)}
            if names is None:
                out["summary"] = pd.DataFrame({c: f["summary"][c][()] for c in f["summary"].keys()})
        return out

    def cleanup_partial(self) -> int:
        """Remove temporary files left by killed runs; returns how many."""
        n = 0
        root = self.out / "regression"
        if root.exists():
            for tmp in root.rglob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)
                n += 1
        return n
