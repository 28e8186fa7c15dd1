"""Executors: run a list of tasks, here (:class:`LocalExecutor`) or on a Dask cluster
(:class:`DaskExecutor`). They know nothing of the study: no stage module is imported here.

A task is ``fn(item, shared, ctx)``: ``item`` one element of the list (e.g. a model version),
``shared`` one object every task reads (the prepared target data, the registry, ...), and
``ctx`` a :class:`TaskContext` (``ctx.emit(event)`` reports progress to the driver,
``ctx.n_threads`` is the number of Numba threads the task may use). ``on_result(item, value)``
and ``on_event(event)`` are always called in the calling thread.

Dask (imported lazily, only when a client is asked for: ``--scheduler`` / ``--cluster`` or
``run_all(..., client=client)``):

- ``shared`` is sent once per worker with ``client.scatter(..., broadcast=True)``; tasks carry
  only a reference (the B2021 bundle is ~140 MB on the real data).
- Inside a worker process, fastenc tasks run one at a time (a process-wide lock) with Numba on
  ``n_threads`` threads, or on the worker's ``nthreads``. Workers that advertise the resource
  ``fastenc=1`` (clusters made by :func:`make_client` do) also get one task at a time from the
  scheduler, so no task waits on the lock of a busy worker while another worker is idle.
- Faults: a task on a worker that dies is re-run by the scheduler (``retries`` and the
  scheduler's ``allowed-failures``); a task that still fails for an infrastructure reason (e.g.
  ``KilledWorker``, lost scattered inputs) is resubmitted by the driver, up to ``resubmit`` times,
  after re-scattering the shared inputs if needed. Errors of the input (``ValueError``,
  ``FileNotFoundError``: a corrupt file, a wrong shape) are not retried: they are raised on the
  driver with the original message, remaining tasks are cancelled, and finished work stays.
- Progress: ``ctx.emit`` publishes a Dask event (``Worker.log_event``) that the driver hands to
  ``on_event`` as it arrives; events still in flight when the last result comes are delivered
  then (the caller also reports from the results, so none is needed for correctness).
"""
from __future__ import annotations

import os
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

__all__ = ["TaskContext", "LocalExecutor", "DaskExecutor", "make_executor", "make_client", "FASTENC_RESOURCE"]

#: Worker resource that limits fastenc tasks to one at a time per worker.
FASTENC_RESOURCE = "fastenc"

_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_CLUSTER = re.compile(r"^local(?::(\d+))?$")

#: One fastenc task at a time per worker process (Numba's thread pool is process-wide).
_TASK_LOCK = threading.Lock()


def _no_event(event) -> None:
    return None


@dataclass
class TaskContext:
    """What a task may use besides its item and the shared inputs."""

    emit: Callable = _no_event
    n_threads: int | None = None


class LocalExecutor:
    """Run the tasks one after the other in this process.

    Examples
    --------
    >>> LocalExecutor().run(lambda item, shared, ctx: item * shared, [1, 2], 10,
    ...                     on_result=lambda item, value: print(item, value))
    1 10
    2 20
    """

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    def run(self, fn, items, shared, on_result, on_event=None, label="fastenc", name=str) -> None:
        ctx = TaskContext(emit=on_event or _no_event, n_threads=self.n_threads)
        for item in items:
            on_result(item, fn(item, shared, ctx))


class DaskExecutor:
    """Run the tasks on a Dask cluster (see the module's notes), one task per item.

    ``name(item)`` names the task keys: ``<label>-<name>-<attempt>-<8 hex>``.
    """

    def __init__(self, client, n_threads=None, retries=3, resubmit=2):
        self.client = client
        self.n_threads = n_threads
        self.retries = retries
        self.resubmit = resubmit

    def run(self, fn, items, shared, on_result, on_event=None, label="fastenc", name=str) -> None:
        items = list(items)
        if not items:
            return
        client = self.client
        client.wait_for_workers(1, timeout=float(os.environ.get("FASTENC_WORKER_TIMEOUT", 600)))
        events: queue.Queue = queue.Queue()
        topic = f"{label}-{uuid.uuid4().hex}" if on_event is not None else None
        if topic:
            client.subscribe_topic(topic, lambda ev: events.put(("event", ev[1])))
        resources = _resources(client)
        state = {"shared": None}
        live, attempts = {}, {i: 0 for i in range(len(items))}

        def scatter():
            state["shared"] = client.scatter(shared, broadcast=True, hash=False)

        def submit(i, attempt):
            fut = client.submit(_dask_task, fn, items[i], state["shared"], topic, self.n_threads,
                                retries=self.retries, resources=resources, pure=False,
                                key=f"{label}-{name(items[i])}-{attempt}-{uuid.uuid4().hex[:8]}")
            fut.add_done_callback(lambda f, i=i: events.put(("done", (i, f))))
            live[i] = fut

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
                if attempts[i] >= self.resubmit or not _is_infrastructure(exc):
                    if exc is not None:
                        raise exc
                    raise RuntimeError(f"Dask task {fut.key} for {name(items[i])} was cancelled")
                attempts[i] += 1
                if state["shared"].status != "finished":
                    scatter()
                submit(i, attempts[i])
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
            if topic:
                try:
                    client.unsubscribe_topic(topic)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    pass
            if state["shared"] is not None:
                state["shared"].release()


def make_executor(client=None, n_threads=None):
    """:class:`DaskExecutor` on ``client``, or a :class:`LocalExecutor` when it is None."""
    return LocalExecutor(n_threads) if client is None else DaskExecutor(client, n_threads=n_threads)


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


def _dask_task(fn, item, shared, topic, n_threads):
    worker = _worker()

    def emit(event):
        if worker is not None and topic:
            worker.log_event(topic, event)

    with _TASK_LOCK:
        try:
            return fn(item, shared, TaskContext(emit=emit, n_threads=_numba_threads(n_threads, worker)))
        except (ValueError, FileNotFoundError) as e:
            return _InputError(e)


# ---------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------
def _resources(client):
    """``{fastenc: 1}`` when every worker advertises the resource, else None (never hang)."""
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # older distributed: no n_workers argument
        workers = client.scheduler_info()["workers"]
    if workers and all(FASTENC_RESOURCE in (w.get("resources") or {}) for w in workers.values()):
        return {FASTENC_RESOURCE: 1}
    return None


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
