"""Checkpoints: round trip, keep-last-K, uncommitted saves are invisible, the data iterator
resumes at the exact next batch, and run files on fsspec URLs.

Remote paths: run-directory files (config, losses, reports) go through fsspec and are tested on
fsspec's in-memory filesystem (``memory://``), which implements the same interface gcsfs does;
this machine has no network and no GCS emulator, so orbax/tensorstore's own ``gs://`` driver is
not exercised here.
"""

import os

import grain
import jax
import jax.numpy as jnp
import numpy as np

from cambrian import checkpoint, fileio


def _iterator(n=40, batch=4):
    ds = grain.MapDataset.range(n).seed(7).shuffle().to_iter_dataset()
    return iter(ds.batch(batch))


def test_save_restore_keep_and_exact_next_batch(tmp_path):
    wd = str(tmp_path)
    mngr = checkpoint.manager(wd, keep=2)
    it = _iterator()
    for _ in range(3):
        next(it)
    state = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}, "opt": {"count": jnp.int32(3)}}
    for step in (1, 2, 3):
        checkpoint.save(mngr, step, state, {"stage": "stage1", "stage_step": step}, it)
    expected = next(it)  # drawn while the last save may still be writing
    mngr.wait_until_finished()
    assert mngr.all_steps() == [2, 3] and checkpoint.latest(mngr) == 3

    fresh = _iterator()
    target = checkpoint.abstract(state)
    got, meta = checkpoint.restore(checkpoint.manager(wd, keep=2), 3, target, fresh)
    assert meta == {"stage": "stage1", "stage_step": 3}
    np.testing.assert_array_equal(got["params"]["w"], state["params"]["w"])
    assert int(got["opt"]["count"]) == 3
    np.testing.assert_array_equal(next(fresh), expected)
    assert checkpoint.restore_meta(mngr, 2)["stage_step"] == 2


def test_uncommitted_checkpoint_is_not_restored(tmp_path):
    wd = str(tmp_path)
    mngr = checkpoint.manager(wd, keep=3)
    checkpoint.save(mngr, 1, {"x": jnp.ones(3)}, {"stage": "s"})
    mngr.wait_until_finished()
    # what a process killed mid-save leaves: orbax's temporary folder, never renamed
    os.makedirs(os.path.join(wd, "checkpoints", "2.orbax-checkpoint-tmp-1234", "state"))
    assert checkpoint.latest(checkpoint.manager(wd, keep=3)) == 1


def test_restore_onto_a_different_sharding(tmp_path):
    """Saved unsharded, restored with a target sharding: arrays come back placed on it."""
    mngr = checkpoint.manager(str(tmp_path), keep=1)
    x = jnp.arange(16.0).reshape(4, 4)
    checkpoint.save(mngr, 5, {"x": x}, {})
    mngr.wait_until_finished()
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "fsdp"))
    sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp"))
    got, _ = checkpoint.restore(mngr, 5, {"x": jax.ShapeDtypeStruct((4, 4), jnp.float32,
                                                                   sharding=sh)})
    assert got["x"].sharding == sh
    np.testing.assert_array_equal(got["x"], x)


def test_run_files_on_an_fsspec_url():
    root = "memory://runs/probe"
    assert fileio.is_remote(root) and fileio.absolute(root) == root
    path = fileio.join(root, "predictions/", "/bench.jsonl")
    assert path == "memory://runs/probe/predictions/bench.jsonl"
    fileio.write_text(fileio.join(root, "config.json"), '{"a": 1}')
    assert fileio.read_text(fileio.join(root, "config.json")) == '{"a": 1}'
    with fileio.open_file(path, "w") as fh:  # parent folder created on the fly
        fh.write("x\n")
    assert fileio.exists(path) and fileio.read_text(path) == "x\n"
    assert not fileio.exists(fileio.join(root, "report.json"))
    assert fileio.absolute("rel/dir") == os.path.abspath("rel/dir")
