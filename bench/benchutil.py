"""Small helpers shared by the benchmark suites (environment options, peak-memory probes, the
machine's description)."""
import os
import platform


def env_int(name, default):
    """Integer option from the environment (unset or empty: ``default``)."""
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_ints(name, default):
    """Comma-separated integers from the environment (unset or empty: ``default``)."""
    v = os.environ.get(name, "").strip()
    return [int(x) for x in v.split(",") if x.strip()] if v else list(default)


#: Source of two functions for the child processes that measure peak memory: ``status_mb(key)``
#: reads ``VmRSS`` / ``VmHWM`` of /proc/self/status in MB, ``reset_hwm()`` resets ``VmHWM``
#: (Linux >= 4.0; ``ru_maxrss`` cannot be reset and, in a child started by fork + exec, also
#: counts the parent's memory at the fork). Returns False where the reset is not possible.
PROC_MEMORY = r'''
def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")

def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
'''


def machine_description() -> dict:
    """CPU model, usable cores, Numba threads, BLAS and the versions of the packages a benchmark
    compares (informational: printed and stored beside the timings)."""
    import numba
    import numpy as np
    import scipy

    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in ("sklearn", "himalaya"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    blas = "?"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name', '?')} {b.get('version', '')}".strip()
    except Exception:  # noqa: BLE001  (informational only)
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return dict(cpu=model, cores=cores, numba_threads=numba.get_num_threads(), python=platform.python_version(),
                numpy=np.__version__, blas=blas, numba=numba.__version__, scipy=scipy.__version__, **versions)
