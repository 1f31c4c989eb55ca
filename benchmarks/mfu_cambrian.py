"""MFU of a stage-2 step of the four-tower Cambrian model, and the same step in PyTorch.

    python benchmarks/mfu_cambrian.py [--rounds 2] [--steps 5] [--warmup 2]
                                      [--configs 8:none:cudnn:512,...]
    python benchmarks/mfu_cambrian.py --tiny     # both sides at toy size on a CPU

Model (``configs/cambrian/8b.py``'s architecture with a Llama-3.2-1B-shaped LLM, random weights,
timing only), built by ``cambrian.train.build_model`` and stepped by ``make_train_step`` through
``benchmarks/mfu.py``'s runner: frozen bf16 towers SigLIP SO400M/14@384, CLIP-L/14@336 (layer
-2), DINOv2-g/14@378, ConvNeXt-XXL@1024 (all four stages) -> SVA (576 queries, depth 3, one
group, width 1024, 16 heads) -> the 1B LLM (``mfu.LLAMA_1B``) with in-LLM SVA layers after
decoder layers 0, 3, ..., 15 (the 8B's stride 3 on 16 layers: 6 layers); stage 2 trains SVA +
LLM (AdamW, global-norm clipping), bf16 compute on fp32 masters, 2048-token rows.

PyTorch side: the same model from the independent reference (``tests/release/torch_reference.py``
SVA and samplers, ``torch_towers.py`` tower wrappers around transformers CLIP / DINOv2 and timm
SigLIP / ConvNeXt built at the same sizes) with transformers' Llama (``attn_implementation=
"sdpa"``), bf16 autocast, ``torch.optim.AdamW(fused=True)`` on CUDA, the same clipping. Each
side runs in its own subprocess; rounds alternate (ours, torch, ours, ...); step times are the
median of the rounds' medians. The first round of ours tries ``--configs`` and keeps the best;
torch runs at its batch.

Model FLOPs per step (matmuls and convolutions; remat not counted), batch B, sequence T:
  LLM (trained): ``mfu.model_flops``: 6 N_llm B T + 12 L H E B T(T+1)/2
  towers (frozen, forward), per image:
    ViT: 2 [b (4C^2 + C M1 + M C) n + P^2 3 C n_patch] + 4 b C n^2, b = blocks run (CLIP's
         layer -2: depth - 1), n = n_patch + prefix tokens
    ConvNeXt (S = image size, r_i = S / 2^(i+2), C_i stage widths, d_i depths):
         2 r_0^2 16*3 C_0 + sum_i [2 r_i^2 4 C_(i-1) C_i (i > 0) + d_i 2 r_i^2 (49 C_i + 8 C_i^2)]
  SVA (trained: 3 x forward), per image; tower k has n_k tokens of C_k channels, width c:
    adapters: sum_k 2 n_k (C_k c + c^2)
    one sampler layer (query width q, N queries, K keys in all, K = sum_k N m_k^2):
        2 N (c^2 [context] + (q + c) c [in] + c^2 [query] + c^2 [out] + c^2 + c q [MLP])
        + K (4 c^2 [keys, values] + 4 c [q.k, p.v])
    query groups: depth layers each with q = c, N = s_g^2, m_k = sqrt(n_k) / s_g
    mm_projector: 2 L^2 (G c D + D^2); in-LLM layers: q = D, N = L^2, m_k = sqrt(n_k) / L
  (the context projection is counted per query, as upstream computes it.)
MFU = model FLOPs / step time / peak (989e12 for H100/H200 SXM bf16 unless --peak-tflops).

Last line: JSON with ``mfu``, ``step_s``, ``torch_step_s``, ``speedup_vs_torch`` (torch step
time / ours), ``device``, ``versions``, ``config``, ``rounds``, ``ours`` (the first round's grid)
and ``torch``; also written to ``$OUT/mfu_cambrian.json`` when OUT is set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import mfu  # noqa: E402

# the 8B's in-LLM layers (10 after 0, 3, ..., 27 of 32) at stride 3 on the 1B's 16 layers
IN_LLM_1B = dict(in_llm_layers=6, in_llm_start=0, in_llm_stride=3)
# likely best first; a configuration starts only within --budget-s of the first round's start
ORDER = ("8:none:cudnn:512", "4:none:cudnn:512", "8:dots:cudnn:512", "4:dots:einsum:0")
TINY_ORDER = ("2:dots:xla:0",)


# ------------------------------------------------------------------------------ FLOP counting


@dataclasses.dataclass(frozen=True)
class Tower:
    """One frozen tower's sizes: ``kind`` "vit" (C, blocks, M, M1, P, n_patch, n_prefix) or
    "convnext" (image, depths, widths)."""

    kind: str
    C: int = 0
    blocks: int = 0
    M: int = 0
    M1: int = 0
    P: int = 0
    n_patch: int = 0
    n_prefix: int = 0
    image: int = 0
    depths: tuple[int, ...] = ()
    widths: tuple[int, ...] = ()

    def forward_flops(self) -> int:
        if self.kind == "vit":
            n, c = self.n_patch + self.n_prefix, self.C
            block = 4 * c * c + c * self.M1 + self.M * c
            return (2 * (self.blocks * block * n + self.P * self.P * 3 * c * self.n_patch)
                    + 4 * self.blocks * c * n * n)
        r = self.image // 4
        out = 2 * r * r * 16 * 3 * self.widths[0]
        for i, (d, c) in enumerate(zip(self.depths, self.widths)):
            r = self.image // 2 ** (i + 2)
            if i:
                out += 2 * r * r * 4 * self.widths[i - 1] * c
            out += d * 2 * r * r * (49 * c + 8 * c * c)
        return out


@dataclasses.dataclass(frozen=True)
class Dims:
    """LLM (``mfu.Dims``), towers and SVA sizes (letters as in the module docstring)."""

    llm: mfu.Dims
    towers: tuple[Tower, ...]
    tokens: tuple[int, ...]  # n_k: tokens each tower hands the SVA
    channels: tuple[int, ...]  # C_k
    c: int  # SVA width
    side: int  # L
    group_sides: tuple[int, ...]  # s_g
    depth: int
    in_llm: tuple[int, ...]  # decoder layers followed by an in-LLM layer


def sampler_layer_flops(c: int, q: int, n_query: int, keys: int) -> int:
    """One SVA layer's forward: context, query, output and first MLP projections (4 c^2),
    proj_in ((q + c) c) and the MLP's last (c q) per query; keys and values (2 c^2) and
    q.k, p.v (2 c) per key."""
    return 2 * n_query * (4 * c * c + (q + c) * c + c * q) + keys * (4 * c * c + 4 * c)


def sva_forward_flops(d: Dims) -> int:
    """Per image."""
    c, big_d = d.c, d.llm.D
    out = sum(2 * n * (ck * c + c * c) for n, ck in zip(d.tokens, d.channels))
    for s in d.group_sides:
        keys = sum(s * s * (math.isqrt(n) // s) ** 2 for n in d.tokens)
        out += d.depth * sampler_layer_flops(c, c, s * s, keys)
    out += 2 * d.side ** 2 * (len(d.group_sides) * c * big_d + big_d * big_d)
    keys = sum(d.side ** 2 * (math.isqrt(n) // d.side) ** 2 for n in d.tokens)
    out += len(d.in_llm) * sampler_layer_flops(c, big_d, d.side ** 2, keys)
    return out


def model_flops(d: Dims, batch: int, seq: int) -> dict[str, float]:
    out = mfu.model_flops(d.llm, batch, seq)
    for k in ("total", "connector", "vit"):  # the single-tower parts
        del out[k]
    out["towers"] = batch * sum(t.forward_flops() for t in d.towers)
    out["sva"] = 3 * batch * sva_forward_flops(d)
    out["total"] = sum(out.values())
    return out


def tower_dims(enc) -> Tower:
    v = enc.config
    if hasattr(v, "depths"):
        return Tower("convnext", image=v.image_size, depths=tuple(v.depths),
                     widths=tuple(v.dims))
    # hidden_states[layer]: entry i is the output of block i (0 = embeddings)
    blocks = v.depth if v.layer is None else v.layer % (v.depth + 1)
    m1 = v.mlp_dim * (2 if v.mlp == "swiglu" else 1)
    return Tower("vit", C=v.width, blocks=blocks, M=v.mlp_dim, M1=m1, P=v.patch,
                 n_patch=(v.image_size // v.patch) ** 2, n_prefix=v.num_prefix)


def dims_of(model) -> Dims:
    """Dims of a built ``vlm.Cambrian`` with an SVA connector (towers in connector order)."""
    c = model.llm.config
    sva = model.connector
    llm = mfu.Dims(D=c.hidden_size, L=c.num_layers, H=c.num_heads, K=c.num_kv_heads,
                   E=c.head_dim, F=c.intermediate_size, V=c.vocab_size)
    return Dims(llm=llm, towers=tuple(tower_dims(model.encoders[a]) for a in model.order),
                tokens=tuple((m * sva.side) ** 2 for m in sva.multiples),  # after resizing
                channels=tuple(sva.encoder_channels), c=sva.dim, side=sva.side,
                group_sides=tuple(sva.group_sides), depth=len(sva.vision_sampler_0.layers),
                in_llm=tuple(sva.in_llm_layers))


class Runner(mfu.Runner):
    dims_of = staticmethod(dims_of)

    def reset(self):
        """On a CPU, host-sampled leaves: compiling one sampler per distinct shape (the GPU path)
        takes longer than the toy step itself."""
        import jax
        import numpy as np

        if jax.default_backend() != "cpu":
            return super().reset()
        rng = np.random.default_rng(0)
        self.tr, self.fr = jax.tree.map(
            lambda x: jax.numpy.asarray(0.02 * rng.standard_normal(x.shape, np.float32),
                                        x.dtype), self._abstract)
        self.opt = self._opt_init(self.tr)

    def flops(self, batch: int, seq: int) -> dict[str, float]:
        return model_flops(self.dims, batch, seq)


# ------------------------------------------------------------------------------------ the model


def make_config(tiny: bool):
    """``configs/cambrian/8b.py``'s recipe (``:runlocal`` when tiny) with random towers and a
    1B-shaped random LLM, bf16 compute."""
    from cambrian import config as C
    from cambrian.release import config as release

    c = release.recipe("8b", "runlocal" if tiny else None)
    if tiny:
        c.model.llm.random.update(mfu.TINY_LLM)
        c.model.max_len = 64
    else:
        for enc in c.model.encoders.values():
            enc.init, enc.checkpoint = "random", ""
        c.model.llm.init, c.model.llm.checkpoint = "random", ""
        c.model.llm.random.update(mfu.LLAMA_1B)
        c.model.tokenizer, c.model.template, c.model.system_prompt = "synthetic", "vicuna_v1", ""
        c.model.connector.options.update(IN_LLM_1B)
    c.model.dtype = c.model.encoder_dtype = "bfloat16"
    c.stages.stage2.trainable = r"connector|llm"
    C.validate(c)
    c.lock()
    return c


def probe(tiny: bool):
    """(config, abstract model): shapes only, nothing allocated."""
    from flax import nnx

    config = make_config(tiny)
    vocab = mfu.TINY_VOCAB if tiny else mfu.VOCAB_1B
    return config, nnx.eval_shape(lambda: mfu.build(config, vocab))


# ------------------------------------------------------------------------------------- sides


def run_ours(args) -> dict:
    result: dict = {"mfu": None, "step_s": None, "config": None, "device": None, "tried": []}
    config = make_config(args.tiny)
    mfu._bench(args, result, time.perf_counter(), config=config, runner_cls=Runner)
    return result


def run_torch(args) -> dict:
    import torch

    from benchmarks import torch_cambrian

    config, model = probe(args.tiny)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t = time.perf_counter()
    step, batch = torch_cambrian.make_step(model, args.batch, int(config.model.max_len), dev,
                                            tie=not args.untied)
    init_s = time.perf_counter() - t
    loss = None
    for _ in range(args.warmup):
        loss = step(batch)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = step(batch)
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    return {"step_s": statistics.median(times), "loss": float(loss), "batch": args.batch,
            "init_s": round(init_s, 1), "device": f"{dev}:{name}"}


def _subprocess(side: str, args, extra: list[str]) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--budget-s", str(args.budget_s)] + extra
    cmd += (["--tiny"] if args.tiny else []) + (["--untied"] if args.untied else [])
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    if args.profile and side == "ours":
        cmd += ["--profile", args.profile]
    env = dict(os.environ)
    env.pop("OUT", None)  # only the parent writes $OUT
    if side == "torch":
        env["JAX_PLATFORMS"] = "cpu"  # the shape probe must not take the accelerator
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    sys.stdout.write(proc.stdout[-4000:])
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        sys.stdout.write(proc.stderr[-4000:])
        return {"error": f"{side} exited {proc.returncode}: {proc.stderr[-400:]}"}
    out = json.loads(lines[-1])
    out["wall_s"] = round(time.perf_counter() - t, 1)
    return out


def versions() -> dict:
    from importlib import metadata

    out = {}
    for p in ("jax", "jaxlib", "flax", "torch", "transformers", "timm"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def compare(args) -> dict:
    result: dict = {"mfu": None, "speedup_vs_torch": None, "step_s": None, "torch_step_s": None,
                    "device": None, "versions": versions(), "config": None, "rounds": [],
                    "note": "random-init weights, synthetic batches (timing only)"}
    configs = args.configs or ",".join(TINY_ORDER if args.tiny else ORDER)
    ours_s, torch_s = [], []
    for r in range(args.rounds):
        ours = _subprocess("ours", args, ["--configs", configs])
        rnd = {"ours_step_s": ours.get("step_s"), "ours_error": ours.get("error")}
        if r == 0:
            result["ours"] = ours
        if ours.get("step_s"):
            ours_s.append(ours["step_s"])
            if result["config"] is None:
                result.update(config=ours["config"], device=ours["device"],
                              model_flops_per_step=ours.get("model_flops_per_step"),
                              peak_flops=ours.get("peak_flops"))
                c = ours["config"]
                configs = f"{c['batch']}:{c['remat']}:{c['attention']}:{c['loss_chunk']}"
        batch = (result["config"] or {}).get("batch") or int(configs.split(":")[0])
        tr = _subprocess("torch", args, ["--batch", str(batch)])
        result["torch"] = tr
        rnd.update(torch_step_s=tr.get("step_s"), torch_error=tr.get("error"))
        if tr.get("step_s"):
            torch_s.append(tr["step_s"])
        result["rounds"].append(rnd)
        _save(result)
    if ours_s:
        result["step_s"] = round(statistics.median(ours_s), 5)
        peak = result.get("peak_flops")
        flops = (result.get("model_flops_per_step") or {}).get("total")
        if peak and flops:
            result["mfu"] = round(flops / result["step_s"] / peak, 4)
    if torch_s:
        result["torch_step_s"] = round(statistics.median(torch_s), 5)
    if ours_s and torch_s:
        result["speedup_vs_torch"] = round(result["torch_step_s"] / result["step_s"], 3)
    return result


def _save(result: dict) -> str:
    line = json.dumps(result)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "mfu_cambrian.json"), "w") as fh:
            fh.write(line + "\n")
    return line


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="toy sizes (CPU smoke run)")
    p.add_argument("--side", choices=("both", "ours", "torch"), default="both")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    p.add_argument("--steps", type=int, default=5, help="timed steps per round (>= 1)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--configs", default="",
                   help="ours: comma-separated batch:remat:attention:loss_chunk (mfu.py's)")
    p.add_argument("--batch", type=int, default=8, help="torch side: rows per step")
    p.add_argument("--budget-s", type=float, default=240.0,
                   help="ours, first round: start no new configuration after this many seconds")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--untied", action="store_true")
    p.add_argument("--profile", default="")
    args = p.parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        p.error("--steps and --rounds must be >= 1")
    if args.side == "ours":
        if not args.tiny:
            os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")
        result = run_ours(args)
        print(json.dumps(result), flush=True)
    elif args.side == "torch":
        result = run_torch(args)
        print(json.dumps(result), flush=True)
    else:
        result = compare(args)
        print(_save(result), flush=True)
    return result


if __name__ == "__main__":
    main()
