"""The layer that runs the study (docs/ARCHITECTURE.md).

- :mod:`.plan` — :class:`StudyPlan`: the data root, registry, each target's data (loaded once),
  the model versions, splits, alphas and options of one run.
- :mod:`.store` — :class:`StudyStore`: every stored unit (regression HDF5, RSA CSV), one atomic
  writer, one reuse rule.
- stages, plain functions of ``(plan, store)``: :mod:`.regression`, :mod:`.analysis` (METHOD §5),
  :mod:`.rsa` (METHOD §6), :mod:`.figures`.
- :mod:`.executors` — run a list of tasks here or on Dask; imports no stage.
- :mod:`.results` — :class:`StudyResults`, what :func:`run_all` returns.
- :mod:`.run` — :func:`run_all`, :func:`run_regression`.
"""
from .plan import StudyPlan, build_plan
from .results import StudyResults
from .run import run_all, run_regression
from .store import StudyStore

__all__ = ["run_all", "run_regression", "StudyPlan", "build_plan", "StudyStore", "StudyResults"]
