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

Compiling a full 8B-scale step for 64 fake devices takes too long on a small CPU host.
``depth_extrapolated_dry_run`` keeps the exact parameter / optimizer / batch bytes of the full
model and compiles only shallow copies of it (1-3 LLM decoder layers, in-LLM SVA layers and
vision blocks) on the same mesh; the activation bytes are extrapolated linearly in each depth and
the linear model is checked against one more compile.
"""

from __future__ import annotations

import copy
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from cambrian import optim, sharding
from cambrian.tpus import HBM_MARGIN, GiB, parse_topology


def _stage_name(config: mlc.ConfigDict, stage: str) -> str:
    if stage:
        if stage not in config.stages:
            raise ValueError(f"--stage {stage!r}: config has stages {', '.join(config.stages)}")
        return stage
    with_steps = [n for n, s in config.stages.items() if s.steps > 0]
    return (with_steps or list(config.stages))[-1]


def abstract_batch(config: mlc.ConfigDict, batch_size: int, images, sh) -> dict:
    """Shape-only stand-in for one global batch of ``cambrian/data/loader.py`` (packed rows,
    ``data.pack``, carry ``data.max_images_per_row`` image slots each); ``images``: the model's
    ``host_images()``."""
    t = config.model.max_len
    k = (config.data.max_images_per_row,) if config.data.pack else ()
    spec = {**images.shapes(batch_size, *k),
            "tokens": ((batch_size, t), jnp.int32), "loss_mask": ((batch_size, t), jnp.bool_),
            "segment_ids": ((batch_size, t), jnp.int32)}
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s[0], s[1], sharding=sh), spec,
                        is_leaf=lambda x: isinstance(x, tuple))


def _per_device_bytes(tree) -> int:
    """Bytes one device holds of the abstract arrays of ``tree`` (the largest shard)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
        total += math.prod(shape) * jnp.dtype(x.dtype).itemsize
    return total


def dry_run(config: mlc.ConfigDict, *, topology: str = "", stage: str = "",
            vocab_size: int | None = None, compile: bool = True, lower: bool = True) -> dict:
    """Per-device memory and FLOPs of one train step of ``stage`` on the configured mesh.

    ``lower=False`` reports only the bytes known from shapes and shardings (params, optimizer,
    gradients, batch) without tracing the step; ``compile=False`` adds the lowered step's FLOPs
    but no activation bytes."""
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
    if config.model.llm.init == "pretrained" and not _has_llm_config(config):
        config = _random_llm(config)  # the KNOWN_LLMS shape of a checkpoint not on this machine
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
    batch = abstract_batch(config, st.batch_size, model.host_images(),
                           sharding.batch_sharding(mesh))

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
    if lower:
        step = train.make_train_step(
            gd, tx, grad_accum=st.grad_accum, loss_chunk=config.loss_chunk,
            packed=config.data.pack, mesh=mesh, rules=rules,
            shardings=(sharding.state_shardings(trainable, mesh, rules),
                       sharding.state_shardings(opt, mesh, rules)))
        lowered = step.lower(trainable, frozen, opt, batch)
        cost = lowered.cost_analysis() or {}
        # XLA counts a loop body once: the grad_accum scan runs it grad_accum times (the
        # optimizer update outside it is then over-counted, by well under 1%).
        flops = float(cost.get("flops", 0.0)) * st.grad_accum
        out["flops_per_step"] = flops
        out["flops_per_device"] = flops / n_dev
    if lower and compile:
        opts = {}
        if jax.default_backend() == "cpu":
            # The program is never run. The CPU pipeline drops the optimization barriers that
            # jax.checkpoint places, and CSE then merges the recomputed forward into the first
            # one, so remat would save nothing (13 GiB per 8B decoder layer instead of 1);
            # TPU/GPU keep them. LLVM's optimiser runs after buffer assignment: skipped.
            opts = {"xla_disable_hlo_passes": "cse_barrier_expander",
                    "xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
        compiled = lowered.compile(compiler_options=opts)
        mem = compiled.memory_analysis()
        if mem is not None:
            out["per_device_bytes"]["activations"] = int(mem.temp_size_in_bytes)
            out["compiled_argument_bytes"] = int(mem.argument_size_in_bytes)
        cc = compiled.cost_analysis()
        if isinstance(cc, list):
            cc = cc[0] if cc else {}
        if cc and "flops" in cc:
            out["flops_per_device_compiled"] = float(cc["flops"]) * st.grad_accum
    pd = out["per_device_bytes"]
    pd["total"] = (pd["params"] + pd["optimizer"] + pd["batch"]
                   + pd.get("activations", pd["gradients"]))
    out["per_device_gib"] = {k: round(v / GiB, 3) for k, v in pd.items()}
    if hbm:
        out["hbm_per_device_gib"] = hbm / GiB
        out["fits"] = bool(pd["total"] <= HBM_MARGIN * hbm)
    return out


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


# ------------------------------------------------------------------ depth-extrapolated dry run


def _depth_unit(family: str, variant: str) -> tuple[dict, str, int]:
    """(the family's VARIANTS table, its depth field, the variant's blocks per tower)."""
    from cambrian.models import encoders

    table = encoders.family_module(family).VARIANTS
    spec = table[variant]
    for field in ("depth", "depths"):
        if field in spec:
            d = spec[field]
            return table, field, int(max(d) if isinstance(d, tuple | list) else d)
    raise ValueError(f"encoder {family} {variant}: no depth/depths field to shallow the tower "
                     "for a depth-extrapolated dry run")


_LLAMA_FIELDS = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                 "head_dim", "rope_theta")
# Shapes of the LLM checkpoints the configs name, for dry runs on a machine that does not hold
# them (a laptop launching a pod): checkpoint folder name -> Llama fields + vocab size.
KNOWN_LLMS = {
    "vicuna-7b-v1.5": dict(hidden_size=4096, intermediate_size=11008, num_layers=32,
                           num_heads=32, num_kv_heads=32, head_dim=128, rope_theta=10000.0,
                           vocab_size=32000),
    "vicuna-13b-v1.5": dict(hidden_size=5120, intermediate_size=13824, num_layers=40,
                            num_heads=40, num_kv_heads=40, head_dim=128, rope_theta=10000.0,
                            vocab_size=32000),
    "Meta-Llama-3-8B-Instruct": dict(hidden_size=4096, intermediate_size=14336, num_layers=32,
                                     num_heads=32, num_kv_heads=8, head_dim=128,
                                     rope_theta=500000.0, vocab_size=128256),
}


# Billion-parameter towers for dry runs: name -> (the family that builds the shape, its variant
# fields). DINOv3 ViT-7B/16 (Simeoni et al. 2025, arXiv:2508.10104; timm
# ``vit_7b_patch16_dinov3``): width 4096, 40 blocks, 32 heads of 128, SwiGLU of hidden 8192
# (mlp_ratio 2), no q/k/v bias, layer scale, 4 registers, patch 16. DINOv3 has parameter-free
# RoPE where the DINOv2 ViT keeps a learned position table (0.8M of the tower's 6.7B values).
KNOWN_TOWERS = {
    "dinov3-7b/16": ("dinov2", dict(
        patch=16, width=4096, depth=40, heads=32, mlp_dim=8192, mlp="swiglu", qkv_bias=False,
        layerscale=True, registers=4, ln_eps=1e-5, act="gelu", pos_interp="bicubic_aa",
        image_size=224, pos_size=14)),
}


def register_tower(name: str) -> tuple[str, str]:
    """(family, variant) of ``KNOWN_TOWERS[name]``, added to the family's variant table for this
    process (dry runs and tests build it without a checkpoint)."""
    from cambrian.models import encoders

    if name not in KNOWN_TOWERS:
        raise ValueError(f"unknown tower {name!r}; cambrian.aot.KNOWN_TOWERS has "
                         f"{', '.join(KNOWN_TOWERS)}")
    family, spec = KNOWN_TOWERS[name]
    encoders.family_module(family).VARIANTS[name] = dict(spec)
    return family, name


def llm_shape(config: mlc.ConfigDict) -> dict:
    """The Llama fields + ``vocab_size`` of ``config``'s LLM: its checkpoint's config.json when
    this machine holds it, else the KNOWN_LLMS entry of the checkpoint's folder name."""
    from cambrian.models import llm
    from cambrian.models.weights import CheckpointError

    path = config.model.llm.checkpoint
    try:
        hf_dict = llm.read_hf_config(path)
    except (CheckpointError, OSError):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name not in KNOWN_LLMS:
            raise ValueError(
                f"model.llm.checkpoint: {path}/config.json is not on this machine and {name!r} "
                f"is not in cambrian.aot.KNOWN_LLMS ({', '.join(KNOWN_LLMS)}); copy the "
                "checkpoint's config.json there, or add its shape to KNOWN_LLMS") from None
        return dict(KNOWN_LLMS[name])
    hf = llm.config_from_hf(hf_dict)
    return {**{k: getattr(hf, k) for k in _LLAMA_FIELDS}, "vocab_size": hf.vocab_size}


def _has_llm_config(config: mlc.ConfigDict) -> bool:
    return os.path.isfile(os.path.join(config.model.llm.checkpoint, "config.json"))


def _random_llm(config: mlc.ConfigDict) -> mlc.ConfigDict:
    """``config`` with its LLM as a random-init Llama of the checkpoint's shape (memory only)."""
    c = copy.deepcopy(config)
    if c.model.llm.init != "random":
        shape = llm_shape(c)
        c.model.llm.init = "random"
        c.model.llm.random.update({k: shape[k] for k in _LLAMA_FIELDS})
    return c


def shallow_config(config: mlc.ConfigDict, layers: int, sva_layers: int,
                   blocks: int) -> mlc.ConfigDict:
    """A copy of ``config`` with ``layers`` LLM decoder layers (a random-init Llama of the same
    width), ``sva_layers`` in-LLM SVA layers after the first decoder layers, and at most
    ``blocks`` blocks per vision tower (per stage for staged towers)."""
    c = _random_llm(config)
    c.model.llm.random.num_layers = layers
    opts = c.model.connector.options
    if "in_llm_layers" in opts and opts.in_llm_layers:
        opts.update(dict(in_llm_layers=sva_layers, in_llm_start=0, in_llm_stride=1))
    for enc in c.model.encoders.values():
        table, field, _ = _depth_unit(enc.family, enc.variant)
        name = f"{enc.variant}@{blocks}blocks"
        d = table[enc.variant][field]
        table[name] = {**table[enc.variant],  # registered for this process only
                       field: tuple(min(x, blocks) for x in d) if field == "depths"
                       else min(d, blocks)}
        enc.variant = name
    return c


def depth_extrapolated_dry_run(config: mlc.ConfigDict, *, topology: str = "", stage: str = "",
                               vocab_size: int | None = None) -> dict:
    """``dry_run`` of a model too deep to compile here: exact bytes of params, optimizer and
    batch from the full model's shapes; activation (XLA temp) bytes EXTRAPOLATED linearly from
    compiles of shallow copies on the same mesh:

        temp(L, S, V) = temp(1, 1, 1) + (L-1) * per_layer + (S-1) * per_sva + (V-1) * per_block

    L LLM decoder layers, S in-LLM SVA layers, V vision blocks per tower (the deepest tower's
    count; staged towers grow every stage, so this over-counts them). The slopes come from
    compiles at (2, 1, 1), (2, 2, 1), (1, 1, 2); a compile at (3, 2, 2) checks the linear model.
    The step's FLOPs per device follow the same model.
    """
    full = dry_run(config, topology=topology, stage=stage, vocab_size=vocab_size, lower=False)
    opts = config.model.connector.options
    n_sva = int(opts.in_llm_layers) if "in_llm_layers" in opts else 0
    n_layers = int(_random_llm(config).model.llm.random.num_layers)
    n_blocks = max(_depth_unit(e.family, e.variant)[2] for e in config.model.encoders.values())

    points = {"base": (1, 1, 1), "layer": (2, 1, 1), "block": (1, 1, 2), "check": (3, 2, 2)}
    if n_sva:
        points["sva"] = (2, 2, 1)
    runs = {}
    for key, (lay, sva, blk) in points.items():
        t0 = time.time()
        r = dry_run(shallow_config(config, lay, sva if n_sva else 0, blk), topology=topology,
                    stage=stage, vocab_size=vocab_size)
        runs[key] = {"layers": lay, "sva_layers": sva if n_sva else 0, "blocks": blk,
                     "temp_bytes": r["per_device_bytes"]["activations"],
                     "flops_per_device": r["flops_per_device"],
                     "compile_seconds": round(time.time() - t0, 1)}

    def linear(quantity: str):
        """The linear model in depth of one measured quantity -> predict(L, S, V)."""
        q = {k: v[quantity] for k, v in runs.items()}
        per_layer, per_block = q["layer"] - q["base"], q["block"] - q["base"]
        per_sva = q["sva"] - q["layer"] if n_sva else 0

        def predict(lay, sva, blk):
            return (q["base"] + (lay - 1) * per_layer + (max(sva, 1) - 1) * per_sva
                    + (blk - 1) * per_block)
        return predict, (per_layer, per_sva, per_block)

    temp, (per_layer, per_sva, per_block) = linear("temp_bytes")
    flops, _ = linear("flops_per_device")
    chk = runs["check"]
    at_check = (chk["layers"], chk["sva_layers"], chk["blocks"])
    activations = int(temp(n_layers, n_sva, n_blocks))
    pd = dict(full["per_device_bytes"], activations=activations)
    pd["total"] = pd["params"] + pd["optimizer"] + pd["batch"] + activations

    def check(quantity: str, predict) -> dict:
        got = chk[quantity]
        return {"predicted": predict(*at_check), "compiled": got,
                "rel_error": round(abs(predict(*at_check) - got) / max(got, 1), 4)}

    out = {**full, "per_device_bytes": pd,
           "per_device_gib": {k: round(v / GiB, 3) for k, v in pd.items()},
           "flops_per_device": flops(n_layers, n_sva, n_blocks),
           "activations": "EXTRAPOLATED linearly in depth from shallow compiles",
           "extrapolation": {
               "full_depth": {"layers": n_layers, "sva_layers": n_sva, "blocks": n_blocks},
               "bytes_per_llm_layer": per_layer, "bytes_per_sva_layer": per_sva,
               "bytes_per_vision_block": per_block, "compiles": runs,
               "check": check("temp_bytes", temp),
               "check_flops": check("flops_per_device", flops)}}
    if "hbm_per_device_gib" in full:
        out["fits"] = bool(pd["total"] <= HBM_MARGIN * full["hbm_per_device_gib"] * GiB)
    return out
