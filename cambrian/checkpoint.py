"""Checkpoints with orbax: model state, optimizer state and data-iterator state, atomically.

Each checkpoint step holds ``state`` (a pytree of arrays: ``params`` and, while a stage is running,
``opt``), ``meta`` (JSON: stage, step within the stage, finished stages, config hash) and ``data``
(grain's iterator state, one small JSON file per process, so every host resumes at its own next
batch). Orbax writes into a temporary directory and commits it only when every item of every host
is complete, so a crash mid-save never leaves a checkpoint that restores; saves are asynchronous
(arrays are copied to host memory, then written while training continues).

Restores read each array straight into the requested sharding: every host reads only the shards
it holds, and the mesh may differ from the one that wrote the checkpoint. Paths may be local or
``gs://``.
"""

from __future__ import annotations

import json

import grain
import jax
import orbax.checkpoint as ocp

from cambrian import fileio


def manager(workdir: str, keep: int, *, asynchronous: bool = True,
            read_only: bool = False) -> ocp.CheckpointManager:
    """The manager of ``<workdir>/checkpoints`` keeping the last ``keep`` steps."""
    return ocp.CheckpointManager(
        fileio.join(fileio.absolute(workdir), "checkpoints"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max(keep, 1), create=not read_only, read_only=read_only,
            enable_async_checkpointing=asynchronous),
        item_names=("state", "meta", "data"))


def save(mngr: ocp.CheckpointManager, step: int, state: dict, meta: dict,
         data_iter=None, *, force: bool = True) -> None:
    """Starts writing ``step`` (returns once arrays are on host when asynchronous)."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(_IteratorState(data_iter))
    mngr.save(step, args=ocp.args.Composite(**items), force=force)


class _IteratorState:
    """The iterator's position now: an asynchronous save may serialise it after training has
    already drawn the next batches. Written in the same JSON as grain's own handler."""

    def __init__(self, it):
        self._state = json.dumps(it.get_state(), indent=4).encode()

    def get_state(self) -> bytes:
        return self._state


def latest(mngr: ocp.CheckpointManager) -> int | None:
    return mngr.latest_step()


def abstract(tree):
    """Concrete arrays -> ``jax.ShapeDtypeStruct`` with their shardings (a restore target)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: dict,
            data_iter=None) -> tuple[dict, dict]:
    """Restores ``state`` onto the shardings of ``abstract_state`` (a tree of
    ``jax.ShapeDtypeStruct`` with ``.sharding``, any mesh) and, given ``data_iter``, sets that
    iterator to the saved position. Returns (state, meta)."""
    items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    out = mngr.restore(step, args=ocp.args.Composite(**items))
    return out["state"], out["meta"]


def restore_meta(mngr: ocp.CheckpointManager, step: int) -> dict:
    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
