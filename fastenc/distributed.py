"""Backward-compatible name of the Dask executor's helpers (:mod:`fastenc.study.executors`)."""
from .study.executors import FASTENC_RESOURCE, DaskExecutor, make_client  # noqa: F401

__all__ = ["make_client", "DaskExecutor", "FASTENC_RESOURCE"]
