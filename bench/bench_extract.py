"""Benchmark of fastenc.extract: how much of an extraction is the model's own forward pass.

Run (prints a summary; ~1-2 min on 2 cores)::

    python -m pytest bench/bench_extract.py -p no:cacheprovider -s
    python bench/bench_extract.py            # same summary without pytest-benchmark

Needs ``pip install -e ".[extract,bench]"``. The data root is the demo (``make_demo``) plus 165
synthetic 2 s sounds at 20 kHz (the study's rate) written as 16-bit PCM wav files; the model runs at
16 kHz, so every sound is read *and resampled* (``scipy.signal.resample_poly``), as with the
study's files.

Model: a ResNet-like 1-D network on the waveform (stem conv 80/4 + BN + ReLU + max-pool 4, four
stages of two basic blocks, 32-64-128-256 channels, strides 1-2-2-2, global average pool, linear
head): ~1.0 M parameters, 61 leaf modules. Two layer selections:

* ``leaves``: the default, every leaf module (61 layers: each conv, BN, ReLU ...), the worst case
  for the hooks;
* ``blocks``: stem, the 8 residual blocks and the head (10 layers), what one usually stores.

Timed (``FASTENC_BENCH_EXTRACT_ROUNDS`` rounds, default 3, alternating; the best of each is kept;
``FASTENC_BENCH_TORCH_THREADS`` sets ``torch.set_num_threads``, default torch's own; on a shared,
oversubscribed machine 1 thread gives steadier numbers):

* ``extract(..., permuted=True)`` end to end: reading + resampling the 165 sounds, two forward
  passes over them (trained, permuted weights), hooks, pooling, checks, permutation, h5 writing
  and the manifest; its ``timings`` break this down;
* the bare model: ``model(x)`` on the same batches (eval, ``no_grad``, batch 8, no hooks), twice,
  as the reference "model's forward pass".

Overhead = (best extract total - best 2 x bare forward) / extract total, in wall time (with and
without the audio reading, which any extraction needs but which is not per layer) and in CPU time
of the process (``time.process_time``; steadier than wall time on a shared machine).
"""
from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
from torch import nn  # noqa: E402

from fastenc import extract as ex  # noqa: E402
from fastenc.datasets import make_demo  # noqa: E402
from fastenc.io import load_stimuli  # noqa: E402

MODEL_RATE = 16000
FILE_RATE = 20000
BATCH = 8
ROUNDS = int(os.environ.get("FASTENC_BENCH_EXTRACT_ROUNDS", 3))
THREADS = int(os.environ.get("FASTENC_BENCH_TORCH_THREADS", 0))
if THREADS:
    torch.set_num_threads(THREADS)
SUMMARY: dict[str, dict] = {}


# ----------------------------------------------------------------------------- the model
class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.down = (nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
                     if stride != 1 or c_in != c_out else None)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        skip = x if self.down is None else self.down(x)
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + skip)


class ResNet1d(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256), strides=(1, 2, 2, 2)):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv1d(1, widths[0], 80, stride=4, padding=38, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool1d(4))
        blocks, c = [], widths[0]
        for w, s in zip(widths, strides):
            blocks += [Block(c, w, s), Block(w, w, 1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(c, 128)
        self.sample_rate = MODEL_RATE
        for m in self.modules():          # non-trivial BN statistics, as in a trained network
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.head(self.flatten(self.pool(self.blocks(self.stem(x.unsqueeze(1))))))


BLOCK_LAYERS = ["stem"] + [f"blocks.{i}" for i in range(8)] + ["head"]


# ----------------------------------------------------------------------------- data
def make_root(folder) -> Path:
    root = make_demo(Path(folder) / "demo")
    stimuli = root / "data" / "stimuli"
    stimuli.mkdir(parents=True, exist_ok=True)
    for i, stim in enumerate(load_stimuli(root)["stim_id"]):
        rng = np.random.default_rng(i)
        t = np.arange(2 * FILE_RATE) / FILE_RATE
        wave = 0.3 * np.sin(2 * np.pi * (100 + 20 * i) * t) + 0.1 * rng.standard_normal(len(t))
        sf.write(stimuli / f"{stim}.wav", wave.astype(np.float32), FILE_RATE, subtype="PCM_16")
    return root


def bare_forward(model, audio) -> tuple[float, float]:
    """(wall, CPU) seconds of model(x) over the sounds, batch BATCH, eval + no_grad, no hooks."""
    model.eval()
    wall = cpu = 0.0
    with torch.no_grad():
        for start in range(0, len(audio), BATCH):
            x = torch.from_numpy(audio[start:start + BATCH])
            w0, c0 = time.perf_counter(), time.process_time()
            model(x)
            wall += time.perf_counter() - w0
            cpu += time.process_time() - c0
    return wall, cpu


def run_case(root, case: str) -> dict:
    model = ResNet1d()
    layers = None if case == "leaves" else BLOCK_LAYERS
    stim_paths = [root / "data" / "stimuli" / f"{s}.wav" for s in load_stimuli(root)["stim_id"]]
    audio = np.stack([ex.load_sound(p, MODEL_RATE)[0] for p in stim_paths])
    permuted = ex.permute_parameters(model, 0)
    bare_forward(model, audio[:BATCH])                        # warm-up (allocator, oneDNN kernels)
    best, fwd_wall, fwd_cpu, ext_cpu = None, np.inf, np.inf, np.inf
    for _ in range(ROUNDS):                                   # alternate, keep the best of each
        w1, c1 = bare_forward(model, audio)
        w2, c2 = bare_forward(permuted, audio)
        fwd_wall, fwd_cpu = min(fwd_wall, w1 + w2), min(fwd_cpu, c1 + c2)
        c0 = time.process_time()
        res = ex.extract(model, root, f"Bench_{case}", layers=layers, progress=False, overwrite=True,
                         batch_size=BATCH)
        ext_cpu = min(ext_cpu, time.process_time() - c0)
        if best is None or res.timings["total"] < best.timings["total"]:
            best = res
    t = best.timings
    row = dict(layers=len(best.layers), units=sum(best.units.values()), total=t["total"], bare_forward=fwd_wall,
               total_cpu=ext_cpu, bare_forward_cpu=fwd_cpu,
               read_audio=t["read_audio"], forward_in_extract=t["forward"], hooks=t["hooks"],
               collect=t["collect"], permute=t["permute"], write=t["write"])
    row["overhead"] = (row["total"] - fwd_wall) / row["total"]
    row["overhead_cpu"] = (ext_cpu - fwd_cpu) / ext_cpu
    row["overhead_without_audio"] = (row["total"] - row["read_audio"] - fwd_wall) / (row["total"] - row["read_audio"])
    SUMMARY[case] = row
    return row


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return (f"{cpu}, {cores} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")


def print_summary():
    print(f"\nfastenc.extract benchmark (165 sounds, 20 kHz files -> {MODEL_RATE} Hz, trained + permuted, "
          f"batch {BATCH}, best of {ROUNDS})")
    print(f"  machine: {machine()}")
    for case, d in SUMMARY.items():
        print(f"  {case:6s}: {d['layers']:3d} layers, {d['units']:5d} units")
        print(f"    wall: extract {d['total']:6.2f} s = bare model forward {d['bare_forward']:5.2f} s + fastenc "
              f"{d['total'] - d['bare_forward']:5.2f} s -> overhead {100 * d['overhead']:4.1f} % "
              f"({100 * d['overhead_without_audio']:4.1f} % without reading the sounds)")
        print(f"    CPU:  extract {d['total_cpu']:6.2f} s = bare model forward {d['bare_forward_cpu']:5.2f} s + fastenc "
              f"{d['total_cpu'] - d['bare_forward_cpu']:5.2f} s -> overhead {100 * d['overhead_cpu']:4.1f} %")
        print(f"    extract timings (wall): read+resample {d['read_audio']:.2f} s, forward with hooks "
              f"{d['forward_in_extract']:.2f} s (inside hooks {d['hooks']:.2f} s), collect/check {d['collect']:.2f} s, "
              f"permute {d['permute']:.3f} s, write {d['write']:.3f} s")


# ----------------------------------------------------------------------------- pytest-benchmark
@pytest.fixture(scope="module")
def root():
    folder = tempfile.mkdtemp(prefix="fastenc_bench_extract_")
    yield make_root(folder)
    shutil.rmtree(folder, ignore_errors=True)
    print_summary()


@pytest.mark.parametrize("case", ["leaves", "blocks"])
def test_extract_overhead(benchmark, root, case):
    row = benchmark.pedantic(run_case, args=(root, case), rounds=1, iterations=1)
    benchmark.extra_info.update(row)
    assert row["layers"] == (61 if case == "leaves" else 10)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="fastenc_bench_extract_") as folder:
        data = make_root(folder)
        for name in ("leaves", "blocks"):
            run_case(data, name)
    print_summary()
    sys.exit(0)
