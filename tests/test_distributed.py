"""fastenc on Dask: identical results, worker and driver crashes survived, partial files never trusted.

One LocalCluster of 2 worker processes (1 thread each) is shared by the module; the reference is
a single-process run of the same models on the same demo.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("distributed")

from fastenc.study import run as pipeline  # noqa: E402
from fastenc.constants import TARGETS  # noqa: E402
from fastenc.datasets import make_demo  # noqa: E402
from fastenc.study.executors import make_client  # noqa: E402
from fastenc.study.store import ResultStore  # noqa: E402

from .h5util import h5_content  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ["DemoCNN", "spectemp"]          # 3 versions, 7 layers, 21 units per target
N_UNITS = (6 + 6 + 1) * 3


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("dist") / "demo")


@pytest.fixture(scope="module")
def reference(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "ref"
    pipeline.run_all(demo, out, models=MODELS, progress=False, figures=False)
    return out


@pytest.fixture(scope="module")
def client():
    c, cluster = make_client(cluster="local:2")
    yield c
    c.close()
    cluster.close()


@pytest.fixture
def cl(client):
    client.wait_for_workers(2, timeout=60)  # a killed worker is restarted by its nanny
    return client


def units(out):
    return sorted(p.relative_to(out) for p in (Path(out) / "regression").rglob("*.h5"))


def assert_same_results(out, ref, csv=False):
    """Every unit file bit-identical to the reference (arrays, summary, attrs); CSVs byte-equal."""
    assert units(out) == units(ref)
    for rel in units(ref):
        assert h5_content(Path(out) / rel) == h5_content(Path(ref) / rel), rel
    if csv:
        names = sorted(p.relative_to(ref) for p in Path(ref).rglob("*.csv"))
        assert names and names == sorted(p.relative_to(out) for p in Path(out).rglob("*.csv"))
        for rel in names:
            assert (Path(out) / rel).read_bytes() == (Path(ref) / rel).read_bytes(), rel


# ---------------------------------------------------------------------------------------------
# client construction
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, msg", [
    ({}, "exactly one"),
    ({"scheduler": "tcp://h:1", "cluster": "local:2"}, "exactly one"),
    ({"scheduler": "localhost:8786"}, "tcp://HOST:PORT"),
    ({"scheduler": "tcp://host"}, "tcp://HOST:PORT"),
    ({"scheduler": "tcp://host:99999"}, "tcp://HOST:PORT"),
    ({"scheduler": "/no/such/scheduler.json"}, "does not exist"),
    ({"cluster": "local:0"}, "local:N"),
    ({"cluster": "slurm:4"}, "local:N"),
    ({"cluster": "local:two"}, "local:N"),
    ({"cluster": "local:2", "threads_per_worker": 0}, "threads_per_worker"),
])
def test_make_client_rejects_malformed_specs(kw, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        make_client(**kw)


def test_unreachable_scheduler_is_a_clear_oserror():
    with pytest.raises(OSError, match="could not connect to the Dask scheduler at tcp://127.0.0.1:9"):
        make_client(scheduler="tcp://127.0.0.1:9", timeout=1)


def test_dask_not_imported_without_cluster_options(demo, tmp_path):
    code = ("import sys, fastenc, fastenc.cli, fastenc.study, fastenc.pipeline, fastenc.analysis_stage\n"
            f"fastenc.cli.main(['regress', '--data-dir', {str(demo)!r}, '--out', {str(tmp_path)!r}, "
            "'--models', 'spectemp', '--targets', 'NH2015comp', '--quiet'])\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# identical results
# ---------------------------------------------------------------------------------------------
def test_distributed_run_all_identical_to_local(cl, demo, reference, tmp_path):
    out = tmp_path / "dask"
    tables = pipeline.run_all(demo, out, models=MODELS, progress=False, figures=False, client=cl)
    reg = tables["regression_units"]
    assert len(reg) == N_UNITS and set(reg["status"]) == {"done"}
    assert not reg.duplicated(["target", "model", "randnetw", "layer"]).any()
    assert_same_results(out, reference, csv=True)  # regression units, analysis and RSA tables


def test_input_error_on_worker_surfaces_with_its_message(cl, demo, reference, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    h5 = data / "model_actv" / "DemoCNN" / "natsound_activations.h5"
    h5.write_bytes(h5.read_bytes()[:4096])
    out = tmp_path / "out"
    shutil.copytree(reference / "regression" / "NH2015comp", out / "regression" / "NH2015comp")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "regression").rglob("*.h5")}
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=re.escape(str(h5)) + r".*DemoCNN.*truncated or corrupt"):
        pipeline.run_regression(data, out, models=["DemoCNN"], targets=["NH2015", "NH2015comp"],
                                progress=False, client=cl)
    assert time.perf_counter() - t0 < 30  # not retried over and over
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "regression").rglob("*.h5")} == before


# ---------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------
def _task_tag(version_dir: str) -> str:
    return version_dir.replace("_randnetw", "-randnetw")


def test_worker_killed_mid_task_is_retried(cl, demo, reference, tmp_path):
    out = tmp_path / "out"
    pids = cl.run(os.getpid)
    killed = {}

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for f in (out / "regression").rglob("*.h5") if (out / "regression").exists() else []:
                version = f.parent.name
                if not version.startswith("DemoCNN"):
                    continue
                pattern = re.compile(rf"^fastenc-regress-{re.escape(_task_tag(version))}-\d+-[0-9a-f]{{8}}$")
                for addr, keys in cl.processing().items():
                    if any(pattern.match(str(k)) for k in keys) and addr in pids:
                        n_written = len(list((out / "regression").rglob(f"{version}/*.h5")))
                        os.kill(pids[addr], signal.SIGKILL)
                        killed.update(addr=addr, version=version, n_written=n_written, t=time.time())
                        return
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    reg = pipeline.run_regression(demo, out, models=MODELS, progress=False, client=cl)
    th.join(5)
    assert killed, "no DemoCNN task was seen running"
    assert killed["n_written"] < 18, "the worker was killed after its task had finished"  # 6 layers x 3
    # the task was re-run elsewhere: its version has units written after the kill
    late = [p for p in (out / "regression").rglob(f"{killed['version']}/*.h5") if p.stat().st_mtime > killed["t"]]
    assert late
    assert len(reg) == N_UNITS and set(reg["status"]) == {"done"}
    assert_same_results(out, reference)


def test_driver_killed_then_rerun_skips_finished_units(cl, demo, reference, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "cli.py", "regress", "--data-dir", str(demo), "--out", str(out),
                             "--models", *MODELS, "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (out / "regression").exists() and len(units(out)) >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    finished = {rel: (out / rel).stat().st_mtime_ns for rel in units(out)}
    assert 3 <= len(finished) < N_UNITS
    reg = pipeline.run_regression(demo, out, models=MODELS, progress=False, client=cl)
    status = {Path("regression", t, f"{m}_randnetw" if r else m, f"{layer}.h5"): s
              for t, m, r, layer, s, _ in reg.itertuples(index=False)}
    assert len(status) == N_UNITS
    assert {rel for rel, s in status.items() if s == "skipped"} == set(finished)
    assert {rel: (out / rel).stat().st_mtime_ns for rel in finished} == finished  # untouched
    assert not list((out / "regression").rglob(".*.tmp-*"))
    assert_same_results(out, reference)


def test_partial_unit_files_are_never_read_as_complete(cl, demo, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference / "regression", out / "regression")
    truncated = Path("regression/NH2015/DemoCNN/conv3.h5")
    data = (out / truncated).read_bytes()
    (out / truncated).write_bytes(data[: len(data) // 2])
    unflagged = Path("regression/B2021/DemoCNN_randnetw/fc.h5")  # complete flag never set
    with h5py.File(out / unflagged, "r+") as f:
        del f.attrs["complete"]
        f["r2_test_c"][0, 0] = 123.0
    leftover = out / "regression/NH2015/DemoCNN/.conv4.h5.tmp-99999"
    leftover.write_bytes(b"half a file")
    store = ResultStore(out)
    with h5py.File(reference / truncated, "r") as f:
        inputs = {k[len("input_"):]: v for k, v in f.attrs.items() if k.startswith("input_")}
    assert store.is_complete("NH2015", "DemoCNN", False, "conv2", inputs) is False  # other activations
    assert store.check("NH2015", "DemoCNN", False, "conv3", inputs)[0] == "incomplete"
    assert store.check("B2021", "DemoCNN", True, "fc", inputs)[0] == "incomplete"

    reg = pipeline.run_regression(demo, out, models=MODELS, progress=False, client=cl)
    redone = {Path("regression", t, f"{m}_randnetw" if r else m, f"{layer}.h5")
              for t, m, r, layer, s, _ in reg.itertuples(index=False) if s == "done"}
    assert redone == {truncated, unflagged}
    assert not leftover.exists()
    assert_same_results(out, reference)


def test_changed_activations_recomputed_on_workers_too(cl, demo, reference, tmp_path):
    """The Dask path applies the reuse rule of the local one: only the units of the changed
    layer are recomputed (and reported with the reason), with the same result as locally."""
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    with h5py.File(data / "model_actv" / "DemoCNN" / "natsound_activations_randnetw.h5", "r+") as f:
        f["conv4"][...] = np.random.default_rng(3).standard_normal(f["conv4"].shape)
    outs = {}
    for how in ("dask", "local"):
        out = outs[how] = tmp_path / how
        shutil.copytree(reference / "regression", out / "regression")
        before = {rel: (out / rel).stat().st_mtime_ns for rel in units(out)}
        reg = pipeline.run_regression(data, out, models=MODELS, progress=False,
                                      client=cl if how == "dask" else None)
        changed = {Path("regression", t, "DemoCNN_randnetw", "conv4.h5") for t in TARGETS}
        assert {rel for rel in units(out) if (out / rel).stat().st_mtime_ns != before[rel]} == changed
        rows = reg[reg["status"] != "skipped"]
        assert set(zip(rows["target"], rows["layer"], rows["status"], rows["reason"])) == \
            {(t, "conv4", "recomputed", "activations changed") for t in TARGETS}
        assert len(reg) == N_UNITS
        assert "recomputed (activations changed)" in (out / "fastenc.log").read_text()
    assert_same_results(outs["dask"], outs["local"])
