"""fastenc.extract: activations of a PyTorch model for the 165 sounds, in the study's h5 layout."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")
from torch import nn  # noqa: E402

import fastenc  # noqa: E402
from fastenc import extract as ex  # noqa: E402
from fastenc.datasets import make_demo  # noqa: E402
from fastenc.io import load_stimuli  # noqa: E402

SR = 8000
N_SAMPLES = 2 * SR


# ---------------------------------------------------------------------------------------------
# tiny models
# ---------------------------------------------------------------------------------------------
class TinyConv(nn.Module):
    """(batch, samples) -> conv/ReLU(inplace)/conv/ReLU(inplace)/pool/flatten/fc."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv1d(1, 6, 32, stride=8)
        self.relu1 = nn.ReLU(inplace=True)   # overwrites conv1's output: the hook must copy it
        self.conv2 = nn.Conv1d(6, 8, 8, stride=4)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool1d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, 5)

    def forward(self, x):
        x = self.relu1(self.conv1(x.unsqueeze(1)))
        x = self.relu2(self.conv2(x))
        return self.fc(self.flatten(self.pool(x)))

    def reference(self, x):
        """Every layer's output, without in-place operations."""
        out = {}
        out["conv1"] = self.conv1(x.unsqueeze(1))
        out["relu1"] = torch.relu(out["conv1"])
        out["conv2"] = self.conv2(out["relu1"])
        out["relu2"] = torch.relu(out["conv2"])
        out["pool"] = self.pool(out["relu2"])
        out["flatten"] = out["pool"].reshape(len(x), -1)
        out["fc"] = self.fc(out["flatten"])
        return out


TINY_CONV_LAYERS = ["conv1", "relu1", "conv2", "relu2", "pool", "flatten", "fc"]


class TinyTransformer(nn.Module):
    """Conv embedding (batch, channels, time), then a transformer on (batch, time, features)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Conv1d(1, 16, 64, stride=64)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.final = nn.Linear(16, 16)
        self.sample_rate = SR

    def forward(self, x):
        return self.final(self.encoder(self.embed(x.unsqueeze(1)).transpose(1, 2)))


def tiny_conv_factory():
    return TinyConv(), SR


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def _write_sounds(root, rate=SR, seconds=2.0, channels=1, only=None, skip=(), zero=()):
    stim_ids = load_stimuli(root)["stim_id"].tolist()
    folder = Path(root) / "data" / "stimuli"
    folder.mkdir(parents=True, exist_ok=True)
    for i, stim in enumerate(stim_ids):
        if stim in skip or (only is not None and i not in only):
            continue
        rng = np.random.default_rng(i)
        n = int(round(seconds * rate))
        wave = 0.1 * rng.standard_normal((n, channels)) + 0.2 * np.sin(np.arange(n) * (0.01 + 0.001 * i))[:, None]
        if i in zero:
            wave[:] = 0
        sf.write(folder / f"{stim}.wav", wave.astype(np.float32), rate, subtype="FLOAT")
    return stim_ids


def _read(path):
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo data root with 2 s, 8 kHz mono sounds for its 165 stimulus ids."""
    root = make_demo(tmp_path_factory.mktemp("extract") / "demo")
    _write_sounds(root)
    return root


@pytest.fixture(scope="module")
def conv_result(demo):
    return ex.extract(TinyConv(), demo, "TinyConv", sample_rate=SR, progress=False)


def _small_root(demo, tmp_path):
    """A root with only the stimulus list (sounds are written by each test)."""
    root = tmp_path / "root"
    (root / "data" / "neural" / "NH2015").mkdir(parents=True)
    src = Path(demo) / "data" / "neural" / "NH2015" / "neural_stim_meta.npy"
    (root / "data" / "neural" / "NH2015" / "neural_stim_meta.npy").write_bytes(src.read_bytes())
    return root


def _h5(path):
    with h5py.File(path, "r") as fh:
        layers = [x.decode() for x in fh["layer_list"][()]]
        return layers, {l: fh[l][()] for l in layers}, dict(fh.attrs)


def _all_sounds(root):
    stim_ids = load_stimuli(root)["stim_id"].tolist()
    return torch.from_numpy(np.stack([_read(Path(root) / "data" / "stimuli" / f"{s}.wav")[:, 0] for s in stim_ids]))


# ---------------------------------------------------------------------------------------------
# the main path
# ---------------------------------------------------------------------------------------------
def test_import_without_torch():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import fastenc\n"
            "assert 'fastenc.extract' not in sys.modules\n"
            "assert callable(fastenc.extract.extract)\n"      # lazy attribute: the module
            "import fastenc.extract, fastenc.cli\n"
            "fastenc.cli._parser()\n"
            "assert 'torch' not in sys.modules\n"
            "try:\n    fastenc.extract.HEARModel\nexcept ImportError as e:\n    print('hint' if 'pip install' in str(e) else e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hint"


def test_h5_layout_and_manifest(demo, conv_result):
    assert conv_result.layers == TINY_CONV_LAYERS
    assert set(conv_result.paths) == {"trained", "randnetw"}
    folder = Path(demo) / "model_actv" / "TinyConv"
    assert conv_result.paths["trained"] == folder / "natsound_activations.h5"
    assert sorted(p.name for p in folder.iterdir()) == ["natsound_activations.h5", "natsound_activations_randnetw.h5"]
    with h5py.File(conv_result.paths["trained"], "r") as fh:
        assert fh["layer_list"].dtype.kind == "S"
        assert [x.decode() for x in fh["layer_list"][()]] == TINY_CONV_LAYERS
        assert set(fh.keys()) == {"layer_list", *TINY_CONV_LAYERS}
        for layer in TINY_CONV_LAYERS:
            assert fh[layer].dtype == np.float32 and fh[layer].shape == (165, conv_result.units[layer])
        assert fh.attrs["sample_rate"] == SR and "permutation_seed" not in fh.attrs
    assert conv_result.units == {"conv1": 6, "relu1": 6, "conv2": 8, "relu2": 8, "pool": 8, "flatten": 32, "fc": 5}
    with h5py.File(conv_result.paths["randnetw"], "r") as fh:
        assert fh.attrs["permutation_seed"] == 0 and bool(fh.attrs["randnetw"])
    manifest = json.loads((Path(demo) / "fastenc_models.json").read_text())
    assert manifest["models"]["TinyConv"] == {"display_name": "TinyConv", "storage": "h5",
                                              "layers": TINY_CONV_LAYERS, "has_randnetw": True}
    assert {"DemoCNN", "DemoTransformer"} <= set(manifest["models"])        # other entries kept
    assert manifest["model_sets"]["DEMO_MODEL_LIST"]
    assert not list(folder.glob(".*tmp*")) and not list(Path(demo).glob(".*tmp*"))
    # the loader reads it like any study model
    acts = fastenc.io.open_model(demo, "TinyConv")
    assert acts.load_layer("fc").shape == (165, 5)


def test_rows_are_time_means_of_the_layer_outputs(demo, conv_result):
    _, stored, _ = _h5(conv_result.paths["trained"])
    with torch.no_grad():
        ref = TinyConv().reference(_all_sounds(demo))
    for layer in TINY_CONV_LAYERS:
        out = ref[layer]
        expected = (out.mean(dim=-1) if out.ndim == 3 else out).numpy()
        np.testing.assert_allclose(stored[layer], expected, rtol=1e-5, atol=1e-6, err_msg=layer)
    # conv1 was stored before the in-place ReLU overwrote it
    assert (stored["conv1"] < 0).any() and (stored["relu1"] >= 0).all()


def test_second_extraction_identical_and_permutation_seeded(demo, conv_result):
    _, first, _ = _h5(conv_result.paths["trained"])
    _, first_perm, attrs = _h5(conv_result.paths["randnetw"])
    for layer in TINY_CONV_LAYERS:
        assert first_perm[layer].shape == first[layer].shape
        assert not np.array_equal(first_perm[layer], first[layer])
    again = ex.extract(TinyConv(), demo, "TinyConv", sample_rate=SR, progress=False, overwrite=True, batch_size=8)
    _, second, _ = _h5(again.paths["trained"])
    _, second_perm, _ = _h5(again.paths["randnetw"])
    for layer in TINY_CONV_LAYERS:
        assert np.array_equal(first[layer], second[layer])
        assert np.array_equal(first_perm[layer], second_perm[layer])
    other = ex.extract(TinyConv(), demo, "TinyConvSeed1", sample_rate=SR, progress=False, seed=1)
    _, seed1_perm, attrs1 = _h5(other.paths["randnetw"])
    assert attrs1["permutation_seed"] == 1
    assert not np.array_equal(seed1_perm["fc"], first_perm["fc"])
    # permute_parameters: a permutation of each tensor, reproducible, model untouched
    model = TinyConv()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a, b, c = ex.permute_parameters(model, 0), ex.permute_parameters(model, 0), ex.permute_parameters(model, 1)
    for (name, p), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        orig = before[name]
        assert torch.equal(p, pb) and not torch.equal(p, pc)
        assert torch.equal(torch.sort(p.reshape(-1)).values, torch.sort(orig.reshape(-1)).values)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_run_all_scores_the_extracted_model(demo, conv_result, tmp_path):
    import pandas as pd

    fastenc.run_all(demo, tmp_path / "out", models=["TinyConv"], targets=["NH2015"], figures=False, progress=False)
    df = pd.read_csv(tmp_path / "out" / "across-models_NH2015.csv")
    assert "TinyConv" in set(df["source_model"])
    assert set(df.loc[df["source_model"] == "TinyConv", "randnetw"].astype(str)) == {"False", "True"}


def test_transformer_layers_time_axis_and_list_layers(demo):
    model = TinyTransformer()
    infos = dict(ex.list_layers(model))
    assert infos["embed"] == (1, 16, 250) and infos["encoder.layers.0"] == (1, 250, 16)
    assert infos["encoder.layers.0.self_attn"] == (1, 250, 16)      # tuple output: first tensor
    leaves = [n for n, _ in ex.list_layers(model, leaves_only=True)]
    assert leaves[0] == "embed" and leaves[-1] == "final" and "encoder.layers.0" not in leaves
    assert ex.default_layers(model) == leaves
    layers = ["encoder.layers.1", "embed", "encoder.layers.0", "final"]     # stored in this order
    axes = {"encoder.layers.0": 1, "encoder.layers.1": 1, "final": 1}
    res = ex.extract(model, demo, "TinyTransformer", layers=layers, time_axis=axes, progress=False,
                     permuted=False, batch_size=16)
    assert res.layers == layers and "randnetw" not in res.paths
    stored_layers, stored, _ = _h5(res.paths["trained"])
    assert stored_layers == layers
    x = _all_sounds(demo)
    with torch.no_grad():
        model.eval()
        emb = model.embed(x.unsqueeze(1))
        h0 = model.encoder.layers[0](emb.transpose(1, 2))
        h1 = model.encoder.layers[1](h0)
        fin = model.final(h1)
    expected = {"embed": emb.mean(-1), "encoder.layers.0": h0.mean(1), "encoder.layers.1": h1.mean(1),
                "final": fin.mean(1)}
    for layer, value in expected.items():
        np.testing.assert_allclose(stored[layer], value.numpy(), rtol=1e-4, atol=1e-5, err_msg=layer)
    manifest = json.loads((Path(demo) / "fastenc_models.json").read_text())
    assert manifest["models"]["TinyTransformer"]["has_randnetw"] is False


class InplaceEverywhere(nn.Module):
    """Each layer's output is overwritten in place right after it returns."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv1d(1, 4, 64, stride=64)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv(x.unsqueeze(1))
        torch.relu_(h)
        z = self.fc(h.mean(-1))
        return torch.relu_(z)


def test_outputs_are_copied_before_in_place_operations(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    model = InplaceEverywhere()
    x = _all_sounds(root)
    with torch.no_grad():
        conv = model.conv(x.unsqueeze(1))
        fc = model.fc(torch.relu(conv).mean(-1))
    assert (conv < 0).any() and (fc < 0).any()
    # time-mean (conv) and kept 2-D output (fc)
    res = ex.extract(model, root, "A", layers=["conv", "fc"], sample_rate=SR, progress=False, permuted=False)
    stored = _h5(res.paths["trained"])[1]
    np.testing.assert_allclose(stored["conv"], conv.mean(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored["fc"], fc.numpy(), rtol=1e-5, atol=1e-6)
    # a pool callable returning views
    def first_frame(t):
        return t[..., 0] if t.ndim == 3 else t
    res = ex.extract(model, root, "B", layers=["conv", "fc"], sample_rate=SR, progress=False, permuted=False,
                     pool=first_frame)
    stored = _h5(res.paths["trained"])[1]
    np.testing.assert_allclose(stored["conv"], conv[..., 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored["fc"], fc.numpy(), rtol=1e-5, atol=1e-6)
    # no pooling: every value, flattened
    res = ex.extract(model, root, "C", layers=["conv"], sample_rate=SR, progress=False, permuted=False, pool="none")
    np.testing.assert_allclose(_h5(res.paths["trained"])[1]["conv"], conv.reshape(165, -1).numpy(),
                               rtol=1e-5, atol=1e-6)


class SharedReLU(nn.Module):
    """One activation module called twice per forward pass, on outputs of different widths."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv1 = nn.Conv1d(1, 3, 64, stride=32)
        self.conv2 = nn.Conv1d(3, 5, 8, stride=4)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv2(self.act(self.conv1(x.unsqueeze(1)))))


def test_shared_module_keeps_its_last_call(demo, tmp_path, caplog):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    model = SharedReLU()
    with caplog.at_level(logging.WARNING, logger="fastenc.extract"):
        res = ex.extract(model, root, "S", layers=["act", "conv2"], sample_rate=SR, progress=False,
                         permuted=False, batch_size=7)
    assert "'act' of extract S is called 2 times per forward pass" in caplog.text
    assert res.units == {"act": 5, "conv2": 5}
    with torch.no_grad():
        last = torch.relu(model.conv2(torch.relu(model.conv1(_all_sounds(root).unsqueeze(1)))))
    np.testing.assert_allclose(_h5(res.paths["trained"])[1]["act"], last.mean(-1).numpy(), rtol=1e-5, atol=1e-6)


def test_device_passed_explicitly(demo, conv_result, tmp_path):
    # device="cpu" given: the model is moved (nowhere), the batches are sent to it with .to(device) and
    # the pooled outputs copied back into the CPU arrays: the same bytes as without device=
    model = TinyConv()
    res = ex.extract(model, demo, "TinyConvCPU", sample_rate=SR, progress=False, device="cpu")
    again = ex.extract(TinyConv(), demo, "TinyConvCPU2", sample_rate=SR, progress=False, device=torch.device("cpu"))
    for version in ("trained", "randnetw"):
        _, ref, _ = _h5(conv_result.paths[version])
        for other in (res, again):
            _, stored, _ = _h5(other.paths[version])
            for layer in TINY_CONV_LAYERS:
                assert np.array_equal(stored[layer], ref[layer]), (version, layer)
    assert all(p.device.type == "cpu" for p in model.parameters()) and model.training    # restored
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    with pytest.raises(ValueError, match="'nodevice' is not a torch device"):
        ex.extract(TinyConv(), root, "D", sample_rate=SR, progress=False, device="nodevice")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ex.extract(TinyConv(), root, "D", sample_rate=SR, progress=False, device="cuda")
    split = TinyConv()
    split.fc.to("meta")
    with pytest.raises(ValueError, match=r"several devices \(cpu, meta\)"):
        ex.extract(split, root, "D", sample_rate=SR, progress=False, device="cpu")
    assert not (root / "model_actv").exists()


def test_sounds_read_in_the_background_or_first(demo, conv_result, tmp_path, monkeypatch):
    import threading

    # the reading plan: in the background while the model runs on an accelerator, all first on the CPU
    monkeypatch.setattr(ex, "_cores", lambda: 4)
    assert ex._reading_plan(torch.device("cpu")) == (4, False)
    assert ex._reading_plan(torch.device("cuda")) == (4, True)
    monkeypatch.setattr(ex, "_cores", lambda: 32)
    assert ex._reading_plan(torch.device("cuda", 1)) == (8, True)
    monkeypatch.undo()
    # every plan stores the same bytes
    _, ref, _ = _h5(conv_result.paths["trained"])
    for plan in [(1, True), (3, True), (2, False)]:
        monkeypatch.setattr(ex, "_reading_plan", lambda device, plan=plan: plan)
        res = ex.extract(TinyConv(), demo, "TinyConvPlan", sample_rate=SR, progress=False, overwrite=True,
                         permuted=False, batch_size=8)
        _, stored, _ = _h5(res.paths["trained"])
        assert all(np.array_equal(stored[layer], ref[layer]) for layer in TINY_CONV_LAYERS), plan
        assert 0 <= res.timings["read_audio"] <= res.timings["total"]
    # an unreadable sound met in the middle of the forward pass: the error names it, nothing is
    # written, and no reading thread is left behind
    root = _small_root(demo, tmp_path)
    ids = _write_sounds(root)
    (root / "data" / "stimuli" / f"{ids[100]}.wav").write_bytes(b"not a wav file")
    for plan in [(2, True), (2, False)]:
        monkeypatch.setattr(ex, "_reading_plan", lambda device, plan=plan: plan)
        with pytest.raises(ValueError, match=rf"{ids[100]}\.wav cannot be read"):
            ex.extract(TinyConv(), root, "Bad", sample_rate=SR, progress=False)
        assert not (root / "model_actv").exists()
        assert not [t for t in threading.enumerate() if t.name.startswith("fastenc-sounds")], plan


# ---------------------------------------------------------------------------------------------
# sounds that need work, and bad input
# ---------------------------------------------------------------------------------------------
def test_missing_sound(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    ids = load_stimuli(root)["stim_id"].tolist()
    _write_sounds(root, skip={ids[3], ids[7]})
    with pytest.raises(FileNotFoundError, match=rf"{ids[3]}\.wav \(and 1 more of the 165 sounds\)"):
        ex.extract(TinyConv(), root, "M", sample_rate=SR, progress=False)
    assert not (root / "model_actv").exists()


def test_resampled_stereo_cut_and_padded_sounds(demo, tmp_path, caplog):
    root = _small_root(demo, tmp_path)
    stim_ids = _write_sounds(root, rate=16000, channels=2)           # another rate, stereo
    _write_sounds(root, rate=SR, seconds=1.5, only={4})              # shorter
    _write_sounds(root, rate=SR, seconds=3.0, only={5})              # longer
    with caplog.at_level(logging.INFO, logger="fastenc.extract"):
        res = ex.extract(TinyConv(), root, "M", sample_rate=SR, progress=False, permuted=False)
    text = caplog.text
    assert "resampled 163 of 165 sounds" in text and "16000 Hz (163)" in text and "resample_poly" in text
    assert "163 of 165 sounds have several channels" in text and "averaged to mono" in text
    assert "zero-padded at the end" in text and "cut to their first" in text
    assert len(res.notes) == 4
    from scipy.signal import resample_poly
    folder = root / "data" / "stimuli"
    waves = []
    for i, stim in enumerate(stim_ids):
        data = _read(folder / f"{stim}.wav")
        if i == 4:
            wave = np.concatenate([data[:, 0], np.zeros(N_SAMPLES - len(data), np.float32)])
        elif i == 5:
            wave = data[:N_SAMPLES, 0]
        else:
            wave = resample_poly(data.mean(axis=1, dtype=np.float64), 1, 2)
        assert len(wave) == N_SAMPLES
        waves.append(wave.astype(np.float32))
    with torch.no_grad():
        ref = TinyConv().reference(torch.from_numpy(np.stack(waves)))
    _, stored, _ = _h5(res.paths["trained"])
    np.testing.assert_allclose(stored["conv2"], ref["conv2"].mean(-1).numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(ex.load_sound(folder / f"{stim_ids[4]}.wav", SR)[0], waves[4])


def test_unknown_layer_lists_names(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['conv9'\].*conv1, relu1, conv2, relu2, pool, flatten, fc"):
        ex.extract(TinyConv(), root, "M", layers=["conv1", "conv9"], sample_rate=SR, progress=False)
    with pytest.raises(ValueError, match="time_axis 0"):
        ex.extract(TinyConv(), root, "M", sample_rate=SR, progress=False, time_axis=0)
    with pytest.raises(ValueError, match="time_axis 3 does not fit layer 'conv1'"):
        ex.extract(TinyConv(), root, "M", layers=["conv1"], sample_rate=SR, progress=False, time_axis=3)
    with pytest.raises(ValueError, match="sample rate of model 'TinyConv' is unknown"):
        ex.extract(TinyConv(), root, "M", progress=False)


class Normalise(nn.Module):
    def forward(self, x):
        return x / x.std(dim=-1, keepdim=True)      # 0 / 0 for a silent sound


class NaNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 16, stride=8, bias=False)
        self.norm = Normalise()

    def forward(self, x):
        return self.norm(self.conv(x.unsqueeze(1)))


def test_non_finite_activations(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    stim_ids = _write_sounds(root, zero={11})
    with pytest.raises(ValueError, match=rf"layer 'norm' of extract M: non-finite .*sound '{stim_ids[11]}' \(row 11"):
        ex.extract(NaNModel(), root, "M", sample_rate=SR, progress=False, batch_size=4)
    assert not (root / "model_actv" / "M").exists()


def test_registry_name_clash_and_existing_files(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    with pytest.raises(ValueError, match="'AST' is already a model of the study's registry"):
        ex.extract(TinyConv(), root, "AST", sample_rate=SR, progress=False)
    with pytest.raises(ValueError, match="'DemoCNN' is already a model of .*fastenc_models.json"):
        ex.extract(TinyConv(), demo, "DemoCNN", sample_rate=SR, progress=False)
    with pytest.raises(ValueError, match="folder name"):
        ex.extract(TinyConv(), root, "a/b", sample_rate=SR, progress=False)
    # existing file (no manifest entry): refused, then replaced with overwrite
    target = root / "model_actv" / "Mine" / "natsound_activations.h5"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite"):
        ex.extract(TinyConv(), root, "Mine", sample_rate=SR, progress=False, permuted=False)
    res = ex.extract(TinyConv(), root, "Mine", sample_rate=SR, progress=False, permuted=False, overwrite=True,
                     layers=["fc"])
    assert _h5(res.paths["trained"])[0] == ["fc"]
    res = ex.extract(TinyConv(), root, "AST", sample_rate=SR, progress=False, permuted=False, overwrite=True,
                     layers=["pool"])
    reg = fastenc.registry.load_registry(root)
    assert reg.layers("AST") == ["pool"] and reg.layers("Mine") == ["fc"]


# ---------------------------------------------------------------------------------------------
# adapters
# ---------------------------------------------------------------------------------------------
class FakeHEARNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.sample_rate = SR
        self.frames = nn.Conv1d(1, 12, 400, stride=160)
        self.head = nn.Linear(12, 6)


def _fake_hear(list_output=True):
    hear = types.ModuleType("fake_hear")

    def load_model(model_file="", **kwargs):
        return FakeHEARNet()

    def get_timestamp_embeddings(audio, model):
        e1 = model.frames(audio.unsqueeze(1)).transpose(1, 2)          # (batch, frames, 12)
        e2 = torch.tanh(model.head(e1))                                  # (batch, frames, 6)
        stamps = torch.arange(e1.shape[1]).float().expand(len(audio), -1) * 20.0
        return ([e1, e2] if list_output else e2), stamps

    hear.load_model, hear.get_timestamp_embeddings = load_model, get_timestamp_embeddings
    return hear


def test_hear_adapter(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    hear = _fake_hear()
    wrapped = ex.HEARModel(hear)
    assert wrapped.fastenc_layers == ["embedding_0", "embedding_1"]
    res = ex.extract(wrapped, root, "HEAR", progress=False)                 # rate from the HEAR model
    assert res.layers == ["embedding_0", "embedding_1"] and res.units == {"embedding_0": 12, "embedding_1": 6}
    _, stored, _ = _h5(res.paths["trained"])
    _, permuted, _ = _h5(res.paths["randnetw"])
    with torch.no_grad():
        (e1, e2), _ = hear.get_timestamp_embeddings(_all_sounds(root), wrapped.model)
    np.testing.assert_allclose(stored["embedding_0"], e1.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored["embedding_1"], e2.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(permuted["embedding_1"], stored["embedding_1"])
    single = ex.HEARModel(_fake_hear(list_output=False))
    assert single.fastenc_layers == ["embedding"] and ex.default_layers(single) == ["embedding"]
    with pytest.raises(TypeError, match="not a HEAR-API module"):
        ex.HEARModel(types.ModuleType("nothing"))


class FakeOutput(OrderedDict):
    """Imitates transformers' ModelOutput: a dict whose keys are also attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class FakeHFModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.config = types.SimpleNamespace(num_hidden_layers=2)
        self.feature = nn.Conv1d(1, 8, 80, stride=40)
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])

    def forward(self, input_values, output_hidden_states=False):
        h = self.feature(input_values.unsqueeze(1)).transpose(1, 2)
        hidden = [h]
        for block in self.blocks:
            h = torch.relu(block(h))
            hidden.append(h)
        return FakeOutput(last_hidden_state=h, hidden_states=tuple(hidden) if output_hidden_states else None)


class FakeFeatureExtractor:
    sampling_rate = SR

    def __call__(self, waves, sampling_rate, return_tensors):
        assert sampling_rate == SR and return_tensors == "pt"
        x = torch.tensor(np.stack(waves))
        return {"input_values": (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)}


def test_hf_adapter(demo, tmp_path):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    hf = FakeHFModel()
    wrapped = ex.HFHiddenStates(hf, feature_extractor=FakeFeatureExtractor())
    assert wrapped.sample_rate == SR and wrapped.fastenc_layers == ["hidden_state_0", "hidden_state_1", "hidden_state_2"]
    res = ex.extract(wrapped, root, "HF", progress=False)
    _, stored, _ = _h5(res.paths["trained"])
    x = _all_sounds(root)
    with torch.no_grad():
        hidden = hf((x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True), output_hidden_states=True).hidden_states
    for i, h in enumerate(hidden):
        np.testing.assert_allclose(stored[f"hidden_state_{i}"], h.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    # no feature extractor: the model gets the waveform itself
    plain = ex.HFHiddenStates(FakeHFModel(), sample_rate=SR)
    res = ex.extract(plain, root, "HFplain", progress=False, permuted=False)
    with torch.no_grad():
        h2 = plain.model(x, output_hidden_states=True).hidden_states[2]
    np.testing.assert_allclose(_h5(res.paths["trained"])[1]["hidden_state_2"], h2.mean(1).numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
FACTORY = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(1, 4, 64, stride=32)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x.unsqueeze(1)))

def make():
    return Net(), 8000
'''


def test_cli(demo, tmp_path, capsys):
    from fastenc import cli

    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    factory = tmp_path / "mynets.py"
    factory.write_text(FACTORY)
    assert cli.main(["extract", "--model", f"{factory}:make", "--list-layers"]) == 0
    out = capsys.readouterr().out
    assert "* conv" in out and "(1, 4, 499)" in out and "* act" in out
    code = cli.main(["extract", "--data-dir", str(root), "--model", f"{factory}:make", "--name", "CliNet",
                     "--layers", "act", "conv", "--seed", "5", "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "randnetw:" in captured.out and "CliNet" in captured.out
    layers, stored, _ = _h5(root / "model_actv" / "CliNet" / "natsound_activations.h5")
    assert layers == ["act", "conv"] and stored["conv"].shape == (165, 4)
    assert _h5(root / "model_actv" / "CliNet" / "natsound_activations_randnetw.h5")[2]["permutation_seed"] == 5
    # errors: one line, exit code 2
    assert cli.main(["extract", "--data-dir", str(root), "--model", f"{factory}:make", "--name", "CliNet",
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastenc: error: ") and "overwrite" in err
    assert cli.main(["extract", "--data-dir", str(root), "--model", f"{factory}:nope", "--name", "X"]) == 2
    assert "has no attribute 'nope'" in capsys.readouterr().err
    assert cli.main(["extract", "--model", f"{factory}:make"]) == 2
    assert "--data-dir and --name" in capsys.readouterr().err
    assert cli.main(["extract", "--data-dir", str(root), "--model", f"{factory}:make", "--name", "X",
                     "--device", "nodevice", "--quiet"]) == 2
    assert "'nodevice' is not a torch device" in capsys.readouterr().err


def test_progress_lines_when_not_a_tty(demo, tmp_path, capsys):
    root = _small_root(demo, tmp_path)
    _write_sounds(root)
    ex.extract(TinyConv(), root, "P", sample_rate=SR, permuted=False, batch_size=5, layers=["fc"])
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("extract P")]
    assert 8 <= len(lines) <= 12 and lines[-1].split()[3] == "165/165"


class ConvBN(nn.Module):
    """Convolutions and BatchNorms: the hook of an eval-mode BatchNorm takes its time-mean from its
    input's where that is a stored, unchanged layer output (bn1, bn2); not with batch statistics
    (bn3) nor after its input changed in place (bn4)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv1 = nn.Conv1d(1, 6, 32, stride=8)
        self.bn1 = nn.BatchNorm1d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(6, 8, 8, stride=4)
        self.bn2 = nn.BatchNorm1d(8, affine=False)
        self.bn3 = nn.BatchNorm1d(8, track_running_stats=False)   # batch statistics, also in eval mode
        self.conv3 = nn.Conv1d(8, 8, 1)
        self.bn4 = nn.BatchNorm1d(8)
        for bn in (self.bn1, self.bn2, self.bn4):
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.3, 3.0)
        for bn in (self.bn1, self.bn4):
            bn.weight.data.normal_(1, 0.5)
            bn.bias.data.normal_(0, 0.5)

    def forward(self, x, store=None):
        def keep(name, t):
            if store is not None:
                store[name] = t.clone()
        y = self.conv1(x.unsqueeze(1))
        keep("conv1", y)
        y = self.bn1(y)
        keep("bn1", y)
        y = self.conv2(self.relu(y))
        keep("conv2", y)
        y = self.bn2(y)
        keep("bn2", y)
        y = self.bn3(y)
        keep("bn3", y)
        y = self.conv3(y)
        keep("conv3", y)
        y.add_(0.5)   # in place, after conv3's hook: bn4's input is no longer what conv3's mean was taken of
        y = self.bn4(y)
        keep("bn4", y)
        return y


def test_batchnorm_time_mean_from_its_input_equals_the_direct_mean(demo, monkeypatch):
    layers = ["conv1", "bn1", "conv2", "bn2", "bn3", "conv3", "bn4"]
    derived = []
    affine_mean = ex._Recorder._affine_mean

    def counting(self, bn, inputs, output, axis):
        mean = affine_mean(self, bn, inputs, output, axis)
        derived.append((bn, mean is not None))
        return mean

    monkeypatch.setattr(ex._Recorder, "_affine_mean", counting)
    model = ConvBN()
    res = ex.extract(model, demo, "ConvBN", layers=layers, sample_rate=SR, progress=False, permuted=False,
                     batch_size=8)
    _, stored, _ = _h5(res.paths["trained"])
    ref: dict = {layer: [] for layer in layers}
    model.eval()
    sounds = _all_sounds(demo)
    with torch.no_grad():
        for start in range(0, 165, 8):  # batches of 8 as extract's: bn3's batch statistics depend on them
            out: dict = {}
            model(sounds[start:start + 8], store=out)
            for layer in layers:
                ref[layer].append(out[layer].mean(-1))
    for layer in layers:
        np.testing.assert_allclose(stored[layer], torch.cat(ref[layer]).numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=layer)
    n_batches = -(-165 // 8)
    names = {id(m): n for n, m in model.named_modules()}
    used = {names[id(bn)] for bn, ok in derived if ok}
    assert used == {"bn1", "bn2"}
    assert sum(ok for _, ok in derived) == 2 * n_batches
    assert {names[id(bn)] for bn, _ in derived} == {"bn1", "bn2", "bn3", "bn4"}


class DropoutIdentity(nn.Module):
    """In eval mode Dropout and Identity return their input tensor itself: its time-mean is reused
    (drop, ident), unless the tensor changed in place in between (ident2)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv1d(1, 4, 16, stride=8)
        self.drop = nn.Dropout(0.5)
        self.ident = nn.Identity()
        self.ident2 = nn.Identity()

    def forward(self, x, store=None):
        y = self.ident(self.drop(self.conv(x.unsqueeze(1))))
        if store is not None:
            store["conv"] = y.clone()
        y.mul_(2.0)
        y = self.ident2(y)
        if store is not None:
            store["ident2"] = y.clone()
        return y


def test_outputs_that_are_an_earlier_output_reuse_its_time_mean(demo):
    layers = ["conv", "drop", "ident", "ident2"]
    recorders = []
    init = ex._Recorder.__init__

    def keep(self, *args):
        init(self, *args)
        recorders.append(self)

    model = DropoutIdentity()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex._Recorder, "__init__", keep)
        res = ex.extract(model, demo, "DropIdent", layers=layers, sample_rate=SR, progress=False, permuted=False)
    _, stored, _ = _h5(res.paths["trained"])
    ref: dict = {}
    model.eval()
    with torch.no_grad():
        model(_all_sounds(demo), store=ref)
    assert np.array_equal(stored["drop"], stored["conv"]) and np.array_equal(stored["ident"], stored["conv"])
    np.testing.assert_allclose(stored["conv"], ref["conv"].mean(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stored["ident2"], ref["ident2"].mean(-1).numpy(), rtol=1e-5, atol=1e-6)
    assert np.allclose(stored["ident2"], 2 * stored["conv"], rtol=1e-5, atol=1e-6)  # after the in-place change
    assert sum(r.reused for r in recorders) == 2 * -(-165 // 8)  # drop and ident, every batch
