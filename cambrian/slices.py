"""Per-slice settings of the real probe configs: the one table the configs read.

``encoders/dinov2.py:v4-128`` (or ``:v4-8``, ``:v5p-128``; any encoder or connector config) runs
the probe as the paper did -- 7B-class LLM, global batch 512 of 2048-token rows, fp32 master
weights and AdamW moments -- with the numerics and memory knobs chosen for that slice:

* ``model.dtype`` / ``model.encoder_dtype`` = bfloat16: the LLM computes in bf16 from its fp32
  masters; frozen towers are stored and run in bf16 (Cambrian-1 casts frozen towers too);
* ``remat``: rematerialise every LLM decoder layer in the backward pass;
* ``grad_accum``: the batch of 512 in that many microbatches, gradients summed over them, so
  the optimizer sees the same batch (rows per chip and microbatch = 512 x tensor / chips /
  grad_accum);
* ``tensor``: chips per tensor-parallel group (``mesh.tensor``, sharding ``fsdp_tp``); weights,
  optimizer state and gradients are sharded over all chips either way (``mesh.fsdp=-1``);
* ``save_every``: steps between checkpoints, 8-16 minutes of training at the step times the
  README estimates, so a preemption without warning loses at most that.

The values were picked with the launcher's dry run (``launch/tpu.py --dry-run --topology``,
``cambrian/aot.py``); the README's "Running on a TPU pod" lists the per-chip memory of each.
"""

from __future__ import annotations

import dataclasses

import ml_collections as mlc


@dataclasses.dataclass(frozen=True)
class Slice:
    remat: str
    grad_accum: dict[str, int]  # stage -> microbatches per step
    save_every: int
    tensor: int = 1  # mesh.tensor (fsdp_tp sharding when > 1); fsdp takes the other chips


SLICES = {
    # 4 chips x 32 GiB. The 7B's fp32 weights, AdamW moments and gradients alone are 25 GiB per
    # chip: stage 2 does not fit (the launcher says so); stage 1 (LLM frozen) runs one row at a
    # time over the 4 chips in tensor parallel.
    "v4-8": Slice(remat="full", grad_accum={"stage1": 512, "stage2": 512}, save_every=5,
                  tensor=4),
    # 64 chips x 32 GiB: tensor parallel within each 4-chip host, one row per 4 chips
    "v4-128": Slice(remat="full", grad_accum={"stage1": 32, "stage2": 32}, save_every=100,
                    tensor=4),
    # 64 chips x 95 GiB: fsdp over all chips, two rows per chip per microbatch
    "v5p-128": Slice(remat="full", grad_accum={"stage1": 4, "stage2": 4}, save_every=200),
}
def arg_defaults() -> dict[str, bool]:
    """The slice names as bare ``:arg`` words, for ``config.parse_arg(arg, **arg_defaults())``."""
    return {name: False for name in SLICES}


def chosen(a: mlc.ConfigDict) -> str:
    """The slice named in parsed ``:arg`` knobs ("" for none); naming two is an error."""
    from cambrian.config import ConfigError

    named = [name for name in SLICES if a[name]]
    if len(named) > 1:
        raise ConfigError(f"config arguments name several slices ({', '.join(named)}); pick one")
    if named and "runlocal" in a and a.runlocal:
        raise ConfigError(f"config arguments runlocal and {named[0]} exclude each other: "
                          ":runlocal runs on any slice as it is")
    return named[0] if named else ""


def apply(c: mlc.ConfigDict, name: str) -> None:
    """Sets slice ``name``'s settings on the probe config ``c`` (no-op for "")."""
    if not name:
        return
    s = SLICES[name]
    c.model.dtype = c.model.encoder_dtype = "bfloat16"
    c.remat = s.remat
    for stage, accum in s.grad_accum.items():
        c.stages[stage].grad_accum = accum
    c.save.every = s.save_every
    c.mesh.update(dict(data=1, fsdp=-1, tensor=s.tensor))
    c.sharding = "fsdp_tp" if s.tensor > 1 else "fsdp"
