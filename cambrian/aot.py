"""Ahead-of-time memory and FLOP check of one training step, before booking a pod.

``dry_run(config)`` builds the model on abstract shapes (``nnx.eval_shape``, no checkpoint is
read), shards it over the configured mesh and reports, per device:

* ``params`` / ``optimizer`` / ``gradients`` bytes: exact, from each array's shard shape;
* ``activations`` bytes: XLA's temp-buffer size of the compiled, partitioned step (everything
  live inside the step that is neither an input nor an output: activations kept for the
  backward pass, gradients, collectives' buffers);
* ``flops``: XLA's cost analysis of the step (per step, all devices, and per device).

``topology`` ("v4-128", "v5p-128", "v5e-256", "v6e-64") sizes the mesh for a slice that is not
attached: ``launch/tpu.py --dry-run --topology v4-128`` compiles for that many CPU devices (the
launcher fakes them before JAX starts), so buffer sizes are the CPU compiler's view of the same
partitioned program -- a close guide, not the TPU compiler's exact number.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from cambrian import optim, sharding

GiB = 2**30
# TPU generation -> (TensorCores counted per chip in the slice name, HBM bytes per chip)
TPUS = {"v4": (2, 32 * GiB), "v5p": (2, 95 * GiB), "v5e": (1, 16 * GiB),
        "v5litepod": (1, 16 * GiB), "v6e": (1, 32 * GiB)}


def parse_topology(name: str) -> tuple[int, int]:
    """``"v4-128"`` -> (64 chips = JAX devices, 32 GiB HBM each)."""
    m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name)
    if not m or m.group(1) not in TPUS:
        raise ValueError(f"topology {name!r}: expected e.g. v4-128, v5p-128, v5e-256 (known "
                         f"generations: {', '.join(TPUS)})")
    per_chip, hbm = TPUS[m.group(1)]
    return int(m.group(2)) // per_chip, hbm


def _stage_name(config: mlc.ConfigDict, stage: str) -> str:
    if stage:
        if stage not in config.stages:
            raise ValueError(f"--stage {stage!r}: config has stages {', '.join(config.stages)}")
        return stage
    with_steps = [n for n, s in config.stages.items() if s.steps > 0]
    return (with_steps or list(config.stages))[-1]


def abstract_batch(config: mlc.ConfigDict, batch_size: int, image_size: int,
                   sh) -> dict:
    """Shape-only stand-in for one global batch of ``cambrian/data/loader.py``."""
    t, s = config.model.max_len, image_size
    spec = {"image": ((batch_size, s, s, 3), jnp.uint8),
            "image_box": ((batch_size, 4), jnp.float32), "has_image": ((batch_size,), jnp.bool_),
            "tokens": ((batch_size, t), jnp.int32), "loss_mask": ((batch_size, t), jnp.bool_),
            "segment_ids": ((batch_size, t), jnp.int32)}
    return {k: jax.ShapeDtypeStruct(shape, dt, sharding=sh) for k, (shape, dt) in spec.items()}


def _per_device_bytes(tree) -> int:
    """Bytes one device holds of the abstract arrays of ``tree`` (the largest shard)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
    return total


def dry_run(config: mlc.ConfigDict, *, topology: str = "", stage: str = "",
            vocab_size: int | None = None, compile: bool = True) -> dict:
    """Per-device memory and FLOPs of one train step of ``stage`` on the configured mesh."""
    from cambrian import train
    from cambrian.data import tokenizer as tokenizer_lib

    n_dev, hbm = parse_topology(topology) if topology else (jax.device_count(), None)
    devices = jax.devices()
    if len(devices) < n_dev:
        raise ValueError(f"dry run for {topology} needs {n_dev} devices, {len(devices)} are "
                         "visible; launch/tpu.py --dry-run fakes them on CPU")
    mesh = sharding.make_mesh(config.mesh, devices[:n_dev])
    rules = sharding.Rules.from_config(config)
    name = _stage_name(config, stage)
    st = config.stages[name]

    tok = None if vocab_size else tokenizer_lib.load(config.model.tokenizer, config.cache_dir)
    model = nnx.eval_shape(lambda: train.build_model(config, tok, load_pretrained=False,
                                                     vocab_size=vocab_size))
    gd, trainable, frozen = nnx.split(model, optim.trainable_filter(st.trainable), ...)
    tx = optim.make(st, trainable)

    def place(tree):
        shs = sharding.state_shardings(tree, mesh, rules)  # a prefix: one per Variable
        shs = jax.tree.map(lambda s, sub: jax.tree.map(lambda _: s, sub), shs, tree)
        return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            tree, shs)

    trainable, frozen = place(trainable), place(frozen)
    opt = place(jax.eval_shape(tx.init, trainable))
    batch = abstract_batch(config, st.batch_size, model.host_image_size(config.data.image_size),
                           sharding.batch_sharding(mesh))
    step = train.make_train_step(
        gd, tx, grad_accum=st.grad_accum, mesh=mesh, rules=rules,
        shardings=(sharding.state_shardings(trainable, mesh, rules),
                   sharding.state_shardings(opt, mesh, rules)))
    lowered = step.lower(trainable, frozen, opt, batch)

    out = {
        "config": config.name, "stage": name, "mesh": dict(mesh.shape), "devices": n_dev,
        "topology": topology or jax.devices()[0].device_kind,
        "batch_size": st.batch_size, "grad_accum": st.grad_accum, "remat": config.remat,
        "params": {"trainable": _count(trainable), "frozen": _count(frozen)},
        "per_device_bytes": {
            "params": _per_device_bytes(trainable) + _per_device_bytes(frozen),
            "optimizer": _per_device_bytes(opt),
            "gradients": _per_device_bytes(trainable),
            "batch": _per_device_bytes(batch)},
    }
    cost = lowered.cost_analysis() or {}
    flops = float(cost.get("flops", 0.0))
    out["flops_per_step"] = flops
    out["flops_per_device"] = flops / n_dev
    if compile:
        compiled = lowered.compile()
        mem = compiled.memory_analysis()
        if mem is not None:
            out["per_device_bytes"]["activations"] = int(mem.temp_size_in_bytes)
            out["compiled_argument_bytes"] = int(mem.argument_size_in_bytes)
        cc = compiled.cost_analysis()
        if isinstance(cc, list):
            cc = cc[0] if cc else {}
        if cc and "flops" in cc:
            out["flops_per_device_compiled"] = float(cc["flops"])
    pd = out["per_device_bytes"]
    pd["total"] = (pd["params"] + pd["optimizer"] + pd["batch"]
                   + pd.get("activations", pd["gradients"]))
    out["per_device_gib"] = {k: round(v / GiB, 3) for k, v in pd.items()}
    if hbm:
        out["hbm_per_device_gib"] = hbm / GiB
        out["fits"] = bool(pd["total"] <= 0.9 * hbm)  # XLA keeps ~10% for its own buffers
    return out


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))
