"""What one model-code change buys our train step: a paired A/B in one process.

    python benchmarks/ablate.py --change attention_backward [--steps 40] [--hidden 256]
    python benchmarks/ablate.py --change rope_tables
    python benchmarks/ablate.py --change attention_backward --model llm1b --batch 2 --steps 8
                                [--remat dots] [--tiny]       # on a GPU; --tiny on a CPU

The step of ``benchmarks/train_step.py`` (``--model probe``, on a CPU) or of
``benchmarks/mfu.py`` (``--model llm1b``, einsum attention) is compiled twice in this process,
once with the change switched off and once as shipped; after one warm-up step each, the two
alternate step by step (ABBA order), so both see the same machine load; a busy host moves the
side-by-side benchmark by more than these changes.
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
import time


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


SIDES = ("without", "with")


def probe_steps(args) -> dict:
    """``benchmarks/train_step.py``'s step, compiled without and with the change."""
    try:
        from benchmarks import train_step
    except ImportError:  # run as a script: its sibling scripts are on sys.path
        import train_step

    cache = os.environ.get("CAMBRIAN_CACHE", "/tmp/cambrian-bench")
    runs = {}
    for side in SIDES:
        restore = switch_off(args.change) if side == "without" else (lambda: None)
        batch, model, c = train_step.prepare(args, cache)
        runs[side], _ = train_step.build_ours(args, batch, model, c)
        restore()  # build_ours has compiled the step while the patch was in place
    return runs


def llm1b_steps(args) -> dict:
    """``benchmarks/mfu.py``'s stage-2 step (ViT-L/14@336 + a Llama-3.2-1B-shaped LLM; toy
    sizes with ``--tiny``) with the einsum attention, one sequence per row, whole logits,
    ``--remat``; both executables step the same parameters."""
    import jax

    try:
        from benchmarks import mfu
    except ImportError:  # run as a script: its sibling scripts are on sys.path
        import mfu

    r = mfu.Runner(mfu.make_config(args.tiny), mfu.TINY_VOCAB if args.tiny else mfu.VOCAB_1B,
                   tie=True)
    runs = {}
    for side in SIDES:
        restore = switch_off(args.change) if side == "without" else (lambda: None)
        compiled, batch, _ = r.compile(args.batch, args.remat, "einsum", loss_chunk=0)
        restore()

        def run(compiled=compiled, batch=batch):
            r.tr, r.opt, m = compiled(r.tr, r.fr, r.opt, batch)
            jax.block_until_ready(m)

        runs[side] = run
    return runs


MODELS = {"probe": probe_steps, "llm1b": llm1b_steps}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--change", required=True, choices=("attention_backward", "rope_tables"))
    p.add_argument("--model", default="probe", choices=tuple(MODELS))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256, help="probe: LLM width")
    p.add_argument("--layers", type=int, default=4, help="probe: LLM layers")
    p.add_argument("--remat", default="none", help="llm1b: config.remat")
    p.add_argument("--tiny", action="store_true", help="llm1b: toy sizes (CPU smoke run)")
    args = p.parse_args(argv)
    runs = MODELS[args.model](args)
    for side in SIDES:  # one warm-up step each
        runs[side]()
    times = {side: [] for side in SIDES}
    for i in range(args.steps):
        for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
            t = time.perf_counter()
            runs[side]()
            times[side].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times["without"], times["with"], strict=True)]
    result = {"change": args.change, "model": args.model,
              "speedup": round(statistics.median(ratios), 4),
              "without_step_s": round(statistics.median(times["without"]), 5),
              "with_step_s": round(statistics.median(times["with"]), 5), "steps": args.steps}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
