"""The study's one store: one HDF5 file per regression unit and one CSV per RSA unit, all written
by one atomic writer (:func:`atomic_write`) and reused under one rule (:func:`stale_reason`):
only while everything they were computed from is unchanged.

A regression unit is (target dataset, model, trained/permuted, layer). Its file
``<out>/regression/<target>/<model>[_randnetw]/<layer>.h5`` holds the (targets x splits)
arrays of :class:`fastenc.LayerScores` and the per-target summary (METHOD §5). Every file is
written under a temporary name and renamed into place only when complete
(:func:`atomic_write`), so a killed run never leaves a file that reads as finished.

Each result carries a record of its inputs (:data:`INPUT_KINDS`): a content hash of the
activations it was computed from (the layer's float array, in stimulus order), of the
stimulus order and names, of the neural data, of the splits and of the alpha grid, and the
fastenc :data:`METHOD_VERSION`. A stored result is reused only when its record equals that of
the current inputs (:func:`stale_reason`); otherwise it is recomputed and replaced, and the
caller logs which input changed (:class:`RecomputeLog`). A file holding another unit (two
names mapping to one file name) is an error.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import __version__

__all__ = ["StudyStore", "ResultStore", "TableCache", "RecomputeLog", "fingerprint", "atomic_write", "stale_reason",
           "combine", "method_version", "METHOD_VERSION", "INPUT_KINDS", "PREDICTIONS_RECORD"]

FORMAT_VERSION = 1

#: Version of fastenc's numbers. Bump it whenever the same inputs give different results, so
#: that results stored by an older method are recomputed, not reused.
#: 2: test correlations at the top of the alpha grid changed (scoring fix).
METHOD_VERSION = 2

#: What a stored result was computed from (keys of an input record) and how a change is logged.
INPUT_KINDS = {
    "method": "method version changed",
    "activations": "activations changed",
    "stimuli": "stimulus order or names changed",
    "neural": "neural data changed",
    "splits": "splits changed",
    "alphas": "alpha grid changed",
    "predictions": "no stored test predictions (written before they were stored)",
}

#: ``predictions`` entry of the input record of units that hold the test predictions (the
#: components' units, :func:`fastenc.study.regression.stores_predictions`): what they hold.
PREDICTIONS_RECORD = "test predictions per split (mean-response fit, intercept included)"

_ATTR = "input_"  # HDF5 attribute prefix of an input record


def method_version() -> str:
    """The ``method`` entry of input records: :data:`METHOD_VERSION`, read when called."""
    return str(METHOD_VERSION)


def fingerprint(*arrays) -> str:
    """BLAKE2b-128 of the dtype, shape and bytes of the given arrays (content identity).

    Examples
    --------
    >>> fingerprint(np.arange(3.0)) == fingerprint(np.arange(3.0)), fingerprint(np.arange(3.0)) == fingerprint(np.arange(3))
    (True, False)
    """
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.asarray(a)
        if a.dtype == object:
            a = a.astype(str)
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def combine(record: Mapping) -> str:
    """One hash of an input record (stored as a unit's ``fingerprint`` attribute)."""
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(record):
        h.update(f"{k}={record[k]};".encode())
    return h.hexdigest()


def stale_reason(stored: Mapping, current: Mapping) -> str | None:
    """None when the input record ``stored`` (of a stored result) equals ``current``; else
    what changed, e.g. ``"activations changed"`` (the reuse rule of every stored result)."""
    if all(stored.get(k) is None for k in current):
        return "no record of its inputs (written by an older fastenc)"
    order = [k for k in INPUT_KINDS if k in current] + [k for k in current if k not in INPUT_KINDS]
    changed = [INPUT_KINDS.get(k, f"{k} changed") for k in order if str(stored.get(k)) != str(current[k])]
    return ", ".join(changed) or None


def atomic_write(path, write) -> Path:
    """Create ``path`` by ``write(tmp)`` on a unique temporary name in the same folder, then
    rename it into place: readers see the old file or the complete new one, never a part."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


class StudyStore:
    """Every stored unit of a study under one output folder: regression units (HDF5) and RSA
    units (one CSV per target x model version, :class:`TableCache`), with one reuse rule.

    ``inputs`` arguments are input records: :data:`INPUT_KINDS` -> hash (str).

    Examples
    --------
    >>> import tempfile
    >>> store = StudyStore(tempfile.mkdtemp())
    >>> store.check("NH2015", "spectemp", False, "avgpool", {"method": "2"})
    ('missing', None)
    >>> store.rsa_check("NH2015", "spectemp", False, {"method": "2"})
    ('missing', None)
    """

    def __init__(self, out):
        self.out = Path(out)

    # -- RSA units: <out>/rsa[-corrected]/<target>/<model>[_randnetw].csv ----------------------
    def rsa_cache(self, corrected: bool = False) -> "TableCache":
        """The RSA tables of one variant (``rsa/``, or ``rsa-corrected/`` with ``corrected``)."""
        return TableCache(self.out / ("rsa-corrected" if corrected else "rsa"))

    @staticmethod
    def rsa_name(target, model, randnetw) -> str:
        return f"{target}/{model}{'_randnetw' if randnetw else ''}"

    def rsa_check(self, target, model, randnetw, inputs, corrected=False) -> tuple:
        """State of an RSA unit, as :meth:`check`."""
        return self.rsa_cache(corrected).check(self.rsa_name(target, model, randnetw), inputs)

    def rsa_write(self, target, model, randnetw, df: pd.DataFrame, inputs, corrected=False) -> Path:
        return self.rsa_cache(corrected).write(self.rsa_name(target, model, randnetw), df, inputs)

    def rsa_read(self, target, model, randnetw, corrected=False) -> pd.DataFrame:
        p = self.rsa_cache(corrected).path(self.rsa_name(target, model, randnetw))
        if not p.exists():
            raise FileNotFoundError(f"no RSA result for {target}/{model}{' (randnetw)' if randnetw else ''}: {p}")
        return pd.read_csv(p)

    # -- effective dimensionality per layer: <out>/dimensionality/<model>[_randnetw].csv --------
    #: options of :func:`fastenc.dimensionality.effective_dimensionality` used by the study
    ED_OPTIONS = {"demean_units": True, "scale_units": False, "center_sounds": True}

    def ed_cache(self) -> "TableCache":
        return TableCache(self.out / "dimensionality")

    @staticmethod
    def ed_name(model, randnetw) -> str:
        return f"{_safe(model)}{'_randnetw' if randnetw else ''}"

    def ed_inputs(self, layer_hashes) -> dict:
        """Input record of a version's ED table: method, ED options and its layers' activation hashes."""
        return {"method": method_version(), "ed": json.dumps(self.ED_OPTIONS, sort_keys=True),
                "activations": combine({f"{i}:{h}": h for i, h in enumerate(layer_hashes)})}

    def ed_read(self, model, randnetw, current_only=True) -> pd.DataFrame | None:
        """The stored ED rows of one version (``layer, n_units, ed, activations``; the last column
        is each layer's activation hash, against which a caller checks reuse), or None when there
        are none, the table is damaged, or (``current_only``) it was computed by another method or
        with other ED options."""
        cache, name = self.ed_cache(), self.ed_name(model, randnetw)
        record = cache.record(name)
        if record is None:
            return None
        if current_only:
            want = self.ed_inputs([])
            if any(str(record.get(k)) != str(want[k]) for k in ("method", "ed")):
                return None
        return pd.read_csv(cache.path(name), dtype={"layer": str, "activations": str})

    def ed_write(self, model, randnetw, df: pd.DataFrame) -> Path:
        return self.ed_cache().write(self.ed_name(model, randnetw), df, self.ed_inputs(df["activations"]))

    # -- regression units -------------------------------------------------------------------

    def path(self, target: str, model: str, randnetw: bool, layer: str) -> Path:
        version = f"{_safe(model)}_randnetw" if randnetw else _safe(model)
        return self.out / "regression" / target / version / f"{_safe(layer)}.h5"

    def unit_name(self, target, model, randnetw, layer) -> str:
        """``target/model[_randnetw]/layer``, as in the log."""
        return f"{target}/{model}{'_randnetw' if randnetw else ''}/{layer}"

    def check(self, target, model, randnetw, layer, inputs) -> tuple:
        """State of a unit against the current ``inputs``: ``("missing", None)``,
        ``("incomplete", why)`` (unreadable or never finished: redo it), ``("stale", what
        changed)`` (finished from other inputs: recompute it) or ``("current", None)`` (reuse).

        Raises
        ------
        ValueError
            The file holds another unit (two names map to one file name) or another fastenc
            file format.
        """
        p = self.path(target, model, randnetw, layer)
        if not p.exists():
            return "missing", None
        try:
            with h5py.File(p, "r") as f:
                attrs = dict(f.attrs)
        except OSError:
            return "incomplete", "unreadable file"  # e.g. disk full during a rename
        if not bool(attrs.get("complete", False)):
            return "incomplete", "never finished"
        same_unit = (attrs.get("model") == model and attrs.get("layer") == layer
                     and bool(attrs.get("randnetw")) == bool(randnetw)
                     and attrs.get("format_version") == FORMAT_VERSION)
        if not same_unit:
            raise ValueError(f"{p} holds another unit (model {model!r}, layer {layer!r} map to the same "
                             "file name, or the file is of another fastenc format); use another output folder")
        stored = {k[len(_ATTR):]: _text(v) for k, v in attrs.items() if k.startswith(_ATTR)}
        reason = stale_reason(stored, inputs)
        return ("stale", reason) if reason else ("current", None)

    def is_complete(self, target, model, randnetw, layer, inputs) -> bool:
        """True when the unit is finished and was computed from ``inputs`` (may be reused)."""
        return self.check(target, model, randnetw, layer, inputs)[0] == "current"

    def write(self, target, model, randnetw, layer, arrays: dict, summary: pd.DataFrame,
              target_names, inputs, attrs=None) -> Path:
        """Write one unit atomically (:func:`atomic_write`) with its input record."""
        def write(tmp):
            with h5py.File(tmp, "w") as f:
                for k, v in arrays.items():
                    f.create_dataset(k, data=v)
                g = f.create_group("summary")
                for c in summary.columns:
                    g.create_dataset(c, data=summary[c].to_numpy())
                f.create_dataset("target_names", data=np.array([str(t) for t in target_names], dtype="S"))
                f.attrs.update({"target": target, "model": model, "randnetw": bool(randnetw),
                                "layer": layer, "fastenc_version": __version__,
                                "format_version": FORMAT_VERSION, "fingerprint": combine(inputs)})
                for k, v in inputs.items():
                    f.attrs[_ATTR + k] = str(v)
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
                f.attrs["complete"] = True
        return atomic_write(self.path(target, model, randnetw, layer), write)

    def read(self, target, model, randnetw, layer, names=None) -> dict:
        """Arrays of one unit: all of them plus ``summary`` (a DataFrame) and ``target_names``
        (list of str), or only ``names`` (which may include ``"target_names"``)."""
        p = self.path(target, model, randnetw, layer)
        if not p.exists():
            raise FileNotFoundError(f"no regression result for {target}/{model}"
                                    f"{' (randnetw)' if randnetw else ''}/{layer}: {p}")
        with h5py.File(p, "r") as f:
            keys = [k for k in f.keys() if k not in ("summary", "target_names")]
            out = {k: f[k][()] for k in (names or keys) if k != "target_names"}
            if names is None or "target_names" in names:
                out["target_names"] = [_text(n) for n in f["target_names"][()]]
            if names is None:
                out["summary"] = pd.DataFrame({c: f["summary"][c][()] for c in f["summary"].keys()})
        return out

    def layer_values(self, target, model, randnetw, layers, name) -> np.ndarray:
        """One metric of every layer, stacked: (n_layers, n_targets, n_splits)."""
        return np.stack([self.read(target, model, randnetw, layer, names=[name])[name] for layer in layers])

    def cleanup_partial(self) -> int:
        """Remove temporary files left by killed runs (regression units, RSA tables); returns how many."""
        n = 0
        for root in (self.out / "regression", self.out / "rsa", self.out / "rsa-corrected", self.out / "dimensionality"):
            if root.exists():
                for tmp in root.rglob(".*.tmp-*"):
                    tmp.unlink(missing_ok=True)
                    n += 1
        return n


#: The name of the store before fastenc 0.2 (regression units only).
ResultStore = StudyStore


class TableCache:
    """Cached tables (CSV) under ``root`` with the same reuse rule as :class:`StudyStore`.

    ``<root>/<name>.csv`` is written atomically and its input record beside it
    (``<name>.inputs.json``, written after the table, with a hash of the table's bytes so that a
    table and a record of different writes never pair up). A table is reused only while its
    record matches the current inputs.

    Examples
    --------
    >>> import tempfile
    >>> cache = TableCache(tempfile.mkdtemp())
    >>> _ = cache.write("NH2015/spectemp", pd.DataFrame({"a": [1]}), {"method": "2"})
    >>> cache.check("NH2015/spectemp", {"method": "2"}), cache.check("NH2015/spectemp", {"method": "3"})
    (('current', None), ('stale', 'method version changed'))
    """

    def __init__(self, root):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{name}.csv"

    def _record_path(self, name: str) -> Path:
        return self.root / f"{name}.inputs.json"

    def check(self, name: str, inputs) -> tuple:
        """``("missing" | "incomplete" | "stale" | "current", reason)`` as :meth:`StudyStore.check`."""
        p, r = self.path(name), self._record_path(name)
        if not p.exists():
            return "missing", None
        try:
            record = json.loads(r.read_text())
            table = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        except (OSError, ValueError):
            return "stale", stale_reason({}, inputs)  # a table without a (readable) record
        if not isinstance(record, dict) or record.get("table") != table:
            return "incomplete", "table and input record of different writes"
        reason = stale_reason(record.get("inputs") or {}, inputs)
        return ("stale", reason) if reason else ("current", None)

    def record(self, name: str) -> dict | None:
        """The stored input record of table ``name`` when the table and its record are intact and
        of one write; else None."""
        p, r = self.path(name), self._record_path(name)
        try:
            record = json.loads(r.read_text())
            table = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("table") != table:
            return None
        return record.get("inputs") or {}

    def write(self, name: str, df: pd.DataFrame, inputs) -> Path:
        """Write the table and then its input record, each atomically."""
        data = df.to_csv(index=False).encode()
        p = atomic_write(self.path(name), lambda tmp: tmp.write_bytes(data))
        record = {"inputs": {k: str(v) for k, v in inputs.items()}, "fastenc_version": __version__,
                  "table": hashlib.blake2b(data, digest_size=16).hexdigest()}
        atomic_write(self._record_path(name), lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
        return p


class RecomputeLog:
    """Stored results recomputed because their inputs changed, and why.

    Each :meth:`add` appends a line to ``<out>/fastenc.log`` at once (a killed run keeps it);
    :meth:`summary` prints the lines (``verbose``) and a one-line count to stderr.
    """

    NAME = "fastenc.log"

    def __init__(self, out):
        self.path = Path(out) / self.NAME
        self.lines: list = []

    def __len__(self):
        return len(self.lines)

    def add(self, unit: str, reason: str) -> None:
        line = f"{unit}: recomputed ({reason})"
        self.lines.append(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def summary(self, verbose=True, stream=None) -> None:
        if not self.lines:
            return
        stream = stream or sys.stderr
        if verbose:
            for line in self.lines:
                print(line, file=stream)
        n = len(self.lines)
        print(f"fastenc: {n} unit{'s' if n != 1 else ''} recomputed because inputs changed; see {self.path}",
              file=stream)
