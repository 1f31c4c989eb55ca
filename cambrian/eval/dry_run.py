"""Per-device memory of the evaluation's greedy decoding, without weights or an accelerator.

    python -m cambrian.eval.dry_run --config cambrian/8b.py --rows 16 --prompt 768 --new 512

The evaluation (``runner.py``) replicates the model on every device (the LLM's floating-point
weights cast to its compute dtype, ``runner._llm_in_compute_dtype``) and decodes ``--rows`` rows
per device. Reported, per device:

* ``params``: stored bytes per module and dtype, EXACT, from the full model's abstract shapes;
  ``eval_copy``: the same after the runner's cast (what the evaluation holds);
* ``kv_cache``: 2 x layers x rows x cache length x kv heads x head dim x compute-dtype bytes,
  EXACT for the given lengths (cache length: prompt + new tokens, rounded up as the decoder does);
* ``temp``: XLA's temp buffers of the compiled decoder (prefill with towers and SVA, then the
  decode loop; the KV cache is inside it), EXTRAPOLATED linearly in depth from compiles of
  shallow copies on this machine's CPU (``aot.py``'s method: 1-3 LLM layers, in-LLM SVA layers
  and tower blocks; one more compile checks the line). The CPU compiler's buffer sizes are a
  guide to the TPU/GPU compilers', not their exact number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian import aot
from cambrian import config as config_lib
from cambrian.eval import runner
from cambrian.models import vlm
from cambrian.models.llm.blocks import KEY_BLOCK
from cambrian.tpus import GiB


def _abstract_model(config, vocab: int):
    from cambrian import train

    return nnx.eval_shape(lambda: train.build_model(aot._random_llm(config), None,
                                                    load_pretrained=False, vocab_size=vocab))


def param_bytes(state) -> dict[str, dict[str, int]]:
    """{top-level module: {dtype: bytes}} of an abstract state."""
    out: dict[str, dict[str, int]] = {}
    for path, x in jax.tree_util.tree_leaves_with_path(state):
        top = str(getattr(path[0], "key", path[0]))
        per = out.setdefault(top, {})
        per[str(x.dtype)] = per.get(str(x.dtype), 0) + math.prod(x.shape) * x.dtype.itemsize
    return out


def kv_cache_bytes(num_layers: int, num_kv_heads: int, head_dim: int, *, rows: int, prompt: int,
                   new: int, dtype: str) -> tuple[int, int]:
    """(cache length, bytes of the keys and values) of the decoder's KV cache: its length is
    prompt + new tokens rounded up to whole key blocks (``generate.decode_embeds``)."""
    cache_len = -(-(prompt + new) // KEY_BLOCK) * KEY_BLOCK
    return cache_len, (2 * num_layers * rows * cache_len * num_kv_heads * head_dim
                       * jnp.dtype(dtype).itemsize)


def _batch(model, config, rows: int, prompt: int) -> dict:
    size = model.host_image_size(config.data.image_size)
    batch = runner.make_batch([np.ones(prompt, np.int32)], [None], size, rows, model.pad_color)
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}


def compiled_temp(config, vocab: int, rows: int, prompt: int, new: int) -> tuple[int, float]:
    """(temp bytes, FLOPs as XLA counts them: loop bodies once) of the eval decoder."""
    model = _abstract_model(config, vocab)
    graphdef, state = nnx.split(model)
    state = jax.eval_shape(lambda s: runner._llm_in_compute_dtype(s, config.model.dtype), state)
    fn = vlm.generate_fn(graphdef, max_new_tokens=new, eos_ids=(0,), vision=True)
    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    compiled = fn.lower(state, _batch(model, config, rows, prompt)).compile(
        compiler_options=opts)
    cost = compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, list) else (cost or {})
    return int(compiled.memory_analysis().temp_size_in_bytes), float(cost.get("flops", 0.0))


def dry_run(config, *, rows: int, prompt: int, new: int, compile: bool = True) -> dict:
    shape = aot.llm_shape(config)
    vocab = shape["vocab_size"]
    model = _abstract_model(config, vocab)
    state = nnx.state(model)
    eval_state = jax.eval_shape(lambda s: runner._llm_in_compute_dtype(s, config.model.dtype),
                                state)
    cache_len, kv = kv_cache_bytes(shape["num_layers"], shape["num_kv_heads"], shape["head_dim"],
                                   rows=rows, prompt=prompt, new=new, dtype=config.model.dtype)
    out = {"config": config.name, "rows_per_device": rows, "prompt_tokens": prompt,
           "new_tokens": new, "cache_len": cache_len,
           "params": param_bytes(state), "eval_copy": param_bytes(eval_state), "kv_cache": kv}
    if not compile:
        return out
    opts = config.model.connector.options
    n_sva = int(opts.in_llm_layers) if "in_llm_layers" in opts else 0
    n_blocks = max(aot._depth_unit(e.family, e.variant)[2]
                   for e in config.model.encoders.values())
    points = {"base": (1, 1, 1), "layer": (2, 1, 1), "block": (1, 1, 2), "check": (3, 2, 2)}
    if n_sva:
        points["sva"] = (2, 2, 1)
    temps, flops = {}, {}
    for key, (lay, sva, blk) in points.items():
        c = aot.shallow_config(config, lay, sva if n_sva else 0, blk)
        temps[key], flops[key] = compiled_temp(c, vocab, rows, prompt, new)
        print(f"compiled {lay} layers, {sva} SVA layers, {blk} blocks: temp "
              f"{temps[key] / GiB:.2f} GiB", file=sys.stderr, flush=True)

    def line(q: dict):
        per_layer, per_block = q["layer"] - q["base"], q["block"] - q["base"]
        per_sva = q["sva"] - q["layer"] if n_sva else 0
        return lambda lay, sva, blk: (q["base"] + (lay - 1) * per_layer
                                      + (max(sva, 1) - 1) * per_sva + (blk - 1) * per_block)

    temp, flop = line(temps), line(flops)
    full = (shape["num_layers"], n_sva, n_blocks)
    out.update(temp=int(temp(*full)), flops_prefill_and_one_step=flop(*full),
               temp_check={"predicted": int(temp(3, 2, 2)), "compiled": temps["check"]},
               compiles=temps, full_depth=dict(zip(("layers", "sva_layers", "blocks"), full)))
    return out


def summary(r: dict) -> str:
    gib = lambda b: f"{b / GiB:.2f} GiB"  # noqa: E731
    lines = [f"{r['config']}: {r['rows_per_device']} rows/device, prompt {r['prompt_tokens']} + "
             f"{r['new_tokens']} new tokens (cache {r['cache_len']})"]
    for name, key in (("stored params", "params"), ("eval copy", "eval_copy")):
        total = sum(sum(d.values()) for d in r[key].values())
        parts = ", ".join(f"{m} {dt} {gib(b)}" for m, d in r[key].items() for dt, b in d.items())
        lines.append(f"{name}: {gib(total)} ({parts})")
    lines.append(f"KV cache: {gib(r['kv_cache'])}")
    if "temp" in r:
        lines.append(f"compiled temp (extrapolated, KV cache included): {gib(r['temp'])}; "
                     f"check at 3 layers: predicted {gib(r['temp_check']['predicted'])}, "
                     f"compiled {gib(r['temp_check']['compiled'])}")
        total = sum(sum(d.values()) for d in r["eval_copy"].values()) + r["temp"]
        lines.append(f"per device, eval copy + temp: {gib(total)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="config file, e.g. cambrian/8b.py")
    ap.add_argument("--rows", type=int, default=16, help="rows per device")
    ap.add_argument("--prompt", type=int, default=768, help="prompt tokens (bucketed length)")
    ap.add_argument("--new", type=int, default=512, help="max_new_tokens")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    config = config_lib.load(args.config)
    r = dry_run(config, rows=args.rows, prompt=args.prompt, new=args.new,
                compile=not args.no_compile)
    print(summary(r))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
