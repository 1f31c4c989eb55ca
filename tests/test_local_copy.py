"""fileio.local_copy: remote inputs (gs://) copied once into the host's shared cache."""

import os
import threading

from cambrian import fileio


def test_local_paths_are_returned_as_they_are(tmp_path):
    assert fileio.local_copy(str(tmp_path), str(tmp_path / "cache")) == str(tmp_path)
    assert not (tmp_path / "cache").exists()


def test_folder_is_copied_once_and_again_when_an_object_changes(gcs, tmp_path):
    gcs.put_bytes("ckpt/config.json", b"{}")
    gcs.put_bytes("ckpt/sub/model.safetensors", b"weights-1")
    cache = str(tmp_path / "cache")
    first = fileio.local_copy(gcs.url("ckpt"), cache)
    assert open(os.path.join(first, "sub", "model.safetensors"), "rb").read() == b"weights-1"
    assert fileio.local_copy(gcs.url("ckpt"), cache) == first  # same generations: no download
    gcs.put_bytes("ckpt/sub/model.safetensors", b"weights-2")  # a new generation
    second = fileio.local_copy(gcs.url("ckpt"), cache)
    assert second != first
    assert open(os.path.join(second, "sub", "model.safetensors"), "rb").read() == b"weights-2"
    assert not [n for n in os.listdir(os.path.dirname(first)) if n.endswith(".partial")]


def test_single_file_keeps_its_name_and_only_filters(gcs, tmp_path):
    gcs.put_bytes("m/vit-b-300ep.pth.tar", b"x")
    gcs.put_bytes("m/tokenizer.json", b"{}")
    path = fileio.local_copy(gcs.url("m/vit-b-300ep.pth.tar"), str(tmp_path))
    assert path.endswith("/vit-b-300ep.pth.tar") and os.path.isfile(path)
    tok = fileio.local_copy(gcs.url("m"), str(tmp_path), only=("tokenizer*",))
    assert os.listdir(tok) == ["tokenizer.json"]


def test_concurrent_workers_share_one_copy(gcs, tmp_path):
    for i in range(4):
        gcs.put_bytes(f"built/shard-{i}", bytes([i]) * 1000)
    got, errors = [], []

    def worker():
        try:
            got.append(fileio.local_copy(gcs.url("built"), str(tmp_path)))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(got)) == 1
    assert sorted(os.listdir(got[0])) == [f"shard-{i}" for i in range(4)]
    assert all(os.path.getsize(os.path.join(got[0], f"shard-{i}")) == 1000 for i in range(4))
