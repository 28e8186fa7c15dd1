"""Run the regression (and RSA) units of ``run_all`` on a Dask cluster.

Nothing here is imported unless a client is asked for (``--scheduler`` / ``--cluster`` or
``run_all(..., client=client)``); Dask is imported lazily inside the functions.

Design
------
- One task per model version (model, trained/permuted): :func:`fastenc.pipeline.regress_model`
  runs on a worker, reads the activations from the shared ``data_dir`` once, scores every layer
  against every target dataset and writes each unit atomically to the shared ``out`` folder
  (:class:`fastenc.store.ResultStore`). The reuse rule is the single-process one (it lives in
  ``regress_model``): a finished unit is skipped only when its stored input record (hash of the
  layer's activations, stimulus order, neural data, splits, alpha grid, method version) equals
  the current one, and is recomputed otherwise; so a retried task, a resubmitted task or a
  restarted driver only redo what is missing or stale. Workers report recomputed units and why;
  the driver logs them (``<out>/fastenc.log``). RSA tasks run ``rsa_model``, which applies the
  same rule to the RSA cache.
- The large inputs shared by every task (the prepared :class:`~fastenc.pipeline.TargetBundle` s —
  B2021 is ~140 MB on the real data — the splits, the alpha grid and the registry) are sent once
  per worker with ``client.scatter(..., broadcast=True)``; tasks only carry a reference.
- Inside a worker process, fastenc tasks run one at a time (a process-wide lock) with Numba on
  ``n_threads`` threads, or on the worker's ``nthreads``. Workers that advertise the resource
  ``fastenc=1`` (clusters made by :func:`make_client` do) also get one task at a time from the
  scheduler, so no task waits on the lock of a busy worker while another worker is idle.
- Faults: a task on a worker that dies is re-run by the scheduler (``retries`` and the
  scheduler's ``allowed-failures``); a task that still fails for an infrastructure reason (e.g.
  ``KilledWorker``, lost scattered inputs) is resubmitted by the driver, up to ``resubmit`` times,
  after re-scattering the shared inputs if needed. Errors of the input (``ValueError``,
  ``FileNotFoundError``: a corrupt file, a wrong shape) are not retried: they are raised on the
  driver with the original message, remaining tasks are cancelled, and finished units stay.
- Progress: workers publish each finished unit as a Dask event (``Worker.log_event``), so the
  driver's progress bar moves per (target, layer); the task's returned report completes it.
"""
from __future__ import annotations

import os
import queue
import re
import threading
import uuid
from dataclasses import dataclass

__all__ = ["make_client", "run_regression_dask", "run_rsa_dask", "FASTENC_RESOURCE"]

#: Worker resource that limits fastenc tasks to one at a time per worker.
FASTENC_RESOURCE = "fastenc"

_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_CLUSTER = re.compile(r"^local(?::(\d+))?$")

#: One fastenc task at a time per worker process (Numba's thread pool is process-wide).
_TASK_LOCK = threading.Lock()


def make_client(scheduler=None, cluster=None, threads_per_worker=None, timeout=30):
    """A Dask client for ``run_all``: connect to a scheduler, or start a local cluster.

    Parameters
    ----------
    scheduler : str, optional
        ``"tcp://HOST:PORT"`` (also ``tls://``, ``ucx://``, ``ws://``), or the path of a Dask
        scheduler file (``*.json``, as written by ``dask scheduler --scheduler-file``).
    cluster : str, optional
        ``"local:N"``: start ``distributed.LocalCluster`` with N worker processes, one Dask
        thread each (``"local"``: one worker per core).
    threads_per_worker : int, optional
        Threads of each local worker (default 1); fastenc tasks use them as Numba threads, one
        task at a time per worker.
    timeout : float
        Seconds to wait for the scheduler connection.

    Returns
    -------
    (client, cluster_or_None)
        Close both when done (``client.close(); cluster.close()``); the cluster is None when
        connecting to an existing scheduler.

    Raises
    ------
    ValueError
        Neither or both options given, or a malformed spec.
    OSError
        The scheduler cannot be reached.

    Examples
    --------
    >>> make_client(cluster="local:two")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: cluster must be 'local:N' ...
    """
    if (scheduler is None) == (cluster is None):
        raise ValueError("give exactly one of scheduler='tcp://HOST:PORT' or cluster='local:N'")
    if threads_per_worker is not None and (not isinstance(threads_per_worker, int) or threads_per_worker < 1):
        raise ValueError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
    if scheduler is not None:
        spec = str(scheduler).strip()
        is_file = spec.endswith(".json")
        if not is_file:
            m = _ADDRESS.match(spec)
            if not m or not 0 < int(m.group(3)) < 65536:
                raise ValueError(f"scheduler must be an address 'tcp://HOST:PORT' (e.g. tcp://10.0.0.5:8786) "
                                 f"or a scheduler file '*.json'; got {scheduler!r}")
        elif not os.path.isfile(spec):
            raise ValueError(f"scheduler file {spec!r} does not exist")
        from distributed import Client
        try:
            client = (Client(scheduler_file=spec, timeout=timeout) if is_file
                      else Client(spec, timeout=timeout))
        except (OSError, TimeoutError) as e:
            raise OSError(f"could not connect to the Dask scheduler at {spec}: {e}") from e
        return client, None
    m = _CLUSTER.match(str(cluster).strip())
    if not m or (m.group(1) is not None and int(m.group(1)) < 1):
        raise ValueError(f"cluster must be 'local:N' with N >= 1 worker processes (e.g. local:4); got {cluster!r}")
    n = int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)
    from distributed import Client, LocalCluster
    lc = LocalCluster(n_workers=n, processes=True, threads_per_worker=threads_per_worker or 1,
                      resources={FASTENC_RESOURCE: 1}, dashboard_address=None)
    try:
        client = Client(lc)
    except BaseException:
        lc.close()
        raise
    return client, lc


# ---------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------
@dataclass
class SharedInputs:
    """Inputs shared by every task, scattered once per worker (one object, one key)."""

    bundles: list
    registry: object
    splits: object
    alphas: object


@dataclass
class SharedRSA:
    participants: dict
    categories: list
    registry: object
    cache_root: str | None = None
    inputs: dict | None = None
    overwrite: bool = False


class _InputError:
    """A task's input error, returned as a value so the scheduler does not retry it."""

    def __init__(self, exc):
        self.exc = exc


def _worker():
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


def _numba_threads(n_threads, worker):
    if n_threads:
        return int(n_threads)
    if worker is None:
        return None
    state = getattr(worker, "state", None)
    return int(getattr(state, "nthreads", None) or getattr(worker, "nthreads", 1) or 1)


def _regress_task(data_dir, out, model, randnetw, shared, n_threads, overwrite, topic):
    from .pipeline import regress_model

    worker = _worker()

    def on_unit(target, model_, randnetw_, layer, status, reason=""):
        if worker is not None and topic:
            worker.log_event(topic, [target, model_, bool(randnetw_), layer, status, reason])

    with _TASK_LOCK:
        try:
            return regress_model(data_dir, out, model, randnetw, shared.bundles, shared.registry,
                                 shared.splits, shared.alphas, n_threads=_numba_threads(n_threads, worker),
                                 overwrite=overwrite, on_unit=on_unit)
        except (ValueError, FileNotFoundError) as e:
            return _InputError(e)


def _rsa_task(data_dir, out, model, randnetw, targets, shared, n_threads):
    """RSA of one model version on a worker; returns ``{target: (status, reason)}``."""
    from .analysis_stage import rsa_model

    worker = _worker()
    with _TASK_LOCK:
        try:
            from .ridge import thread_limits
            with thread_limits(_numba_threads(n_threads, worker)):
                return rsa_model(data_dir, out, model, randnetw, targets, shared.participants,
                                 shared.categories, shared.registry, cache_root=shared.cache_root,
                                 inputs=shared.inputs, overwrite=shared.overwrite)
        except (ValueError, FileNotFoundError) as e:
            return _InputError(e)


# ---------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------
def _tag(model, randnetw):
    return f"{model}{'-randnetw' if randnetw else ''}"


def _resources(client):
    """``{fastenc: 1}`` when every worker advertises the resource, else None (never hang)."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # older distributed: no n_workers argument
        workers = client.scheduler_info()["workers"]
    if workers and all(FASTENC_RESOURCE in (w.get("resources") or {}) for w in workers.values()):
        return {FASTENC_RESOURCE: 1}
    return None


def _run_tasks(client, func, items, shared_obj, args_of, on_result, on_event=None, retries=3,
               resubmit=2, label="fastenc"):
    """Submit ``func(*args_of(item, shared_future))`` per item; call ``on_result(item, value)``.

    Runs all callbacks in the calling thread. Input errors are raised with their message;
    infrastructure failures are resubmitted up to ``resubmit`` times per item.
    """
    if not items:
        return
    client.wait_for_workers(1, timeout=float(os.environ.get("FASTENC_WORKER_TIMEOUT", 600)))
    events: queue.Queue = queue.Queue()
    topic = f"{label}-{uuid.uuid4().hex}"
    if on_event is not None:
        client.subscribe_topic(topic, lambda ev: events.put(("event", ev[1])))
    resources = _resources(client)
    shared = {"future": None}

    def scatter():
        shared["future"] = client.scatter(shared_obj, broadcast=True, hash=False)

    def submit(i, attempt):
        fut = client.submit(func, *args_of(items[i], shared["future"], topic), retries=retries,
                            resources=resources, pure=False,
                            key=f"{label}-{_tag(*items[i][:2])}-{attempt}-{uuid.uuid4().hex[:8]}")
        fut.add_done_callback(lambda f, i=i: events.put(("done", (i, f))))
        live[i] = fut

    live = {}
    attempts = {i: 0 for i in range(len(items))}
    scatter()
    for i in range(len(items)):
        submit(i, 0)
    try:
        while live:
            try:
                kind, payload = events.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "event":
                on_event(payload)
                continue
            i, fut = payload
            if live.get(i) is not fut:
                continue  # a stale attempt
            if fut.status == "finished":
                value = fut.result()
                if isinstance(value, _InputError):
                    raise value.exc
                del live[i]
                on_result(items[i], value)
                continue
            # error or cancelled: an exception of the task's code is raised as is once the
            # scheduler's retries are spent; infrastructure failures are resubmitted
            exc = _failure(fut)
            if attempts[i] >= resubmit or not _is_infrastructure(exc):
                if exc is not None:
                    raise exc
                raise RuntimeError(f"Dask task {fut.key} for {_tag(*items[i][:2])} was cancelled")
            attempts[i] += 1
            if shared["future"].status != "finished":
                scatter()
            submit(i, attempts[i])
        # events logged before the last result may still be in flight: they are reported from
        # the results by the caller, so nothing is lost if they are dropped here
        while on_event is not None:
            try:
                kind, payload = events.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                on_event(payload)
    finally:
        if live:
            client.cancel(list(live.values()))
        if on_event is not None:
            try:
                client.unsubscribe_topic(topic)
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        if shared["future"] is not None:
            shared["future"].release()


def _failure(fut):
    try:
        return fut.exception(timeout=5)
    except Exception as e:  # noqa: BLE001 - cancelled futures raise on .exception()
        return e


def _is_infrastructure(exc) -> bool:
    if exc is None:
        return True
    from distributed.client import FutureCancelledError
    try:
        from distributed.scheduler import KilledWorker
    except ImportError:  # pragma: no cover
        KilledWorker = ()
    import asyncio
    import concurrent.futures
    infra = (KilledWorker, FutureCancelledError, asyncio.CancelledError, concurrent.futures.CancelledError,
             ConnectionError, TimeoutError)
    return isinstance(exc, infra) or type(exc).__name__ in ("KilledWorker", "CommClosedError")


def run_regression_dask(client, data_dir, out, work, bundles, registry, splits, alphas, n_threads=None,
                        overwrite=False, on_unit=None, retries=3, resubmit=2):
    """Regression stage on a Dask cluster: one task per (model, randnetw) in ``work``.

    Same results as the single-process loop of :func:`fastenc.pipeline.run_regression` (which
    calls this when given a client): bit-identical unit files, whatever the number of workers.
    ``data_dir`` and ``out`` must be paths every worker can read and write (a shared
    filesystem). ``on_unit(target, model, randnetw, layer, status, reason)`` is called in the
    calling thread once per unit, as the workers finish them (status and reason as in
    :func:`fastenc.pipeline.regress_model`).

    Returns
    -------
    list of (target, model, randnetw, layer, status, reason)
    """
    from pathlib import Path

    data_dir, out = str(Path(data_dir).resolve()), str(Path(out).resolve())
    seen = {}

    def report(target, model, randnetw, layer, status, reason=""):
        key = (target, model, bool(randnetw), layer)
        if key in seen:
            return
        seen[key] = (status, reason)
        if on_unit:
            on_unit(target, model, bool(randnetw), layer, status, reason)

    def on_event(msg):
        report(*msg)

    def on_result(item, value):
        model, randnetw = item
        for target, layer, status, reason in value:
            report(target, model, randnetw, layer, status, reason)

    shared = SharedInputs(bundles=list(bundles), registry=registry, splits=splits, alphas=alphas)
    items = [(m, bool(r)) for m, r in work]
    _run_tasks(client, _regress_task, items, shared,
               lambda it, fut, topic: (data_dir, out, it[0], it[1], fut, n_threads, overwrite, topic),
               on_result, on_event=on_event, retries=retries, resubmit=resubmit, label="fastenc-regress")
    return [(*k, *s) for k, s in seen.items()]


def run_rsa_dask(client, data_dir, out, work, targets, participants, categories, registry, n_threads=None,
                 on_model=None, retries=3, resubmit=2, cache_root=None, inputs=None, overwrite=False):
    """RSA stage on a Dask cluster: one task per model version, results cached under ``out/rsa``.

    Each task runs :func:`fastenc.analysis_stage.rsa_model` (same reuse rule as without Dask:
    ``inputs`` per target, the activations hashed on the worker). ``on_model(model, randnetw,
    {target: (status, reason)})`` is called in the calling thread as versions finish.
    """
    from pathlib import Path

    data_dir, out = str(Path(data_dir).resolve()), str(Path(out).resolve())
    shared = SharedRSA(participants=participants, categories=list(categories), registry=registry,
                       cache_root=str(Path(cache_root).resolve()) if cache_root is not None else None,
                       inputs=inputs, overwrite=bool(overwrite))
    items = [(m, bool(r)) for m, r in work]
    _run_tasks(client, _rsa_task, items, shared,
               lambda it, fut, topic: (data_dir, out, it[0], it[1], list(targets), fut, n_threads),
               lambda it, value: on_model and on_model(it[0], it[1], value),
               retries=retries, resubmit=resubmit, label="fastenc-rsa")
