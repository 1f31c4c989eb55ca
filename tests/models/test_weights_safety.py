"""Pickled checkpoints are read without running code; safetensors are preferred; shards are read
through their index; gs:// checkpoints come through the local cache."""

import argparse
import datetime
import json
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from cambrian.models import weights
from cambrian.models.weights import CheckpointError, open_checkpoint


class Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_code_running_pickle_is_refused_and_does_not_run(tmp_path):
    marker = str(tmp_path / "ran.txt")
    path = str(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as e:
        open_checkpoint(path)
    assert path in str(e.value) and "builtins.exec" in str(e.value)
    assert "CAMBRIAN_PICKLE_ALLOW" in str(e.value)
    assert not os.path.exists(marker)
    torch.load(path, weights_only=False)  # the file really is a payload: the old way runs it
    assert os.path.exists(marker)


def test_namespace_args_load_other_types_are_an_explicit_opt_in(tmp_path, monkeypatch):
    ok = str(tmp_path / "moco.pth.tar")
    torch.save({"args": argparse.Namespace(arch="vit_base", lr=1.5e-4), "epoch": 300,
                "state_dict": {"w": torch.ones(3)}}, ok)
    np.testing.assert_array_equal(open_checkpoint(ok)["w"], np.ones(3, np.float32))

    odd = str(tmp_path / "odd.pth")
    torch.save({"date": datetime.date(2024, 1, 1), "w": torch.ones(1)}, odd)
    with pytest.raises(CheckpointError, match=r"odd\.pth: refusing to unpickle datetime\.date"):
        open_checkpoint(odd)
    monkeypatch.setenv(weights.PICKLE_ALLOW, "datetime.date")
    assert list(open_checkpoint(odd)) == ["date", "w"]


def _shard_index(folder, kind: str, shards: dict[str, dict]):
    index = {"metadata": {}, "weight_map": {k: f for f, sd in shards.items() for k in sd}}
    name = "model.safetensors.index.json" if kind == "st" else "pytorch_model.bin.index.json"
    (folder / name).write_text(json.dumps(index))


def test_sharded_bin_read_through_its_index_and_safetensors_preferred(tmp_path):
    shards = {"pytorch_model-00001-of-00002.bin": {"a": torch.ones(2)},
              "pytorch_model-00002-of-00002.bin": {"b": torch.full((3,), 2.0)}}
    for f, sd in shards.items():
        torch.save(sd, tmp_path / f)
    _shard_index(tmp_path, "bin", shards)
    r = open_checkpoint(str(tmp_path))
    assert sorted(r) == ["a", "b"] and r["b"].tolist() == [2.0, 2.0, 2.0]

    save_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "model.safetensors"))
    assert open_checkpoint(str(tmp_path))["a"].tolist() == [0.0, 0.0]  # safetensors win

    os.remove(tmp_path / "model.safetensors")
    os.remove(tmp_path / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(CheckpointError, match="pytorch_model-00002-of-00002.bin is missing"):
        open_checkpoint(str(tmp_path))


def test_gs_checkpoint_is_read_through_the_cache(gcs, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMBRIAN_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "ckpt"
    local.mkdir()
    save_file({"w": np.arange(4, dtype=np.float32)}, str(local / "model.safetensors"))
    url = gcs.put_dir(str(local), "checkpoints/tiny")
    assert open_checkpoint(url)["w"].tolist() == [0, 1, 2, 3]
    assert os.listdir(tmp_path / "cache" / "remote")
