"""Backward-compatible name of :mod:`fastenc.study.store` (the study's one store).

New code imports from :mod:`fastenc.study.store`; nothing inside fastenc imports this module.
"""
from .study.store import (INPUT_KINDS, METHOD_VERSION, RecomputeLog, ResultStore, StudyStore,  # noqa: F401
                          TableCache, atomic_write, combine, fingerprint, method_version, stale_reason)

__all__ = ["StudyStore", "ResultStore", "TableCache", "RecomputeLog", "fingerprint", "atomic_write",
           "stale_reason", "combine", "method_version", "METHOD_VERSION", "INPUT_KINDS"]
