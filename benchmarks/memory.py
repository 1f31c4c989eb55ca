"""Per-device memory of params + optimizer state under FSDP, and the Cambrian-8B and 7B-tower
dry runs.

    python benchmarks/memory.py [--skip-8b] [--tower-7b] [--topologies v4-128,v5p-128]

Prints one JSON line:

* ``fsdp``: for N = 1, 2, 4, 8 fake CPU devices, the bytes of params + AdamW state that the
  fullest device really holds after the trainer's sharded init (the runlocal probe with a wider
  LLM, stage 2), against the ideal total / N; ``fsdp8_over_ideal`` is the N = 8 ratio.
* ``cambrian_8b``: the dry run (cambrian/aot.py) of Cambrian-8B: the four-tower SVA connector
  (connectors/sva.py, preset cambrian-8b) on a Llama-3-8B-shaped LLM (vocab 128256), bf16
  compute and frozen bf16 encoders, stage 2 (connector + LLM trained), global batch 512 of 2048
  tokens, full remat, mesh fsdp = all chips. Params, optimizer state and batch bytes are exact
  (full model's shapes and shardings); activation bytes are EXTRAPOLATED linearly in depth from
  compiles of 1-3-layer copies on the same 64-chip mesh (``aot.depth_extrapolated_dry_run``;
  ``extrapolation.check`` compares the linear model with a compile it was not fitted on).
  v4-128 and v5p-128 are both 64 chips, so one mesh serves both; top-level keys
  ``cambrian8b_<topology>_gib_per_device`` and ``fits_<topology>`` (total <= 90% of HBM), and
  the same with ``_accum<k>`` for the batch in k microbatches (``--grad-accum``).
* ``tower7b`` (``--tower-7b``): the same dry run for a 7B vision tower probe: one frozen bf16
  DINOv3-ViT-7B/16-shaped tower (``aot.KNOWN_TOWERS``) at 224 px (196 tokens), the 2-layer MLP
  connector, the Llama-3-8B-shaped LLM, stage 2, batch 512 x 2048, full remat, fsdp over 64
  chips; keys ``tower7b_<topology>[_accum<k>]_gib_per_device`` and ``fits_tower7b_...``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LLAMA3_8B = "Meta-Llama-3-8B-Instruct"  # its shape: cambrian.aot.KNOWN_LLMS


def fsdp_scaling(cache_dir: str) -> dict:
    import jax
    from flax import nnx

    from cambrian import config as C
    from cambrian import optim, sharding, train
    from cambrian.data import tokenizer

    c = C.load("encoders/dinov2.py:runlocal")
    c.model.llm.random.update(dict(hidden_size=512, intermediate_size=1536, num_layers=4,
                                   num_heads=8, num_kv_heads=4, head_dim=64))
    with c.unlocked():
        c.cache_dir = cache_dir
    tok = tokenizer.load("synthetic")
    rows = {}
    for n in (1, 2, 4, 8):
        c.mesh.update(dict(data=1, fsdp=n, tensor=1))
        mesh = sharding.make_mesh(c.mesh, jax.devices()[:n])
        rules = sharding.Rules.from_config(c)
        gd, params = train.init_params(c, tok, mesh, rules)
        st = c.stages.stage2
        _, trainable, frozen = nnx.split(nnx.merge(gd, params),
                                         optim.trainable_filter(st.trainable), ...)
        tx = optim.make(st, trainable)
        opt_sh = sharding.state_shardings(jax.eval_shape(tx.init, trainable), mesh, rules)
        opt = jax.jit(tx.init, out_shardings=opt_sh)(trainable)
        per_dev = sharding.bytes_per_device((params, opt))
        total = sum(x.nbytes for x in jax.tree.leaves((params, opt)))
        rows[n] = {"max_device_bytes": max(per_dev.values()), "ideal_bytes": total // n,
                   "over_ideal": round(max(per_dev.values()) / (total / n), 4)}
    return rows


def cambrian_8b_config(grad_accum: int = 1):
    from cambrian import config as C
    from cambrian.aot import KNOWN_LLMS

    c = C.load("connectors/sva.py:preset=cambrian-8b")
    c.model.llm.init = "random"  # structure only: dry runs never read weights
    c.model.llm.random.update({k: v for k, v in KNOWN_LLMS[LLAMA3_8B].items()
                               if k != "vocab_size"})
    c.model.dtype = c.model.encoder_dtype = "bfloat16"
    c.model.max_len = 2048
    c.stages.stage2.batch_size = 512
    c.stages.stage2.grad_accum = grad_accum
    c.remat = "full"
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    return c


def cambrian_8b(topology: str, grad_accum: int = 1) -> dict:
    from cambrian import aot

    return aot.depth_extrapolated_dry_run(
        cambrian_8b_config(grad_accum), topology=topology, stage="stage2",
        vocab_size=aot.KNOWN_LLMS[LLAMA3_8B]["vocab_size"])


def tower_7b_config(grad_accum: int = 1):
    """The 7B-tower probe: the Cambrian-8B settings with one frozen DINOv3-7B/16-shaped tower
    and the MLP connector."""
    from cambrian import aot
    from cambrian import config as C

    family, variant = aot.register_tower("dinov3-7b/16")
    c = cambrian_8b_config(grad_accum)
    with c.model.unlocked():
        c.model.encoders = {"tower": C.encoder(family, variant, init="random")}
    c.model.connector.name = "mlp2x_gelu"
    with c.model.connector.unlocked():
        c.model.connector.options = {}
    return c


def tower_7b(topology: str, grad_accum: int = 1) -> dict:
    from cambrian import aot

    return aot.depth_extrapolated_dry_run(
        tower_7b_config(grad_accum), topology=topology, stage="stage2",
        vocab_size=aot.KNOWN_LLMS[LLAMA3_8B]["vocab_size"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--skip-8b", action="store_true")
    p.add_argument("--topologies", default="v4-128,v5p-128")
    p.add_argument("--grad-accum", default="1,4",
                   help="microbatches per step to estimate (1 = the batch of 512 at once)")
    p.add_argument("--tower-7b", action="store_true",
                   help="also the 7B-tower probe (frozen DINOv3-7B-shaped tower + Llama-3-8B)")
    p.add_argument("--part", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part == "fsdp":
        print(json.dumps(fsdp_scaling(os.environ.get("CAMBRIAN_CACHE", "/tmp/cambrian-bench"))))
        return
    if args.part.startswith(("8b:", "7b:")):
        which, topology, accum = args.part.split(":")
        run = cambrian_8b if which == "8b" else tower_7b
        print(json.dumps(run(topology, int(accum))))
        return

    def sub(part: str, devices: int, timeout: int = 3600) -> dict:
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        out = subprocess.run([sys.executable, __file__, "--part", part], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode:
            return {"error": out.stderr[-2000:]}
        return json.loads(out.stdout.strip().splitlines()[-1])

    fsdp = {int(k): v for k, v in sub("fsdp", 8).items()}
    res = {"fsdp": fsdp, "fsdp8_over_ideal": fsdp[8]["over_ideal"]}
    from cambrian.aot import GiB, parse_topology

    def table(which: str, name: str) -> None:
        runs: dict[tuple[int, int], dict] = {}  # slices of as many chips share a compile
        for accum in (int(a) for a in args.grad_accum.split(",")):
            for t in args.topologies.split(","):
                chips, hbm = parse_topology(t)
                if (chips, accum) not in runs:
                    runs[chips, accum] = sub(f"{which}:{t}:{accum}", chips)
                r = runs[chips, accum]
                key = t.replace("-", "_") + ("" if accum == 1 else f"_accum{accum}")
                if "error" in r:
                    res[f"{name}_{key}_error"] = r["error"]
                    continue
                total = r["per_device_bytes"]["total"]
                res[f"{name}_{key}_gib_per_device"] = round(total / GiB, 2)
                res[f"fits_{'' if name == 'cambrian8b' else name + '_'}{key}"] = bool(
                    total <= 0.9 * hbm)
                res[f"hbm_{t.replace('-', '_')}_gib"] = hbm / GiB
        res["cambrian_8b" if name == "cambrian8b" else name] = {
            f"{chips}_chips_accum{a}": r for (chips, a), r in runs.items()}

    if not args.skip_8b:
        table("8b", "cambrian8b")
    if args.tower_7b:
        table("7b", "tower7b")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
