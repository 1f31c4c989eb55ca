"""What one CPU-side change buys our train step: a paired A/B in one process.

    python benchmarks/ablate.py --change attention_backward [--steps 40] [--hidden 256]
    python benchmarks/ablate.py --change rope_tables

The step of ``benchmarks/train_step.py`` is compiled twice in this process, once with the change
switched off and once as shipped, and the two alternate step by step (ABBA order), so both see
the same machine load; a busy host moves the side-by-side benchmark by more than these changes.
Prints one JSON line: ``speedup`` (median over steps of time without / time with the change)
and the median step times.

Changes:
  attention_backward  ``blocks._softmax_attention`` (closed-form backward) vs jax autodiff of
                      the same forward formula.
  rope_tables         rope cos/sin materialized once per forward (``blocks.materialize``) vs
                      left to XLA:CPU, which fuses them into every layer's rotation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _autodiff_attention(q, k, v, mask):
    """``attend``'s whole-array formula, differentiated by jax (the form before the change)."""
    import jax
    import jax.numpy as jnp

    from cambrian.models.llm import blocks

    b, t, h, e = q.shape
    nk = k.shape[2]
    s = jnp.einsum("btkge,bske->bkgts", q.reshape(b, t, nk, h // nk, e), k)
    s = jnp.where(mask[:, None, None], s.astype(jnp.float32) * e**-0.5, blocks._MASKED)
    p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bske->btkge", p, v).reshape(b, t, h, e)


def switch_off(change: str):
    """Patches the code so that ``change`` is off; returns a function that restores it."""
    from cambrian.models.llm import blocks, llama

    if change == "attention_backward":
        module, name, off = blocks, "_softmax_attention", _autodiff_attention
    elif change == "rope_tables":
        module, name, off = llama, "materialize", lambda fn, *xs: fn(*xs)
    else:
        raise ValueError(f"unknown change {change!r}; expected attention_backward or rope_tables")
    on = getattr(module, name)
    setattr(module, name, off)
    return lambda: setattr(module, name, on)


def main(argv=None) -> dict:
    from benchmarks import train_step

    p = argparse.ArgumentParser()
    p.add_argument("--change", required=True, choices=("attention_backward", "rope_tables"))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args(argv)
    cache = os.environ.get("CAMBRIAN_CACHE", "/tmp/cambrian-bench")
    runs = {}
    for side in ("without", "with"):
        restore = switch_off(args.change) if side == "without" else (lambda: None)
        batch, model, c = train_step.prepare(args, cache)
        runs[side], _ = train_step.build_ours(args, batch, model, c)
        restore()  # build_ours has compiled the step while the patch was in place
    times = {"without": [], "with": []}
    for i in range(args.steps):
        for side in (("without", "with") if i % 2 == 0 else ("with", "without")):
            t = time.perf_counter()
            runs[side]()
            times[side].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["without"], times["with"], strict=True)]
    result = {"change": args.change, "speedup": round(statistics.median(ratios), 4),
              "without_step_s": round(statistics.median(times["without"]), 5),
              "with_step_s": round(statistics.median(times["with"]), 5), "steps": args.steps}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
