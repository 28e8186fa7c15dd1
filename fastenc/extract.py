"""Extract layer activations of a PyTorch model for the study's 165 sounds (issue #11).

:func:`extract` runs a ``torch.nn.Module`` on the 165 natural sounds of the data root, pools each
selected layer's output over time and writes the result in the study's on-disk layout, so that
the model is scored like the study's models::

    DATA/model_actv/<name>/natsound_activations.h5            the trained model
    DATA/model_actv/<name>/natsound_activations_randnetw.h5   the same architecture, permuted weights
    DATA/fastenc_models.json                                  <name> added (other entries kept)

then ``fastenc.run_all(DATA, out, models=[name])`` (CLI: ``python cli.py run-all --data-dir DATA
--models NAME``) scores it. Needs PyTorch and soundfile (``pip install -e ".[extract]"``);
``import fastenc.extract`` itself does not import torch.

Command line::

    python cli.py extract --data-dir DATA --model mymodels:make_net --name MyNet
    python cli.py extract --model mymodels:make_net --sample-rate 16000 --list-layers
    python cli.py extract --data-dir DATA --model mymodels:make_net --name MyNet \\
        --layers encoder.layers.0 encoder.layers.1 --time-axis 1 --seed 3 --overwrite

``--model`` names a function ``module.path:factory`` (or ``path/to/file.py:factory``; the current
folder is searched too) that returns the module, or ``(module, sample_rate)``.

What is done, step by step
--------------------------
Sounds
    ``DATA/data/stimuli/<stimulus id>.wav`` for the 165 ids of ``neural_stim_meta.npy``
    (:func:`fastenc.io.load_stimuli`), in that order (the rows of every stored matrix). A missing
    file is an error naming it (and how many others are missing). Each sound is made mono
    (channels averaged; noted in the log), resampled to the model's rate with
    ``scipy.signal.resample_poly`` when its rate differs (noted), and made exactly 2 s long as in
    the study: a longer sound is cut to its first 2 s, a shorter one zero-padded at the end (both
    noted). Samples are float32 (PCM files scaled to [-1, 1]). They are read once per call, for
    both passes, on a few threads; on the CPU all of them before the first batch, and while the
    first batches go through the model when it runs on an accelerator (``device``).
Sample rate
    ``sample_rate=`` if given, else the rate returned by the factory, else the module's
    ``sample_rate`` attribute; otherwise an error asks for it.
Forward pass
    ``model.eval()`` (its training mode is restored afterwards) and ``torch.no_grad()``; the model
    is called on float32 tensors ``(batch, samples)`` on the device of its parameters (or on
    ``device=``, CLI ``--device``, where the model is moved for the call), ``batch_size`` sounds at
    a time. A forward hook on each selected layer *copies* its output as soon as the layer
    returns, so later in-place operations (``ReLU(inplace=True)``) cannot change what is stored:
    the time-mean is computed right there into a new tensor (that is the copy; cloning the full
    output first would add a write of every output to the read the mean needs), and any output
    not reduced there (kept, ``pool="none"``, or handed to a ``pool`` callable) is cloned
    (``detach().clone()``) first. An eval-mode BatchNorm is affine per channel, so the time-mean
    of its output is taken from the time-mean of its input where a hook took that already (its
    input is a stored layer's output, unchanged since): ``mean * scale + shift``, the same values
    within float32 rounding, without reading the output again; a layer that returns the very
    tensor an earlier stored layer returned, unchanged (``Dropout`` in eval mode, ``Identity``),
    gets that layer's time-mean. After each batch the pooled outputs are copied into the
    ``(165, units)`` float32 arrays, on the CPU. A layer whose output is a tuple or list
    (``nn.MultiheadAttention``, LSTMs) or a dict-like object contributes its *first* tensor. A
    module called more than once per forward pass (a shared activation module) keeps its *last*
    call's output; a warning names it.
Layers
    ``layers`` are names of ``model.named_modules()``, stored in the order given; an unknown name
    is an error listing the available ones. Default: the module's ``fastenc_layers`` attribute if
    it has one (the adapters below set it), else every leaf module (no children) that returns a
    tensor, in the order they are called in a forward pass (found by one probe pass on a short
    noise signal). :func:`list_layers` (CLI ``--list-layers``) gives every module's output shape.
Pooling
    ``pool="time-mean"``: mean over the layer output's time axis (``time_axis``; -1 for
    ``(batch, channels, time)``, 1 for sequence models' ``(batch, time, features)``; a dict maps
    layer names to axes, -1 for the others). Outputs that are already ``(batch, features)`` are
    kept as they are. ``pool="none"`` keeps every value; ``pool`` may also be a callable
    ``f(tensor) -> (batch, ...)`` tensor or array. The result is flattened to ``(batch, units)``;
    a NaN or inf is an error naming the layer and the sound.
Storage
    The study's h5 format: a dataset ``layer_list`` (the layer names as bytes) and one float32
    dataset ``(165, units)`` per layer, named by the layer; written under a temporary name and
    renamed, so a killed run never leaves a half-written file. The file's attributes record the
    sample rate, pooling and time axis (and ``permutation_seed`` for the permuted version). The
    model is added to ``DATA/fastenc_models.json`` (``storage: "h5"``, its layers,
    ``has_randnetw``), keeping the other entries. A name that is already a registry model (the
    shipped ones, or those of the data root's manifest), or whose output file exists, is refused
    unless ``overwrite=True``. With ``permuted=False`` the entry says ``has_randnetw: false``
    (an older ``_randnetw`` file of that name is left on disk, unused).
Permuted weights (``permuted=True``)
    As the study's control networks: a copy of the model (``copy.deepcopy``) whose every parameter
    tensor has its entries permuted (flattened, ``torch.randperm`` from one ``torch.Generator``
    seeded with ``seed``, parameters in ``named_parameters()`` order); buffers such as BatchNorm
    running statistics are kept. Same seed, same permutation.

Adapters
--------
A HEAR-API module (``load_model`` / ``get_timestamp_embeddings``, https://hearbenchmark.com):
:class:`HEARModel` wraps it; each embedding returned by ``get_timestamp_embeddings`` is one layer
(``embedding``, or ``embedding_0``, ``embedding_1``, ... when the module returns a list)::

    # mymodels.py
    from fastenc.extract import HEARModel
    def hear_wav2vec2():
        return HEARModel("hearbaseline.wav2vec2", model_file="")   # sample rate from the module

    python cli.py extract --data-dir DATA --model mymodels:hear_wav2vec2 --name hear_w2v2

A Hugging Face audio model (weights fetched on your machine): :class:`HFHiddenStates` stores
every hidden state of ``model(..., output_hidden_states=True)`` as one layer (``hidden_state_0``
= embeddings output, ``hidden_state_k`` = after block k), mean over time::

    from transformers import AutoFeatureExtractor, AutoModel
    from fastenc.extract import HFHiddenStates, extract
    hf = AutoModel.from_pretrained("facebook/wav2vec2-base")
    fe = AutoFeatureExtractor.from_pretrained("facebook/wav2vec2-base")
    extract(HFHiddenStates(hf, feature_extractor=fe), "DATA", "wav2vec2base")   # 16 kHz from fe

Both adapters present each embedding as ``(batch, features, time)``, so the default
``time_axis=-1`` averages over time, and set ``fastenc_layers`` so that only those layers are
stored by default.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

__all__ = [
    "STIMULUS_SECONDS",
    "ExtractResult",
    "extract",
    "list_layers",
    "default_layers",
    "load_sound",
    "permute_parameters",
    "resolve_model",
    "HEARModel",
    "HFHiddenStates",
    "add_parser",
    "main",
]

log = logging.getLogger(__name__)

#: Duration of every sound fed to the model (the study's sounds are 2 s long).
STIMULUS_SECONDS = 2.0
#: Output file names (the study's h5 storage, docs/method.md §1).
TRAINED_FILE = "natsound_activations.h5"
PERMUTED_FILE = "natsound_activations_randnetw.h5"
_POOLS = ("time-mean", "none")


# ---------------------------------------------------------------------------------------------
# torch, lazily
# ---------------------------------------------------------------------------------------------
def _torch():
    try:
        import torch
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != "torch":
            raise
        raise ImportError("fastenc.extract needs PyTorch (and soundfile): "
                          "pip install -e \".[extract]\"  (CPU-only: pip install \"torch==2.13.0+cpu\")") from e
    return torch


def __getattr__(name):
    # the adapter classes subclass torch.nn.Module: built on first access only
    if name in ("HEARModel", "HFHiddenStates"):
        return _adapters()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def _load_factory(spec: str) -> Callable:
    if ":" not in spec:
        raise ValueError(f"model {spec!r} must be 'module.path:factory' (or 'file.py:factory'), "
                         "a function returning a torch.nn.Module or (module, sample_rate)")
    module_name, attr = spec.rsplit(":", 1)
    if not module_name or not attr:
        raise ValueError(f"model {spec!r} must be 'module.path:factory'")
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path} (from --model {spec!r})")
        mod_spec = importlib.util.spec_from_file_location(f"_fastenc_model_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            cwd = os.getcwd()
            if e.name != module_name.split(".")[0] or cwd in sys.path:
                raise
            sys.path.insert(0, cwd)  # `python cli.py extract --model mymodels:f` from the user's folder
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as e2:
                raise ValueError(f"model {spec!r}: cannot import module {module_name!r} ({e2})") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"model {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"model {spec!r}: {attr!r} is not callable")
    return obj


def resolve_model(model, sample_rate: float | None = None):
    """The module and its sample rate.

    Parameters
    ----------
    model : torch.nn.Module or str
        A module, or ``"module.path:factory"`` naming a function that returns the module or
        ``(module, sample_rate)``.
    sample_rate : int, optional
        Wins over the factory's rate and the module's ``sample_rate`` attribute.

    Returns
    -------
    (module, int)
    """
    torch = _torch()
    factory_rate = None
    label = type(model).__name__
    if isinstance(model, str):
        label = model
        built = _load_factory(model)()
        if isinstance(built, tuple):
            if len(built) != 2:
                raise ValueError(f"model factory {model!r} must return a module or (module, sample_rate); "
                                 f"got a tuple of {len(built)}")
            built, factory_rate = built
        model = built
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model {label!r} must be a torch.nn.Module; got {type(model).__name__}")
    rate = sample_rate if sample_rate is not None else factory_rate
    if rate is None:
        rate = getattr(model, "sample_rate", None)
    if rate is None:
        raise ValueError(f"the sample rate of model {label!r} is unknown: pass sample_rate= "
                         "(CLI --sample-rate), return (module, sample_rate) from the factory, or set "
                         "the module's sample_rate attribute")
    declared = factory_rate if factory_rate is not None else getattr(model, "sample_rate", None)
    if sample_rate is not None and declared is not None and float(sample_rate) != float(declared):
        log.warning("sample rate %s Hz given, but model %s declares %s Hz: the sounds are resampled to %s Hz",
                    sample_rate, label, declared, sample_rate)
    rate = float(rate)
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"sample rate must be a positive number; got {rate}")
    return model, int(rate) if rate.is_integer() else rate


def _device_of(model):
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return _torch().device("cpu")


def _as_device(device):
    """``device`` as a ``torch.device`` (None stays None); an error when it cannot be used here."""
    if device is None:
        return None
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available (torch {torch.__version__}: a CPU-only "
                             "build, or no GPU visible)")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available")
    return dev


def _move_model(model, device):
    """Move ``model`` to ``device`` (a torch.device); return where it was (None: not moved)."""
    where = {t.device for t in model.parameters()} | {t.device for t in model.buffers()}
    if not where or where == {device}:
        return None
    if len(where) > 1:
        raise ValueError(f"the model's parameters are on several devices ({', '.join(sorted(map(str, where)))}); "
                         "leave device unset to run it where it is")
    home = where.pop()
    model.to(device)
    return home


def _n_samples(sample_rate: float) -> int:
    return int(round(STIMULUS_SECONDS * sample_rate))


def _first_tensor(output, torch):
    """The tensor of a module's output: itself, or the first tensor of a tuple/list/dict-like."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item, torch)
            if found is not None:
                return found
    return None


def _probe(model, sample_rate, device=None) -> list[tuple[str, tuple | None, bool]]:
    """(name, output shape for one sound or None, is_leaf) of every module, in call order.

    The probe sound is sent to ``device`` (default: where the model's parameters are).
    """
    torch = _torch()
    modules = [(n, m) for n, m in model.named_modules() if n]
    order: dict[str, None] = {}          # insertion-ordered set: first call order
    shapes: dict[str, tuple | None] = {}
    leaf = {n: next(iter(m.children()), None) is None for n, m in modules}

    def pre(name):
        def fn(module, inputs):
            order.setdefault(name, None)
        return fn

    def post(name):
        def fn(module, inputs, output):
            if name not in shapes:
                t = _first_tensor(output, torch)
                shapes[name] = None if t is None else tuple(t.shape)
        return fn

    handles = []
    for name, module in modules:
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    was_training = model.training
    g = torch.Generator().manual_seed(0)
    x = (0.01 * torch.randn(1, _n_samples(sample_rate), generator=g)).to(device if device is not None else _device_of(model))
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(n, shapes.get(n), leaf[n]) for n in order]


def list_layers(model, sample_rate: float | None = None, leaves_only: bool = False) -> list[tuple[str, tuple]]:
    """Names and output shapes of the modules of ``model``, in the order a forward pass calls them.

    One forward pass on 2 s of low-level noise (batch of one). Modules whose output holds no
    tensor, and modules never called, are left out.

    Parameters
    ----------
    model : torch.nn.Module or str
        As for :func:`extract`.
    sample_rate : int, optional
        As for :func:`extract`.
    leaves_only : bool
        Only leaf modules (the default layers of :func:`extract` when the module has no
        ``fastenc_layers``).

    Returns
    -------
    list of (str, tuple)
        ``(name, shape)``, shape including the batch axis of length 1.
    """
    model, rate = resolve_model(model, sample_rate)
    return [(n, s) for n, s, is_leaf in _probe(model, rate) if s is not None and (is_leaf or not leaves_only)]


def default_layers(model, sample_rate: float | None = None) -> list[str]:
    """The layers :func:`extract` stores when ``layers`` is not given (see the module docstring)."""
    model, rate = resolve_model(model, sample_rate)
    return _default_layers(model, rate)


def _default_layers(model, rate, device=None) -> list[str]:
    declared = getattr(model, "fastenc_layers", None)
    if declared is not None:
        return list(declared)
    return [n for n, s, is_leaf in _probe(model, rate, device) if s is not None and is_leaf]


def _check_layers(model, layers: Sequence[str]) -> list[str]:
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one module (or leave it out for the default)")
    names = [n for n, _ in model.named_modules() if n]
    known = set(names)
    unknown = [l for l in layers if l not in known]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; the model's modules are: {', '.join(names)}")
    repeated = sorted({l for l in layers if layers.count(l) > 1})
    if repeated:
        raise ValueError(f"layers repeats {repeated}")
    if "layer_list" in layers:
        raise ValueError("a layer named 'layer_list' cannot be stored (the h5 file's list of layers has that name)")
    return layers


def permute_parameters(model, seed: int = 0):
    """A copy of ``model`` with each parameter tensor's entries randomly permuted.

    ``copy.deepcopy`` of the model; then, for each parameter in ``named_parameters()`` order, its
    flattened entries are permuted by ``torch.randperm(n, generator=g)`` with one
    ``torch.Generator`` seeded with ``seed``. Buffers (e.g. BatchNorm running statistics) are
    kept. The model itself is not changed.
    """
    torch = _torch()
    permuted = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, p in permuted.named_parameters():
            flat = p.detach().reshape(-1)
            order = torch.randperm(flat.numel(), generator=g).to(flat.device)
            p.copy_(flat[order].reshape(p.shape))
    return permuted


# ---------------------------------------------------------------------------------------------
# the sounds
# ---------------------------------------------------------------------------------------------
def _read_wav(path: Path) -> tuple[np.ndarray, float]:
    """(frames, channels) float array and the sample rate."""
    try:
        import soundfile
    except ImportError:
        soundfile = None
    try:
        if soundfile is not None:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            return data, float(rate)
        from scipy.io import wavfile
        rate, data = wavfile.read(str(path))
    except Exception as exc:  # any reader failure means an unreadable sound
        raise ValueError(f"sound {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if data.dtype.kind == "i":
        data = data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "u":
        data = (data.astype(np.float64) - 128.0) / 128.0
    data = np.asarray(data, dtype=np.float32)
    return (data[:, None] if data.ndim == 1 else data), float(rate)


def load_sound(path: str | Path, sample_rate: float, seconds: float = STIMULUS_SECONDS) -> tuple[np.ndarray, dict]:
    """One sound as the model gets it: mono float32, at ``sample_rate``, exactly ``seconds`` long.

    Channels are averaged; a different rate is converted with ``scipy.signal.resample_poly``; a
    longer sound is cut to its first ``seconds``, a shorter one zero-padded at the end.

    Returns
    -------
    (ndarray, dict)
        The samples, and what was done: ``channels``, ``rate``, ``seconds`` of the file, and the
        booleans ``stereo``, ``resampled``, ``cut``, ``padded``.
    """
    from scipy.signal import resample_poly

    path = Path(path)
    data, rate = _read_wav(path)
    frames, channels = data.shape
    if frames == 0:
        raise ValueError(f"sound {path} is empty (0 samples)")
    audio = data.mean(axis=1, dtype=np.float64) if channels > 1 else data[:, 0].astype(np.float64)
    resampled = rate != float(sample_rate)
    if resampled:
        ratio = Fraction(sample_rate).limit_denominator(10_000) / Fraction(rate).limit_denominator(10_000)
        audio = resample_poly(audio, ratio.numerator, ratio.denominator)
    n = int(round(seconds * sample_rate))
    duration = frames / rate
    cut = len(audio) > n
    padded = len(audio) < n
    if cut:
        audio = audio[:n]
    elif padded:
        audio = np.concatenate([audio, np.zeros(n - len(audio))])
    info = dict(channels=channels, rate=rate, seconds=duration, stereo=channels > 1,
                resampled=resampled, cut=cut and abs(duration - seconds) * rate >= 0.5,
                padded=padded and abs(duration - seconds) * rate >= 0.5)
    return audio.astype(np.float32), info


def _sound_paths(data_dir: Path) -> tuple[list[str], list[Path]]:
    from .io import load_stimuli

    stim_ids = load_stimuli(data_dir)["stim_id"].tolist()
    folder = data_dir / "data" / "stimuli"
    paths = [folder / f"{stim}.wav" for stim in stim_ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(paths)} sounds)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"sound file not found: {missing[0]}{more}; the 165 sounds of "
                                f"neural_stim_meta.npy must be in {folder} as <stimulus id>.wav")
    return stim_ids, paths


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _reading_plan(device) -> tuple[int, bool]:
    """(threads that read the sounds, whether they read while the model runs).

    libsndfile and scipy's polyphase filter release the GIL, so the sounds are read on threads
    (up to 8, one per core). When the model runs on an accelerator the CPU is otherwise idle: the
    sounds are read in the background while the first batches go through the model. On the CPU
    they are all read first: reading in the background there saves at most the reading time
    (~0.05 s of ~1.7 s in ``bench/bench_extract.py`` on 2 cores) and, on a busy machine, costs as
    much in a slower forward pass (threads competing for the cores and the GIL).
    """
    threads = min(8, _cores())
    return threads, device.type != "cpu"


class _Sounds:
    """The sounds, as the model gets them: ``load_sound`` of each path, on a few threads, in order.

    :meth:`upto` waits for the first rows only, so the forward pass can start on the first batch
    while the others are read (``background=True``); read once per :func:`extract` call, the
    array serves the trained and the permuted pass. ``waited``: seconds spent waiting for them.
    """

    def __init__(self, paths: list[Path], sample_rate, threads: int, background: bool):
        from concurrent.futures import ThreadPoolExecutor

        self.paths = paths
        self.sample_rate = sample_rate
        self.audio = np.empty((len(paths), _n_samples(sample_rate)), dtype=np.float32)
        self.infos: list = [None] * len(paths)
        self.ready = 0
        self.waited = 0.0
        self.notes: list[str] | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(threads)), thread_name_prefix="fastenc-sounds")
        self._futures = [self._pool.submit(load_sound, path, sample_rate) for path in paths]
        if not background:
            try:
                self.upto(len(paths))
            except BaseException:
                self.close()
                raise

    def upto(self, stop: int) -> np.ndarray:
        """The array of all sounds, rows ``[:stop]`` ready."""
        if self.ready < stop:
            t0 = time.perf_counter()
            try:
                while self.ready < stop:
                    row = self.ready
                    self.audio[row], self.infos[row] = self._futures[row].result()
                    self._futures[row] = None
                    self.ready += 1
            finally:
                self.waited += time.perf_counter() - t0
            if self.ready == len(self.paths):
                self.close()
                self.notes = _sound_notes(self.paths, self.infos, self.sample_rate)
        return self.audio

    def close(self) -> None:
        """Stop reading (the sounds not read yet are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _sound_notes(paths: list[Path], infos: list[dict], sample_rate) -> list[str]:
    """What was done to the sounds, logged and returned (``ExtractResult.notes``)."""
    seen: dict[str, list] = {"stereo": [], "resampled": [], "cut": [], "padded": []}
    rates: Counter = Counter()
    for path, info in zip(paths, infos):
        for kind in seen:
            if info[kind]:
                seen[kind].append((path.name, info))
        if info["resampled"]:
            rates[info["rate"]] += 1
        if any(info[k] for k in seen):
            log.debug("%s: %s", path, info)
    notes = []
    n = len(paths)
    if seen["stereo"]:
        files = seen["stereo"]
        notes.append(f"{len(files)} of {n} sounds have several channels (e.g. {files[0][0]}: "
                     f"{files[0][1]['channels']}); averaged to mono")
        log.warning(notes[-1])
    if seen["resampled"]:
        from_rates = ", ".join(f"{r:g} Hz ({c})" for r, c in sorted(rates.items()))
        notes.append(f"resampled {len(seen['resampled'])} of {n} sounds to the model's {sample_rate:g} Hz "
                     f"with scipy.signal.resample_poly (from {from_rates}; e.g. {seen['resampled'][0][0]})")
        log.info(notes[-1])
    for kind, what in (("cut", "cut to their first"), ("padded", "zero-padded at the end to")):
        if seen[kind]:
            name, info = seen[kind][0]
            notes.append(f"{len(seen[kind])} of {n} sounds are not {STIMULUS_SECONDS:g} s long: {what} "
                         f"{STIMULUS_SECONDS:g} s (e.g. {name}: {info['seconds']:.3f} s)")
            log.warning(notes[-1])
    return notes


# ---------------------------------------------------------------------------------------------
# hooks and pooling
# ---------------------------------------------------------------------------------------------
class _Recorder:
    """Forward hooks that copy, pool and keep each selected layer's output of the current batch."""

    def __init__(self, pool, time_axis, torch):
        self.pool = pool
        self.time_axis = time_axis
        self.torch = torch
        self.outputs: dict = {}
        self.calls: Counter = Counter()
        self.seconds = 0.0
        self.derived = 0   # time-means of BatchNorm outputs taken from their input's (see _affine_mean)
        self.reused = 0    # time-means of outputs that are an earlier stored output, unchanged
        self._means: dict = {}  # id(output) -> (weakref to it, its version, time axis, its time-mean)

    def reset(self):
        self.outputs.clear()
        self.calls.clear()
        self._means.clear()

    def axis_of(self, name):
        if isinstance(self.time_axis, Mapping):
            return int(self.time_axis.get(name, -1))
        return int(self.time_axis)

    def hook(self, name, module=None):
        torch = self.torch
        tensor_type = torch.Tensor
        outputs, calls, means = self.outputs, self.calls, self._means
        clock = time.perf_counter
        # the common case inline: time-mean of a float32/float64 (batch, channels, time) output
        axis = self.axis_of(name)
        inline = isinstance(self.pool, str) and self.pool == "time-mean" and axis in (1, 2, -1, -2)
        inline_dtypes = (torch.float32, torch.float64)
        batchnorm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and axis in (2, -1)

        def fn(module, inputs, output):
            t0 = clock()
            tensor = output if isinstance(output, tensor_type) else _first_tensor(output, torch)
            if tensor is None:
                raise ValueError(f"layer {name!r} returned {type(output).__name__}, which holds no tensor")
            if inline and tensor.ndim == 3 and tensor.dtype in inline_dtypes:
                mean = self._known_mean(tensor, axis)  # an earlier hook pooled this very tensor (eval Dropout)
                if mean is not None:
                    self.reused += 1
                elif batchnorm:
                    mean = self._affine_mean(module, inputs, tensor, axis)
                if mean is None:
                    mean = tensor.detach().mean(dim=axis)     # a new tensor: the copy
                outputs[name] = mean
                means[id(tensor)] = (weakref.ref(tensor), tensor._version, axis, mean)
            else:
                outputs[name] = self._pooled(tensor.detach(), name)
            calls[name] += 1
            self.seconds += clock() - t0
        return fn

    def _known_mean(self, tensor, axis):
        """The time-mean a hook of this batch already took of this very ``tensor`` over ``axis``,
        if it has not changed in place since (its version); else None."""
        seen = self._means.get(id(tensor))
        if seen is not None and seen[0]() is tensor and seen[1] == tensor._version and seen[2] == axis:
            return seen[3]
        return None

    def _affine_mean(self, bn, inputs, output, axis):
        """The time-mean of an eval-mode BatchNorm's (batch, channels, time) ``output`` from the
        time-mean of its input, when a hook took that one already (the input is a stored layer's
        output, unchanged since): the layer is affine per channel, ``y = x * scale + shift``, so
        ``mean_t(y) = mean_t(x) * scale + shift``, equal to the direct mean within float rounding
        and without reading the output again (half the cost of such a layer's hook). None where
        that does not hold (training mode, batch statistics, another input, a changed input)."""
        x = inputs[0] if inputs else None
        if bn.training or bn.running_mean is None or not isinstance(x, self.torch.Tensor) or x.shape != output.shape:
            return None
        x_mean = self._known_mean(x, axis)
        if x_mean is None:
            return None
        scale = self.torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        self.derived += 1
        return (x_mean * scale + shift).to(output.dtype)

    def _pooled(self, t, name):
        """The pooled copy of output ``t``, made now, before later (in-place) operations run.

        The time-mean is computed into a new tensor (it is the copy); any other output (kept as
        it is, ``pool="none"``, or handed to a ``pool`` callable, which may return a view) is first
        cloned (``detach().clone()``).
        """
        torch = self.torch
        if t.ndim == 0:
            raise ValueError(f"layer {name!r} returned a scalar; expected (batch, ...)")
        fresh = False
        if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
            t, fresh = t.float(), True        # a new float32 tensor
        if callable(self.pool):
            t = self.pool(t if fresh else t.clone())
            if not isinstance(t, torch.Tensor):
                t = torch.as_tensor(np.asarray(t))
        elif self.pool == "time-mean" and t.ndim > 2:
            axis = self.axis_of(name)
            resolved = axis + t.ndim if axis < 0 else axis
            if not 1 <= resolved < t.ndim:
                raise ValueError(f"time_axis {axis} does not fit layer {name!r}, whose output has shape "
                                 f"{tuple(t.shape)} (axis 0 is the batch)")
            t = t.mean(dim=resolved)          # a new tensor: the copy
        elif not fresh:
            t = t.clone()
        if t.ndim == 0:
            raise ValueError(f"pooling layer {name!r} gave a scalar; expected (batch, ...)")
        return t.reshape(t.shape[0], -1)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _write_h5(path: Path, layers: list[str], arrays: dict[str, np.ndarray], attrs: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as fh:
            fh.create_dataset("layer_list", data=np.array([l.encode("utf-8") for l in layers]))
            for layer in layers:
                fh.create_dataset(layer, data=arrays[layer].astype(np.float32, copy=False))
            for key, value in attrs.items():
                fh.attrs[key] = value
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_manifest(data_dir: Path, name: str, entry: dict) -> Path:
    from .registry import MANIFEST_FILENAME, load_registry

    path = data_dir / MANIFEST_FILENAME
    if path.is_file():
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"model manifest {path} is not valid JSON ({exc}); fix it or move it away "
                             f"(the activations of {name!r} are written)") from None
        if not isinstance(content, dict):
            raise ValueError(f"model manifest {path} must hold a JSON object")
    else:
        content = {}
    models = content.setdefault("models", {})
    models[name] = entry
    load_registry(manifest=content)  # validate before writing
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"model name {name!r} must be a non-empty folder name without '/' (and not "
                         "starting with '.')")


# ---------------------------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------------------------
@dataclass
class ExtractResult:
    """What :func:`extract` wrote and how long each part took.

    Attributes
    ----------
    name : str
        Model name (folder under ``model_actv/``, manifest entry).
    layers : list of str
        Stored layers, in order.
    units : dict of str to int
        Units (columns) per layer.
    paths : dict of str to Path
        ``"trained"`` and (if permuted) ``"randnetw"`` h5 files.
    manifest : Path
        The manifest the model was added to.
    sample_rate : float
    notes : list of str
        What was done to the sounds (resampled, averaged to mono, cut, padded).
    timings : dict of str to float
        Seconds: ``read_audio`` (waiting for the sounds: reading done in the background while
        the model runs is not counted), ``forward`` (model calls, hooks included, both versions),
        ``hooks`` (inside the hooks: copy and pooling), ``collect`` (into the arrays, checks),
        ``permute``, ``write``, ``total``.
    """

    name: str
    layers: list[str]
    units: dict[str, int]
    paths: dict[str, Path]
    manifest: Path
    sample_rate: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _run_model(model, sounds, device, layers, stim_ids, pool, time_axis, batch_size, label, progress, timings):
    """The pooled activations ``{layer: (sounds, units) float32}`` of ``model`` on ``sounds``."""
    from .progress import Progress

    torch = _torch()
    modules = dict(model.named_modules())
    recorder = _Recorder(pool, time_axis, torch)
    handles = [modules[name].register_forward_hook(recorder.hook(name, modules[name])) for name in layers]
    arrays: dict[str, np.ndarray] = {}
    stores: dict = {}          # torch views of the arrays: copy_ moves to the CPU and casts to float32
    n = len(sounds.paths)
    was_training = model.training
    warned: set = set()
    try:
        model.eval()
        bar = Progress(n, label, enabled=progress)
        with torch.no_grad():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                x = torch.from_numpy(sounds.upto(stop)[start:stop]).to(device)
                recorder.reset()
                t0 = time.perf_counter()
                model(x)
                t1 = time.perf_counter()
                timings["forward"] += t1 - t0
                for name in layers:
                    calls = recorder.calls[name]
                    if calls == 0:
                        raise ValueError(f"layer {name!r} of {label} was not called in the forward pass "
                                         f"(sounds {start}-{stop - 1}); choose layers the model runs "
                                         "(see list_layers / --list-layers)")
                    if calls > 1 and name not in warned:
                        warned.add(name)
                        log.warning("layer %r of %s is called %d times per forward pass; its last call's "
                                    "output is stored", name, label, calls)
                    values = recorder.outputs[name]
                    if values.shape[0] != stop - start:
                        raise ValueError(f"layer {name!r} of {label}: output has {values.shape[0]} rows for a "
                                         f"batch of {stop - start} sounds (axis 0 must be the batch)")
                    store = stores.get(name)
                    if store is None:
                        if values.shape[1] == 0:
                            raise ValueError(f"layer {name!r} of {label} has no units")
                        arrays[name] = np.empty((n, values.shape[1]), dtype=np.float32)
                        store = stores[name] = torch.from_numpy(arrays[name])
                    elif values.shape[1] != store.shape[1]:
                        raise ValueError(f"layer {name!r} of {label}: {values.shape[1]} units for sounds "
                                         f"{start}-{stop - 1}, {store.shape[1]} before")
                    store[start:stop].copy_(values)
                recorder.reset()
                timings["collect"] += time.perf_counter() - t1
                bar.update(stop - start)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    t0 = time.perf_counter()
    for name in layers:                     # one check per layer, on the whole array
        finite = np.isfinite(arrays[name])
        if not finite.all():
            row = int(np.flatnonzero(~finite.all(axis=1))[0])
            raise ValueError(f"layer {name!r} of {label}: non-finite activations (NaN/inf) for "
                             f"sound {stim_ids[row]!r} (row {row}; "
                             f"{int((~finite[row]).sum())} of {finite.shape[1]} units)")
    timings["collect"] += time.perf_counter() - t0
    timings["hooks"] += recorder.seconds
    return arrays


def extract(model, data_dir, name: str, layers: Sequence[str] | None = None, sample_rate: float | None = None,
            pool: str | Callable = "time-mean", permuted: bool = True, seed: int = 0, batch_size: int = 8,
            overwrite: bool = False, time_axis: int | Mapping[str, int] = -1, progress: bool = True,
            display_name: str | None = None, device=None) -> ExtractResult:
    """Extract, pool and store a model's layer activations for the 165 sounds (module docstring).

    Parameters
    ----------
    model : torch.nn.Module or str
        The module, or ``"module.path:factory"`` (the factory returns the module or
        ``(module, sample_rate)``).
    data_dir : str or Path
        Data root (``data/neural/NH2015/neural_stim_meta.npy``, ``data/stimuli/<id>.wav``).
    name : str
        Model name: folder ``model_actv/<name>`` and manifest entry.
    layers : list of str, optional
        ``named_modules()`` names, stored in this order. Default: ``model.fastenc_layers`` if set,
        else every leaf module in call order.
    sample_rate : int, optional
        The model's input rate (else from the factory or ``model.sample_rate``).
    pool : "time-mean", "none" or callable
        Mean over ``time_axis`` (outputs ``(batch, features)`` kept), no pooling, or
        ``f(tensor) -> (batch, ...)``. Flattened to ``(batch, units)`` afterwards.
    permuted : bool
        Also write the permuted-weights version (``natsound_activations_randnetw.h5``).
    seed : int
        Seed of the permutation.
    batch_size : int
        Sounds per forward pass.
    overwrite : bool
        Replace existing output files and a registry model of the same name.
    time_axis : int or dict
        Time axis of the layer outputs (batch is axis 0); a dict maps layer names to axes (-1 for
        layers not in it).
    progress : bool
        Progress over the sounds on stderr.
    display_name : str, optional
        Manifest display name (default: ``name``).
    device : str or torch.device, optional
        Where the model runs (``"cuda"``, ``"cuda:1"``, ``"cpu"``). Default: where its parameters
        are. When given, the model is moved there for the extraction (``model.to(device)``) and
        moved back afterwards. The sounds go there batch by batch; the pooled outputs are copied
        back to the CPU (float32) as each batch is done.

    Returns
    -------
    ExtractResult
    """
    t_start = time.perf_counter()
    _torch()  # fail early, with the install hint, when PyTorch is missing
    data_dir = Path(data_dir)
    _check_name(name)
    if not (pool in _POOLS if isinstance(pool, str) else callable(pool)):
        raise ValueError(f"pool must be one of {list(_POOLS)} or a callable; got {pool!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if isinstance(time_axis, Mapping):
        if any(int(a) == 0 for a in time_axis.values()):
            raise ValueError("time_axis 0 is the batch axis")
    elif int(time_axis) == 0:
        raise ValueError("time_axis 0 is the batch axis; use -1 for (batch, channels, time), 1 for "
                         "(batch, time, features)")

    from .registry import load_registry

    registry = load_registry(data_dir)
    folder = data_dir / "model_actv" / name
    outputs = {"trained": folder / TRAINED_FILE}
    if permuted:
        outputs["randnetw"] = folder / PERMUTED_FILE
    if not overwrite:
        if name in registry:
            where = ("a model of the study's registry" if registry[name].source == "shipped"
                     else f"a model of {registry[name].source}")
            raise ValueError(f"model name {name!r} is already {where}; choose another name or pass "
                             "overwrite=True (CLI --overwrite) to replace it")
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            raise FileExistsError(f"activations of {name!r} exist: {', '.join(existing)}; pass overwrite=True "
                                  "(CLI --overwrite) to replace them")

    stim_ids, paths = _sound_paths(data_dir)
    target = _as_device(device)
    model, rate = resolve_model(model, sample_rate)
    home = _move_model(model, target) if target is not None else None
    sounds = None
    try:
        run_on = target if target is not None else _device_of(model)
        timings = dict.fromkeys(("read_audio", "forward", "hooks", "collect", "permute", "write"), 0.0)
        threads, background = _reading_plan(run_on)
        sounds = _Sounds(paths, rate, threads, background)      # background: also during the probe
        if layers is None:
            layers = _default_layers(model, rate, run_on)
            if not layers:
                raise ValueError(f"model {name!r} has no leaf module returning a tensor; name the layers")
        layers = _check_layers(model, layers)
        batch_size = int(batch_size)
        results = {"trained": _run_model(model, sounds, run_on, layers, stim_ids, pool, time_axis, batch_size,
                                         f"extract {name}", progress, timings)}
        if permuted:
            t0 = time.perf_counter()
            shuffled = permute_parameters(model, seed)
            timings["permute"] = time.perf_counter() - t0
            results["randnetw"] = _run_model(shuffled, sounds, run_on, layers, stim_ids, pool, time_axis,
                                             batch_size, f"extract {name} (permuted)", progress, timings)
            del shuffled
        timings["read_audio"] = sounds.waited
        notes = sounds.notes
    finally:
        if sounds is not None:
            sounds.close()
        if home is not None:
            model.to(home)

    t0 = time.perf_counter()
    attrs = {"fastenc_extract": "fastenc.extract", "sample_rate": float(rate),
             "stimulus_seconds": STIMULUS_SECONDS,
             "pool": pool if isinstance(pool, str) else getattr(pool, "__name__", repr(pool)),
             "time_axis": json.dumps(dict(time_axis)) if isinstance(time_axis, Mapping) else int(time_axis)}
    for version, arrays in results.items():
        extra = {"randnetw": version == "randnetw"}
        if version == "randnetw":
            extra["permutation_seed"] = int(seed)
        _write_h5(outputs[version], layers, arrays, {**attrs, **extra})
    entry = {"display_name": display_name or name, "storage": "h5", "layers": list(layers),
             "has_randnetw": bool(permuted)}
    manifest = _write_manifest(data_dir, name, entry)
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    units = {layer: int(results["trained"][layer].shape[1]) for layer in layers}
    log.info("wrote %d layers of %r to %s", len(layers), name, ", ".join(str(p) for p in outputs.values()))
    return ExtractResult(name=name, layers=list(layers), units=units, paths=outputs, manifest=manifest,
                         sample_rate=rate, notes=notes, timings=timings)


# ---------------------------------------------------------------------------------------------
# adapters (torch.nn.Module subclasses, built on first access)
# ---------------------------------------------------------------------------------------------
_ADAPTERS: dict = {}


def _adapters() -> dict:
    if _ADAPTERS:
        return _ADAPTERS
    torch = _torch()
    nn = torch.nn

    class HEARModel(nn.Module):
        """A HEAR-API module as a fastenc model: one layer per timestamp embedding.

        Parameters
        ----------
        hear : module or str
            The HEAR module (or its import name): ``load_model(model_file, **kwargs)`` returns a
            model with ``sample_rate``; ``get_timestamp_embeddings(audio, model)`` returns
            ``(embeddings, timestamps)``, embeddings ``(batch, frames, features)`` or a list of them.
        model_file : str
            Passed to ``load_model`` ("" for the module's default weights).
        n_embeddings : int, optional
            How many embeddings ``get_timestamp_embeddings`` returns (found by one call on 2 s of
            silence when not given).
        **load_kwargs
            Passed to ``load_model``.

        The layers are ``embedding`` (one tensor) or ``embedding_0``, ``embedding_1``, ...
        (a list), each an ``nn.Identity`` tap on ``(batch, features, frames)`` (time last).
        """

        def __init__(self, hear, model_file: str = "", n_embeddings: int | None = None, **load_kwargs):
            super().__init__()
            if isinstance(hear, str):
                hear = importlib.import_module(hear)
            for needed in ("load_model", "get_timestamp_embeddings"):
                if not callable(getattr(hear, needed, None)):
                    raise TypeError(f"{getattr(hear, '__name__', hear)!r} is not a HEAR-API module: "
                                    f"it has no function {needed}")
            self._embed = hear.get_timestamp_embeddings  # a function: deepcopy keeps it as is
            self.model = hear.load_model(model_file, **load_kwargs)
            self.sample_rate = getattr(self.model, "sample_rate", None)
            if self.sample_rate is None:
                raise ValueError("the HEAR model has no sample_rate attribute")
            if n_embeddings is None:
                with torch.no_grad():
                    n_embeddings = len(self._embeddings(torch.zeros(1, _n_samples(self.sample_rate))))
            names = ["embedding"] if n_embeddings == 1 else [f"embedding_{i}" for i in range(n_embeddings)]
            for tap in names:
                self.add_module(tap, nn.Identity())
            self.fastenc_layers = names

        def _embeddings(self, audio):
            out = self._embed(audio, self.model)
            embeddings = out[0] if isinstance(out, tuple) else out
            return [embeddings] if isinstance(embeddings, torch.Tensor) else list(embeddings)

        def forward(self, audio):
            embeddings = self._embeddings(audio)
            if len(embeddings) != len(self.fastenc_layers):
                raise ValueError(f"get_timestamp_embeddings returned {len(embeddings)} embeddings; "
                                 f"expected {len(self.fastenc_layers)}")
            return [getattr(self, tap)(e.transpose(1, 2)) for tap, e in zip(self.fastenc_layers, embeddings)]

    class HFHiddenStates(nn.Module):
        """A Hugging Face audio model's hidden states as fastenc layers.

        Parameters
        ----------
        model : transformers model
            Called as ``model(input_values, output_hidden_states=True)`` (or with the feature
            extractor's outputs); its output's ``hidden_states`` (or ``["hidden_states"]``) is a
            tuple of ``(batch, frames, features)``.
        feature_extractor : callable, optional
            A ``transformers`` feature extractor: called on the list of waveforms with
            ``sampling_rate`` and ``return_tensors="pt"``; its dict is passed to the model.
        sample_rate : int, optional
            Default: the feature extractor's ``sampling_rate``.
        n_hidden_states : int, optional
            Default: ``model.config.num_hidden_layers + 1``.

        The layers are ``hidden_state_0`` ... ``hidden_state_<n-1>``, ``nn.Identity`` taps on
        ``(batch, features, frames)`` (time last).
        """

        def __init__(self, model, feature_extractor=None, sample_rate: float | None = None,
                     n_hidden_states: int | None = None):
            super().__init__()
            self.model = model
            self.feature_extractor = feature_extractor
            if sample_rate is None and feature_extractor is not None:
                sample_rate = getattr(feature_extractor, "sampling_rate", None)
            self.sample_rate = sample_rate
            if n_hidden_states is None:
                layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
                if layers is None:
                    raise ValueError("pass n_hidden_states: the model has no config.num_hidden_layers")
                n_hidden_states = int(layers) + 1
            names = [f"hidden_state_{i}" for i in range(n_hidden_states)]
            for tap in names:
                self.add_module(tap, nn.Identity())
            self.fastenc_layers = names

        def forward(self, audio):
            if self.feature_extractor is not None:
                inputs = self.feature_extractor(list(audio.cpu().numpy()), sampling_rate=self.sample_rate,
                                                return_tensors="pt")
                inputs = {k: v.to(audio.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
                out = self.model(**inputs, output_hidden_states=True)
            else:
                out = self.model(audio, output_hidden_states=True)
            hidden = getattr(out, "hidden_states", None)
            if hidden is None and isinstance(out, Mapping):
                hidden = out.get("hidden_states")
            if hidden is None:
                raise ValueError("the model's output has no hidden_states")
            if len(hidden) != len(self.fastenc_layers):
                raise ValueError(f"the model returned {len(hidden)} hidden states; expected "
                                 f"{len(self.fastenc_layers)} (pass n_hidden_states)")
            return [getattr(self, tap)(h.transpose(1, 2)) for tap, h in zip(self.fastenc_layers, hidden)]

    HEARModel.__module__ = HFHiddenStates.__module__ = __name__
    _ADAPTERS.update(HEARModel=HEARModel, HFHiddenStates=HFHiddenStates)
    return _ADAPTERS


# ---------------------------------------------------------------------------------------------
# command line (wired into fastenc/cli.py)
# ---------------------------------------------------------------------------------------------
_EPILOG = """examples:
  python cli.py extract --model mymodels:make_net --sample-rate 16000 --list-layers
  python cli.py extract --data-dir DATA --model mymodels:make_net --name MyNet
  python cli.py extract --data-dir DATA --model mymodels:make_net --name MyNet \\
      --layers encoder.layers.0 encoder.layers.1 --time-axis 1 --overwrite
  python cli.py run-all --data-dir DATA --models MyNet
sounds: DATA/data/stimuli/<stimulus id>.wav (made mono, resampled to the model's rate, cut or
zero-padded to 2 s, all noted); output: DATA/model_actv/NAME/natsound_activations[_randnetw].h5 and
NAME added to DATA/fastenc_models.json.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``extract`` subcommand to ``subparsers`` (of ``fastenc.cli``)."""
    p = subparsers.add_parser("extract", help="extract a PyTorch model's layer activations for the 165 sounds "
                                              "and register it (needs: pip install -e \".[extract]\")",
                              epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data root holding data/neural/NH2015 and data/stimuli/<stimulus id>.wav")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="function returning a torch.nn.Module or (module, sample_rate): 'package.module:func' "
                        "or 'file.py:func' (the current folder is searched too)")
    p.add_argument("--name", default=None, help="model name: folder model_actv/NAME and manifest entry")
    p.add_argument("--display-name", default=None, help="name in the figures (default: NAME)")
    p.add_argument("--layers", nargs="+", default=None,
                   help="module names (see --list-layers), in this order (default: every leaf module in call "
                        "order, or the module's fastenc_layers)")
    p.add_argument("--list-layers", action="store_true",
                   help="print every module's output shape for one 2 s sound and exit (* = default layer)")
    p.add_argument("--sample-rate", type=float, default=None,
                   help="the model's sample rate in Hz (default: from the factory or module.sample_rate)")
    p.add_argument("--time-axis", type=int, default=-1,
                   help="time axis of the layer outputs, averaged over: -1 for (batch, channels, time), "
                        "1 for (batch, time, features) (default: -1)")
    p.add_argument("--pool", choices=list(_POOLS), default="time-mean", help="pooling (default: time-mean)")
    p.add_argument("--no-permuted", action="store_true",
                   help="skip the version with permuted weights (natsound_activations_randnetw.h5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight permutation (default: 0)")
    p.add_argument("--batch-size", type=int, default=8, help="sounds per forward pass (default: 8)")
    p.add_argument("--device", default=None,
                   help="where the model runs, e.g. cuda, cuda:1 or cpu (default: where the factory put it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing activation files and a registry model of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress and no notes")
    return p


def _log_to_stderr(quiet: bool) -> None:
    if quiet or log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fastenc extract: %(levelname)s: %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)


def main(args) -> int:
    """Body of ``python cli.py extract`` (``args`` from :func:`add_parser`'s parser); exit code."""
    _log_to_stderr(args.quiet)
    rate = args.sample_rate
    if rate is not None and float(rate).is_integer():
        rate = int(rate)
    try:
        if args.list_layers:
            model, rate = resolve_model(args.model, rate)
            infos = list_layers(model, rate)
            defaults = set(default_layers(model, rate))
            width = max([len("layer")] + [len(n) for n, _ in infos])
            print(f"{args.model}: {len(infos)} modules, sample rate {rate:g} Hz, output shapes for one "
                  f"{STIMULUS_SECONDS:g} s sound (* = stored by default)")
            for layer, shape in infos:
                mark = "*" if layer in defaults else " "
                print(f"{mark} {layer:<{width}}  {tuple(shape)}")
            return 0
        missing = [opt for opt, value in (("--data-dir", args.data_dir), ("--name", args.name)) if value is None]
        if missing:
            raise ValueError(f"extract needs {' and '.join(missing)} (or --list-layers)")
        result = extract(args.model, args.data_dir, args.name, layers=args.layers, sample_rate=rate,
                         pool=args.pool, permuted=not args.no_permuted, seed=args.seed,
                         batch_size=args.batch_size, overwrite=args.overwrite, time_axis=args.time_axis,
                         progress=not args.quiet, display_name=args.display_name, device=args.device)
    except (ValueError, TypeError, FileNotFoundError, OSError, ImportError) as e:
        print(f"fastenc: error: {e}", file=sys.stderr)
        return 2
    for version, path in result.paths.items():
        print(f"{version}: {path}")
    print(f"{len(result.layers)} layers ({', '.join(result.layers[:6])}{', ...' if len(result.layers) > 6 else ''}); "
          f"added {result.name!r} to {result.manifest}")
    print(f"score it: python cli.py run-all --data-dir {args.data_dir} --models {result.name}")
    return 0
