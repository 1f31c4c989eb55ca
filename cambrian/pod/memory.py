"""The launcher's memory check: does every stage's train step fit the slice's chips?

For each stage with steps, the train step is built on abstract shapes for the slice's mesh
(``cambrian/aot.py``, no weights read, the slice's chips faked as CPU devices in a subprocess):

1. params, optimizer state, gradients and batch per chip, from shapes and shardings; if these
   alone exceed the budget the check stops there;
2. else the step is compiled and XLA's temp bytes added: the whole model when its LLM has at
   most ``SHALLOW_LAYERS`` layers, else shallow copies extrapolated in depth
   (``aot.depth_extrapolated_dry_run``).

The budget is ``aot.HBM_MARGIN`` (90%) of the chip's HBM. Results are cached per resolved
config, slice, jax version and model code, so a relaunch does not compile again. The step-time
estimate is the compiled step's FLOPs per chip (XLA's count, remat recompute included) at
``ASSUMED_MFU`` of the chip's bf16 peak: a planning figure, not a measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHALLOW_LAYERS = 4
ASSUMED_MFU = 0.4  # our 1B step reached 52% on an H100 (README); large-model TPU runs 40-60%
GiB = 2**30


def _layers(config) -> int:
    from cambrian import aot

    if config.model.llm.init == "random":
        return int(config.model.llm.random.num_layers)
    return int(aot.llm_shape(config)["num_layers"])


def _vocab(config) -> int | None:
    """None when the tokenizer is on this machine (the dry run reads it), else the LLM's."""
    from cambrian import aot

    tok = config.model.tokenizer
    if tok == "synthetic" or os.path.isdir(tok):
        return None
    return int(aot.llm_shape(config)["vocab_size"])


def estimate(config, accelerator: str) -> list[dict]:
    """Per stage with steps: per-chip bytes, whether they fit, FLOPs and the estimate method.
    Needs as many JAX devices as the slice has chips. Every stage's shapes are checked before
    any stage is compiled, so a config that cannot fit fails fast."""
    from cambrian import aot, tpus

    gen, _ = tpus.tpu_generation(accelerator)
    budget = tpus.HBM_MARGIN * gen.hbm
    stages = [n for n, st in config.stages.items() if st.steps > 0]
    kw = dict(topology=accelerator, vocab_size=_vocab(config))

    def result(name, r, pd, method, t0):
        st = config.stages[name]
        flops = r.get("flops_per_device")
        return {
            "stage": name, "accelerator": accelerator, "method": method,
            "devices": r["devices"], "mesh": r["mesh"], "batch_size": st.batch_size,
            "grad_accum": st.grad_accum, "remat": config.remat, "dtype": config.model.dtype,
            "per_device_gib": {k: round(v / GiB, 2) for k, v in pd.items()},
            "budget_gib": round(budget / GiB, 2), "hbm_gib": gen.hbm / GiB,
            "fits": bool(pd["total"] <= budget), "flops_per_device": flops,
            "step_seconds_estimate": (round(flops / (gen.peak_bf16 * ASSUMED_MFU), 2)
                                      if flops else None),
            "steps": st.steps, "seconds": round(time.time() - t0, 1)}

    shapes = []
    for name in stages:
        t0 = time.time()
        r = aot.dry_run(config, lower=False, stage=name, **kw)
        pd = r["per_device_bytes"]
        pd = dict(pd, total=pd["params"] + pd["optimizer"] + pd["gradients"] + pd["batch"])
        shapes.append(result(name, r, pd, "shapes only (params, optimizer, gradients, batch)",
                             t0))
    if not all(r["fits"] for r in shapes):
        return shapes
    out = []
    for name in stages:
        t0 = time.time()
        if _layers(config) > SHALLOW_LAYERS:
            r, method = aot.depth_extrapolated_dry_run(config, stage=name, **kw), \
                "depth-extrapolated"
        else:
            r, method = aot.dry_run(config, stage=name, **kw), "compiled"
        out.append(result(name, r, r["per_device_bytes"], method, t0))
    return out


# ------------------------------------------------------------------------- launcher side


def _cache_key(config_json: str, accelerator: str) -> str:
    h = hashlib.sha256(f"{config_json}\n{accelerator}\n".encode())
    h.update(importlib.metadata.version("jax").encode())
    for base, dirs, files in sorted(os.walk(os.path.join(ROOT, "cambrian"))):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                with open(os.path.join(base, f), "rb") as fh:
                    h.update(f.encode() + fh.read())
    return h.hexdigest()[:20]


def check(spec: str, overrides: list[str], config, accelerator: str) -> list[dict]:
    """``estimate`` in a subprocess with the slice's chips as CPU devices (cached)."""
    from cambrian import config as config_lib

    path = os.path.join(config.cache_dir, "memory_check",
                        _cache_key(config_lib.to_json(config), accelerator) + ".json")
    if os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    env = {**os.environ, **fake_devices(accelerator),
           "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "cambrian.pod.memory", "--config", spec,
           "--accelerator", accelerator, *overrides]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        from cambrian.pod.shell import PodError

        raise PodError(f"memory check failed ({' '.join(cmd)}):\n{r.stderr[-3000:]}\n"
                       "skip it with --no-memory-check")
    results = json.loads(r.stdout.strip().splitlines()[-1])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(results, fh)
    os.replace(path + ".tmp", path)
    return results


def describe(r: dict) -> str:
    g = r["per_device_gib"]
    parts = ", ".join(f"{k} {g[k]}" for k in ("params", "optimizer", "activations", "batch")
                      if k in g)
    line = (f"{r['stage']} on {r['accelerator']}: {g['total']} GiB per chip of "
            f"{r['budget_gib']} ({parts}; {r['method']})")
    if r["step_seconds_estimate"]:
        line += (f"; step ~{r['step_seconds_estimate']} s at {ASSUMED_MFU:.0%} MFU, "
                 f"{r['steps']} steps ~{r['step_seconds_estimate'] * r['steps'] / 3600:.1f} h")
    return line


def advice(r: dict) -> str:
    """What to change when ``r`` does not fit, by its largest part."""
    g, s = r["per_device_gib"], r["stage"]
    static = g["params"] + g["optimizer"] + g.get("gradients", 0)
    if g["batch"] >= max(static, g.get("activations", 0)):
        return (f"the batch alone takes {g['batch']} GiB per chip: lower "
                f"--config.stages.{s}.batch_size (now {r['batch_size']}) or use a slice with "
                "more chips")
    if "activations" not in g or static >= g["activations"]:
        return (f"the weights, optimizer state and gradients take {static:.1f} GiB per chip: "
                "use a slice with more chips (they are sharded over all of them with "
                f"mesh.fsdp=-1, mesh.data=1; now {r['mesh']})")
    rows = r["batch_size"] // r["devices"] // r["grad_accum"]
    fixes = []
    if rows > 1:
        fixes.append(f"--config.stages.{s}.grad_accum={r['grad_accum'] * rows} (now "
                     f"{r['grad_accum']}: {rows} rows per chip per microbatch)")
    if r["remat"] != "full":
        fixes.append(f"--config.remat=full (now {r['remat']})")
    if r["dtype"] != "bfloat16":
        fixes.append("--config.model.dtype=bfloat16 (fp32 masters stay)")
    fixes.append("a larger slice, or the config's slice preset (:v4-128, :v5p-128; README)")
    return "try " + "; or ".join(fixes)


def fake_devices(accelerator: str) -> dict:
    """The environment that makes JAX (not yet started) show the slice's chips as CPUs."""
    from cambrian import tpus

    chips, _ = tpus.parse_topology(accelerator)
    return {"JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={chips}"}


def main(argv: list[str] | None = None) -> None:
    """``python -m cambrian.pod.memory --config X --accelerator v4-128 [--config.k=v ...]``:
    the launcher's memory check, one JSON list on the last line, a line per stage before it."""
    p = argparse.ArgumentParser(description="memory check of one config on one TPU slice")
    p.add_argument("--config", required=True)
    p.add_argument("--accelerator", required=True)
    args, overrides = p.parse_known_args(argv)
    from cambrian import config as config_lib

    os.environ.update(fake_devices(args.accelerator))  # before JAX starts
    config = config_lib.load(args.config, overrides)
    results = estimate(config, args.accelerator)
    for r in results:
        print(describe(r), file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
