"""Checkpoints with orbax: model state, optimizer state and data-iterator state, atomically.

Each checkpoint step holds ``state`` (a pytree of arrays: ``params`` and, while a stage is running,
``opt``), ``meta`` (JSON: stage, step within the stage, finished stages, config hash) and ``data``
(grain's iterator state, one small JSON file per process, so every host resumes at its own next
batch). Orbax writes into a temporary directory and commits it only when every item of every host
is complete, so a crash mid-save never leaves a checkpoint that restores; saves are asynchronous
(arrays are copied to host memory, then written while training continues).

Restores read each array straight into the requested sharding: every host reads only the shards
it holds, and the mesh may differ from the one that wrote the checkpoint. Paths may be local or
``gs://``. :class:`Resume` says where a rerun continues (the trainer's restore order is written
in ``train.fit``).
"""

from __future__ import annotations

import dataclasses
import json
import logging

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx

from cambrian import fileio

log = logging.getLogger("cambrian")


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
         data_iter=None, *, data_state: dict | None = None, force: bool = True) -> None:
    """Starts writing ``step`` (returns once arrays are on host when asynchronous), with
    ``data_iter``'s position now or an earlier ``data_state`` of it (``get_state()``)."""
    items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
    if data_iter is not None:
        data_state = data_iter.get_state()
    if data_state is not None:
        items["data"] = grain.checkpoint.CheckpointSave(_IteratorState(data_state))
    mngr.save(step, args=ocp.args.Composite(**items), force=force)


class _IteratorState:
    """A position taken now: an asynchronous save may serialise it after training has already
    drawn the next batches. Written in the same JSON as grain's own handler."""

    def __init__(self, state: dict):
        self._state = json.dumps(state, indent=4).encode()

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


# ------------------------------------------------------------------------------------- resume


@dataclasses.dataclass(frozen=True)
class Resume:
    """The checkpoint a rerun continues from: the workdir's latest."""

    step: int  # global step it was written at
    stage: str  # the stage that wrote it
    stage_step: int  # that stage's steps done
    done_stages: dict[str, int]  # finished stage -> global step at its end

    @classmethod
    def latest(cls, mngr: ocp.CheckpointManager) -> Resume | None:
        step = latest(mngr)
        if step is None:
            return None
        meta = restore_meta(mngr, step)
        return cls(step, meta["stage"], meta["stage_step"], meta["done_stages"])


def restore_params(mngr: ocp.CheckpointManager, step: int, params):
    """``params`` (an nnx State) overwritten in place by ``step``'s, on their shardings."""
    state, _ = restore(mngr, step, {"params": abstract(nnx.to_pure_dict(params))})
    nnx.replace_by_pure_dict(params, state["params"])
    return params


def init_from(path: str, params):
    """``params`` from the latest checkpoint of another run (``path``: its workdir)."""
    src = manager(path.removesuffix("/checkpoints"), keep=1, read_only=True)
    step = latest(src)
    if step is None:
        raise FileNotFoundError(f"config.checkpoint={path}: no checkpoint found there; point it "
                                "at a run's workdir (the folder holding checkpoints/)")
    log.info("initialising params from %s step %d", path, step)
    return restore_params(src, step, params)
