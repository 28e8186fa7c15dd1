"""Tests of the command line (fastenc.cli): exit codes and messages, in-process and via ``python cli.py``."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastenc import __version__
from fastenc.cli import check_out_folder, main
from fastenc.datasets import make_demo
from fastenc.io import load_neural
from fastenc.study.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("cli") / "demo")


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def cli(*args, cwd=None):
    """``python cli.py ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=300)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fastenc: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastenc {__version__}"
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastenc {__version__}"


@pytest.mark.parametrize("command", ["run-all", "regress"])
def test_out_is_an_existing_file(demo, tmp_path, capsys, command):
    target = tmp_path / "results.csv"
    target.write_text("keep me")
    rc, out, err = run([command, "--data-dir", demo, "--out", target, "--quiet"], capsys)
    line = _one_error_line(err)
    assert rc == 2 and "--out must be a folder" in line and f"{target} is an existing file" in line
    assert "Errno" not in line and target.read_text() == "keep me"
    # a path below a file cannot be created either
    rc, out, err = run([command, "--data-dir", demo, "--out", target / "sub", "--quiet"], capsys)
    line = _one_error_line(err)
    assert rc == 2 and f"{target} (a parent of {target / 'sub'}) is an existing file" in line


def test_out_is_an_existing_file_subprocess(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("x")
    proc = cli("run-all", "--out", target, "--quiet")
    assert proc.returncode == 2
    assert "--out must be a folder" in _one_error_line(proc.stderr) and str(target) in proc.stderr
    proc = cli("demo", "--out", target)
    assert proc.returncode == 2 and "must be a folder" in _one_error_line(proc.stderr)
    assert target.read_text() == "x"


def test_check_out_folder(tmp_path):
    assert check_out_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_out_folder(tmp_path) == tmp_path


@pytest.mark.parametrize("command", ["run-all", "regress"])
def test_unknown_model_suggests_nearest(demo, tmp_path, capsys, command):
    rc, out, err = run([command, "--data-dir", demo, "--out", tmp_path / "o", "--models", "DemoCN", "--quiet"],
                       capsys)
    line = _one_error_line(err)
    assert rc == 2 and "unknown model or model set 'DemoCN'; did you mean 'DemoCNN'" in line
    assert "python cli.py models --data-dir DIR" in line


def _table(out: str) -> dict:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}


def test_models_lists_present_models_and_sets(demo, tmp_path, capsys):
    rc, out, err = run(["models", "--data-dir", demo], capsys)
    assert rc == 0 and err == ""
    rows = _table(out)
    assert rows["DemoCNN"][-4:] == ["h5", "6", "yes", "yes"]
    assert rows["DemoTransformer"][-4:] == ["per_sound_pickle", "5", "yes", "yes"]
    assert rows["spectemp"][-2:] == ["yes", "-"]  # no permuted version exists
    assert "AST" not in rows and "3 of 38 registry models have activations here" in out
    assert rows["DEMO_MODEL_LIST"][1] == "3/3" and rows["FIG_2_5_MODEL_LIST"][1:3] == ["1/20", "spectemp"]
    assert "FIG_8_MODEL_LIST" not in rows  # no member present

    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    (copy / "model_actv/DemoCNN/natsound_activations_randnetw.h5").unlink()
    rc, out, _ = run(["models", "--data-dir", copy, "--all"], capsys)
    rows = _table(out)
    assert rc == 0 and rows["DemoCNN"][-2:] == ["yes", "no"]
    assert rows["AST"][-2:] == ["no", "no"] and rows["FIG_8_MODEL_LIST"][1] == "0/8"

    rc, out, err = run(["models", "--data-dir", tmp_path / "nowhere"], capsys)
    assert rc == 2 and "is not a data root" in _one_error_line(err)


def test_nan_policy(demo, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    folder = data / "data/neural/NH2015"
    Y = np.load(folder / "voxel_features_array.npy")
    meta = np.load(folder / "voxel_features_meta.npy")
    kept = np.flatnonzero(meta["n_reps"] == 3)
    position = int(next(i for i, k in enumerate(kept) if k != i))
    column = int(kept[position])
    Y[60, column, 0] = np.nan
    np.save(folder / "voxel_features_array.npy", Y)
    args = ["regress", "--data-dir", data, "--models", "spectemp", "--targets", "NH2015", "--quiet"]

    rc, out, err = run([*args, "--out", tmp_path / "raise"], capsys)
    line = _one_error_line(err)
    assert rc == 2 and f"voxel_id {meta['voxel_id'][column]} (array index [:, {column}, :]" in line
    assert "--nan-policy omit" in line and "nan_policy='omit'" in line

    rc, out, err = run([*args, "--out", tmp_path / "omit", "--nan-policy", "omit"], capsys)
    assert rc == 0 and "Traceback" not in err
    r2 = ResultStore(tmp_path / "omit").read("NH2015", "spectemp", False, "avgpool", names=["r2_test"])["r2_test"]
    assert r2.shape[0] == load_neural(data, "NH2015").n_targets
    assert np.isnan(r2[position]).all() and np.isfinite(np.delete(r2, position, axis=0)).all()

    with pytest.raises(SystemExit) as info:
        main([*map(str, args), "--out", str(tmp_path / "x"), "--nan-policy", "ignore"])
    assert info.value.code == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# run-all, demo and bad input, in process (no Dask needed)
# ---------------------------------------------------------------------------------------------
def test_run_all_prints_the_headline_tables_of_the_csvs(demo, tmp_path, capsys):
    import pandas as pd
    out_dir = tmp_path / "out"
    rc, out, err = run(["run-all", "--data-dir", demo, "--out", out_dir, "--models", "spectemp", "DemoCNN",
                        "--targets", "NH2015", "--no-figures"], capsys)
    assert rc == 0 and "Traceback" not in err
    # a log, not a terminal: one progress line per ~10 % of a stage, the phases named
    assert len([line for line in err.splitlines() if line.startswith("regression [")]) <= 10
    assert "fastenc: preparing RSA" in err and "fastenc: run-all finished" in err
    assert "fastenc: drawing figures" not in err
    # the printed table is the CSV's, rounded
    csv = pd.read_csv(out_dir / "across-models_NH2015.csv")
    block = out.split("across-models_NH2015: ")[1].split("\n\n")[0].splitlines()[2:]
    printed = [(line.split()[-3], float(line.split()[-2])) for line in block]
    assert printed == [(str(r), round(v, 3)) for r, v in zip(csv["randnetw"], csv["median_r2_test_c_mean"])]
    rsa = pd.read_csv(out_dir / "rsa_across-models_NH2015.csv")
    rsa_all = rsa[rsa["roi"] == "All"]
    block = out.split("rsa_across-models_NH2015 (all voxels)")[1].strip().splitlines()[2:]
    assert [float(line.split()[-3]) for line in block] == [round(v, 3) for v in rsa_all["rsa_mean"]]
    # a second run reuses every unit
    rc, _, err = run(["run-all", "--data-dir", demo, "--out", out_dir, "--models", "spectemp", "DemoCNN",
                      "--targets", "NH2015", "--no-figures", "--no-rsa"], capsys)
    assert rc == 0 and "(0 units computed, of which 0 recomputed because inputs changed, 13 reused)" in err


def test_run_all_pdf_on_request_and_no_stale_pdf(demo, tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = ["run-all", "--data-dir", demo, "--out", out_dir, "--models", "spectemp", "--targets", "NH2015", "--no-rsa"]
    rc, _, err = run(args + ["--pdf"], capsys)
    assert rc == 0, err
    pngs = sorted((out_dir / "figures").glob("*.png"))
    assert pngs and all(p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-" for p in pngs)
    rc, _, err = run(args, capsys)  # without --pdf: the PNGs are redrawn, the older PDFs removed
    assert rc == 0, err
    assert sorted((out_dir / "figures").glob("*.png")) == pngs and not list((out_dir / "figures").glob("*.pdf"))


def test_demo_command_writes_a_data_root(tmp_path, capsys):
    from fastenc.io import load_stimuli
    rc, out, _ = run(["demo", "--out", tmp_path / "d"], capsys)
    assert rc == 0 and out.strip() == str(tmp_path / "d")
    assert len(load_stimuli(tmp_path / "d")) == 165
    assert (tmp_path / "d" / "model_actv").is_dir()
    rc, out, _ = run(["demo", "--out", tmp_path / "d"], capsys)       # complete: returned as is
    assert rc == 0 and out.strip() == str(tmp_path / "d")


def test_run_all_bad_input_exit_code(demo, tmp_path, capsys):
    rc, _, err = run(["run-all", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "o", "--quiet"], capsys)
    assert rc == 2 and "is not a data root" in _one_error_line(err)
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    (data / "data/neural/NH2015/voxel_features_array.npy").write_bytes(b"not an array")
    rc, _, err = run(["run-all", "--data-dir", data, "--out", tmp_path / "o", "--quiet", "--targets", "NH2015",
                      "--models", "spectemp"], capsys)
    assert rc == 2 and "voxel_features_array.npy" in _one_error_line(err)
    rc, _, err = run(["run-all", "--data-dir", demo, "--out", tmp_path / "o", "--quiet", "--models", "NoSuchNet"],
                     capsys)
    assert rc == 2 and "NoSuchNet" in _one_error_line(err)
