"""Dataset manifests (TOML / JSON) for users' own data: loading, checks, scoring."""
import json

import numpy as np
import pandas as pd
import pytest

import fastenc
from fastenc.dataset import load_dataset

from . import naive

N, V, K = 60, 5, 2


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 30))
    Y = (X[:, :4] @ rng.standard_normal((4, V)))[:, :, None] * 0.5 + rng.standard_normal((N, V, K))
    np.save(tmp_path / "responses.npy", Y)
    np.save(tmp_path / "X.npy", X)
    pd.DataFrame({"stimulus_id": [f"img{i:03d}" for i in range(N)],
                  "category": np.resize(["face", "place", "object"], N),
                  "run": np.repeat(np.arange(4), N // 4)}).to_csv(tmp_path / "stimuli.csv", index=False)
    pd.DataFrame({"participant": [1, 1, 2, 2, 2], "roi": ["V1", "V4", "V1", "V4", "IT"]}).to_csv(
        tmp_path / "targets.csv", index=False)
    return tmp_path


def _toml(folder, extra="", splits='scheme = "kfold"\nk = 5\nseed = 0', fname="m.toml", **over):
    keys = {"name": '"vision"', "responses": '"responses.npy"', "stimulus_ids": '"stimuli.csv:stimulus_id"',
            "categories": '"stimuli.csv:category"', "targets": '"targets.csv"'}
    keys.update(over)
    body = "\n".join(f"{k} = {v}" for k, v in keys.items() if v is not None) + "\n" + extra + "\n[splits]\n" + splits + "\n"
    (folder / fname).write_text(body)
    return folder / fname


def test_toml_manifest_loads_and_scores_like_score_layer(folder):
    ds = load_dataset(_toml(folder))
    assert (ds.name, ds.n_stimuli, ds.n_targets, ds.n_repetitions) == ("vision", N, V, K)
    assert ds.stimulus_ids[:2] == ["img000", "img001"] and ds.categories[:3] == ["face", "place", "object"]
    assert list(ds.targets["roi"]) == ["V1", "V4", "V1", "V4", "IT"]
    np.testing.assert_array_equal(ds.splits, fastenc.kfold_splits(N, 5, seed=0))
    X = np.load(folder / "X.npy")
    s = ds.score_layer(X)
    ref = fastenc.score_layer(X, np.load(folder / "responses.npy"), splits=fastenc.kfold_splits(N, 5, seed=0))
    np.testing.assert_array_equal(s.r2_test_c, ref.r2_test_c)
    # and against the brute-force reference for one target and fold
    train, test = np.flatnonzero(ds.splits[0]), np.flatnonzero(~ds.splits[0])
    r = naive.score_voxel_split(X, np.load(folder / "responses.npy")[:, 0, :], train, test,
                                floors=(naive.critical_r_bisect(len(train)), naive.critical_r_bisect(len(test))))
    assert s.r2_test_c[0, 0] == pytest.approx(r["r2_test_c"], abs=1e-8)


def test_json_manifest_and_group_splits(folder):
    (folder / "m.json").write_text(json.dumps({"name": "v", "responses": "responses.npy",
                                               "stimulus_ids": "stimuli.csv:stimulus_id",
                                               "splits": {"scheme": "group", "column": "run"}}))
    ds = load_dataset(folder / "m.json")
    assert ds.splits.shape == (4, N)
    run = pd.read_csv(folder / "stimuli.csv")["run"].to_numpy()
    for row in ds.splits:
        assert len(set(row[run == 0])) == 1


def test_one_repetition_is_uncorrected(folder):
    np.save(folder / "r1.npy", np.load(folder / "responses.npy")[:, :, 0])
    ds = load_dataset(_toml(folder, responses='"r1.npy"'))
    assert ds.n_repetitions == 1
    assert not ds.score_layer(np.load(folder / "X.npy")).noise_corrected


def test_check_stimuli_names_the_first_mismatch(folder):
    ds = load_dataset(_toml(folder))
    ids = list(ds.stimulus_ids)
    ids[3], ids[4] = ids[4], ids[3]
    with pytest.raises(ValueError, match="position 3 is 'img004'"):
        ds.check_stimuli(ids)
    with pytest.raises(ValueError, match="have 59 stimuli"):
        ds.check_stimuli(ids[:-1])


@pytest.mark.parametrize("over, splits, match", [
    (dict(responses='"missing.npy"'), None, "missing.npy does not exist"),
    (dict(stimulus_ids='"stimuli.csv:nope"'), None, "no column 'nope'"),
    ({}, 'scheme = "kfold"\nk = 61', "k = 61 folds for 60 stimuli"),
    ({}, 'scheme = "group"\ncolumn = "one"', "one group"),
    ({}, 'scheme = "magic"', "scheme must be one of"),
    (dict(name=None), None, "missing key 'name'"),
])
def test_bad_manifests(folder, over, splits, match):
    df = pd.read_csv(folder / "stimuli.csv")
    df["one"] = 7
    df.to_csv(folder / "stimuli.csv", index=False)
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_dataset(_toml(folder, splits=splits or 'scheme = "kfold"', **over))


def test_nan_responses(folder):
    Y = np.load(folder / "responses.npy")
    Y[5, 2, 1] = np.nan
    np.save(folder / "responses.npy", Y)
    with pytest.raises(ValueError, match="column 2"):
        load_dataset(_toml(folder))
    ds = load_dataset(_toml(folder, extra='nan_policy = "omit"'))
    s = ds.score_layer(np.load(folder / "X.npy"))
    assert np.isnan(s.r2_test_c[2]).all() and np.isfinite(s.r2_test_c[[0, 1, 3, 4]]).all()


def test_ragged_repetitions_and_wrong_rows(folder):
    np.save(folder / "ragged.npy", np.array([np.zeros(3), np.zeros(2)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="repetitions of different lengths|unreadable"):
        load_dataset(_toml(folder, responses='"ragged.npy"'))
    np.save(folder / "short.npy", np.zeros((N - 1, V, K)))
    with pytest.raises(ValueError, match="60 stimulus ids but the responses have 59 rows"):
        load_dataset(_toml(folder, responses='"short.npy"'))
    with pytest.raises(ValueError, match="cannot be parsed"):
        (folder / "broken.toml").write_text("name = \n")
        load_dataset(folder / "broken.toml")
