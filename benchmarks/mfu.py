"""Model FLOP utilisation of one Cambrian stage-2 train step on one accelerator.

    python benchmarks/mfu.py [--budget-s 200] [--steps 5] [--warmup 2] [--profile DIR]
                             [--configs 16:none:cudnn:512,...]
    python benchmarks/mfu.py --tiny      # the same code at toy size on a CPU, in seconds

Model, built by ``cambrian.train.build_model`` and stepped by ``cambrian.train.make_train_step``:
DINOv2 ViT-L/14 @336 (576 patch tokens + CLS; frozen, bf16) -> mlp2x_gelu (+ row newlines: 600
visual tokens) -> a Llama-3.2-1B-shaped LLM (D 2048, 16 layers, 32 query / 8 kv heads of 64,
MLP 8192, vocab 128256, tied embeddings) computing in bf16 on fp32 master weights; stage 2:
connector + LLM trained with AdamW (global-norm clipping). Sequences of 2048 tokens (BOS, the
visual tokens, random text), all text in the loss. Weights are RANDOM (timing only).

Each configuration (batch, ``config.remat``, ``LlamaConfig.attention``, ``config.loss_chunk``:
positions per cross-entropy piece, 0 = whole float32 logits) is compiled, run for
``--warmup`` steps, then timed over ``--steps`` steps (median). The batch holds one sequence per
row, so fused attention runs on lengths (``train.make_train_step(packed=False)``); attention
"cudnn_mask" / "xla_mask" times the [B, T, T] mask that packed rows need instead. A
configuration starts only while the wall clock since start is under ``--budget-s``; failures
(e.g. out of memory) are printed and the next one is tried.

Model FLOPs per step (matmuls; rematerialisation is not counted), batch B, sequence T:
  LLM, trained (forward + backward = 3 x forward):
      6 * N_llm * B*T + 12 * L * H*E * B * T(T+1)/2
      N_llm = L * (D*H*E + 2*D*K*E + H*E*D + 3*D*F) + D*V   (q, k, v, o; gate, up, down; logits)
      causal attention: query i meets i+1 keys; per (query, key) pair q.k and p*v cost
      2*H*E FLOPs each forward
  connector, trained:  6 * (C*D + D*D) * B * n_patch                (mlp2x_gelu, C = ViT width)
  ViT, frozen (forward only):
      2 * B * [depth * (4*C^2 + C*M1 + M*C) * n + P*P*3*C * n_patch] + 4 * B * depth * C * n^2
      n = n_patch + prefix tokens, M1 = fc1 width (2M for SwiGLU), P = patch size
MFU = model FLOPs / step time / peak; peak 989e12 (H100/H200 SXM bf16 dense) unless
``--peak-tflops``; also against a measured 8192^3 bf16 matmul. XLA's own count
(``cost_analysis``) is printed beside it: it includes remat recomputation and elementwise work
and does not see custom calls (cuDNN attention).

Prints one line per configuration, then one JSON line (also written to ``$OUT/mfu.json`` when
``OUT`` is set) with ``mfu``, ``mfu_vs_measured_matmul``, ``step_s``, ``tokens_per_s``,
``config``, ``device`` and ``tried``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
import traceback

from cambrian import runlog

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32,
                num_kv_heads=8, head_dim=64, rope_theta=500000.0)
VOCAB_1B = 128256
TINY_LLM = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                head_dim=16, rope_theta=10000.0)
TINY_VOCAB = 512
# batch:remat:attention:loss_chunk, likely best first; the einsum (default) attention configs
# are there should cuDNN's fail.
ORDER = ("16:none:cudnn:512", "8:none:cudnn:512", "12:none:cudnn:512", "8:none:cudnn:0",
         "8:none:cudnn_mask:0", "16:dots:cudnn:512", "4:dots:einsum:0", "8:none:einsum:512")
TINY_ORDER = ("2:dots:xla:0", "2:dots:xla:16")


# ------------------------------------------------------------------------------ FLOP counting


@dataclasses.dataclass(frozen=True)
class Dims:
    """The sizes the FLOP formula needs (see the module docstring for the letters)."""

    D: int  # LLM width
    L: int  # decoder layers
    H: int  # query heads
    K: int  # kv heads
    E: int  # head dim
    F: int  # MLP width
    V: int  # vocab
    C: int = 0  # ViT width (0: no vision)
    depth: int = 0
    M: int = 0  # ViT MLP hidden width (fc2 input)
    M1: int = 0  # ViT fc1 output width (M, or 2M for SwiGLU)
    P: int = 0  # patch size
    n_patch: int = 0
    n_prefix: int = 0  # CLS + registers
    conn_depth: int = 2  # mlp2x_gelu

    def llm_matmul_params(self) -> int:
        d, h, k, e, f = self.D, self.H, self.K, self.E, self.F
        return self.L * (d * h * e + 2 * d * k * e + h * e * d + 3 * d * f) + d * self.V


def model_flops(d: Dims, batch: int, seq: int) -> dict[str, float]:
    """Model FLOPs of one train step by the formula in the module docstring, by part."""
    out = {
        "llm_dense": 6 * d.llm_matmul_params() * batch * seq,
        "llm_attention": 12 * d.L * d.H * d.E * batch * seq * (seq + 1) // 2,
        "connector": 0, "vit": 0,
    }
    if d.C:
        conn = d.C * d.D + (d.conn_depth - 1) * d.D * d.D
        out["connector"] = 6 * conn * batch * d.n_patch
        n = d.n_patch + d.n_prefix
        block = 4 * d.C * d.C + d.C * d.M1 + d.M * d.C
        out["vit"] = (2 * batch * (d.depth * block * n + d.P * d.P * 3 * d.C * d.n_patch)
                      + 4 * batch * d.depth * d.C * n * n)
    out["total"] = sum(out.values())
    return out


def dims_of(model) -> Dims:
    """Dims of a built ``vlm.Cambrian`` with one ViT encoder and a GridProjector connector."""
    c = model.llm.config
    (enc,) = model.encoders.values()
    v = enc.config
    m1 = v.mlp_dim * (2 if v.mlp == "swiglu" else 1)
    return Dims(D=c.hidden_size, L=c.num_layers, H=c.num_heads, K=c.num_kv_heads, E=c.head_dim,
                F=c.intermediate_size, V=c.vocab_size, C=v.width, depth=v.depth, M=v.mlp_dim,
                M1=m1, P=v.patch, n_patch=v.grid[0] * v.grid[1], n_prefix=v.num_prefix,
                conn_depth=len(model.connector.mm_projector.layers))


# ------------------------------------------------------------------------------------ the model


def make_config(tiny: bool):
    """The probe config: one frozen random DINOv2, mlp2x_gelu, a random Llama, bf16 compute."""
    from cambrian import config as C

    c = C.base_config()
    C.add_encoder(c.model, "dinov2", C.encoder("dinov2", "runlocal" if tiny else "L/14",
                                               image_size=0 if tiny else 336, init="random"))
    c.model.connector.name = "mlp2x_gelu"
    c.model.llm.init = "random"
    c.model.llm.random.update(TINY_LLM if tiny else LLAMA_1B)
    c.model.tokenizer = "synthetic"
    c.model.max_len = 64 if tiny else 2048
    c.model.dtype = "bfloat16"
    c.model.encoder_dtype = "bfloat16"
    c.stages.stage2.update(dict(steps=1000, trainable=r"connector|llm"))
    C.validate(c)
    c.lock()
    return c


def build(config, vocab: int, *, attention: str = "einsum", tie: bool = True):
    """``train.build_model`` (random init) with the LLM's attention and tied embeddings set."""
    from flax import nnx

    from cambrian import train
    from cambrian.models import llm

    model = train.build_model(config, vocab_size=vocab, load_pretrained=False)
    # every module holding the LLM config (model, layers, attention) must see the same choice
    for _, node in nnx.iter_graph(model.llm):
        c = getattr(node, "config", None)
        if isinstance(c, llm.LlamaConfig):
            node.config = dataclasses.replace(c, attention=attention, tie_word_embeddings=tie)
    if tie and hasattr(model.llm, "lm_head"):
        del model.llm.lm_head
    return model


def synthetic_batch(batch: int, seq: int, vocab: int, n_image: int, images, seed=0):
    """BOS, ``n_image`` visual slots, random text; every text token is in the loss; ``images``:
    the model's ``host_images()`` (random square images)."""
    import numpy as np

    from cambrian.models.tokens import IMAGE_TOKEN

    rng = np.random.default_rng(seed)
    pixels = images.batch([None] * batch)
    tokens = rng.integers(3, vocab, (batch, seq)).astype(np.int32)
    tokens[:, 0] = 1
    tokens[:, 1:1 + n_image] = IMAGE_TOKEN
    loss_mask = np.zeros((batch, seq), bool)
    loss_mask[:, 1 + n_image:] = True
    return {
        "tokens": tokens, "loss_mask": loss_mask,
        "segment_ids": np.ones((batch, seq), np.int32),
        "image": {a: rng.integers(0, 256, x.shape).astype(np.uint8)
                  for a, x in pixels["image"].items()},
        "letterbox": pixels["letterbox"],
    }


# ------------------------------------------------------------------------------------- timing


def measured_matmul(n: int, dtype: str, repeats: int = 5, inner: int = 10) -> float:
    """FLOP/s of a jitted n x n x n matmul (median of ``repeats`` runs of ``inner`` calls)."""
    import jax

    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), dtype)
    b = jax.random.normal(kb, (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    f(a, b).block_until_ready()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            out = f(a, b)
        out.block_until_ready()
        ts.append((time.perf_counter() - t) / inner)
    return 2 * n**3 / statistics.median(ts)


def device_peak(kind: str, override_tflops: float | None) -> float | None:
    """bf16 dense peak FLOP/s of one device: the trainer's table (``runlog.PEAK_FLOPS``)."""
    return runlog.peak_flops(kind, override_tflops or 0.0)


def parse_configs(text: str) -> list[tuple[int, str, str, int]]:
    """``batch:remat:attention[:loss_chunk]`` items (loss_chunk 0 = whole logits)."""
    out = []
    for item in filter(None, text.split(",")):
        b, remat, attn, *chunk = item.split(":")
        out.append((int(b), remat, attn, int(chunk[0]) if chunk else 0))
    return out


def _is_oom(msg: str) -> bool:
    return any(k in msg.lower() for k in ("resource_exhausted", "out of memory"))


def _short_error(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return msg[:400]


class Runner:
    """Holds the parameters and optimizer state across configurations (one init)."""

    def __init__(self, config, vocab: int, tie: bool):
        import jax
        from flax import nnx

        from cambrian import optim

        self.config, self.vocab, self.tie = config, vocab, tie
        self.stage = config.stages.stage2
        self.filt = optim.trainable_filter(self.stage.trainable)
        probe = nnx.eval_shape(lambda: build(config, vocab, tie=tie))
        self.dims = self.dims_of(probe)
        self.n_image = int(probe.num_image_tokens)
        self.images = probe.host_images()
        _, tr, fr = nnx.split(probe, self.filt, ...)
        self.n_trained = sum(x.size for x in jax.tree.leaves(tr))
        self.n_frozen = sum(x.size for x in jax.tree.leaves(fr))
        self.tx = optim.make(self.stage, tr)
        self._abstract = (tr, fr)
        self._opt_init = jax.jit(self.tx.init)
        self.reset()

    dims_of = staticmethod(dims_of)

    def flops(self, batch: int, seq: int) -> dict[str, float]:
        """Model FLOPs of one step by part (``model_flops``)."""
        return model_flops(self.dims, batch, seq)

    def reset(self):
        """Every leaf N(0, 0.02) in its dtype, one small jitted sampler per distinct shape:
        timing does not depend on the values, and compiling the model's own initialiser as
        one program took 80 s on an H100."""
        import jax
        import jax.numpy as jnp

        samplers = {}

        def sample(i, x):
            key = (x.shape, x.dtype)
            if key not in samplers:
                samplers[key] = jax.jit(lambda k, s=x.shape, d=x.dtype: (
                    0.02 * jax.random.normal(k, s, jnp.float32)).astype(d))
            return samplers[key](jax.random.key(i))

        leaves, treedef = jax.tree.flatten(self._abstract)
        self.tr, self.fr = jax.tree.unflatten(treedef, [sample(i, x) for i, x in enumerate(leaves)])
        self.opt = self._opt_init(self.tr)

    def damaged(self) -> bool:
        import jax

        return any(x.is_deleted() for x in jax.tree.leaves((self.tr, self.fr, self.opt)))

    def compile(self, batch_size: int, remat: str, attention: str, loss_chunk: int):
        """The train step compiled for one configuration, its synthetic batch, and the seconds
        lowering and compiling took."""
        import jax
        from flax import nnx

        from cambrian import train

        with self.config.unlocked():
            self.config.remat = remat
        # "<impl>_mask": the [B, T, T] mask that packed rows need, instead of lengths
        packed = attention.endswith("_mask")
        attention = attention.removesuffix("_mask")
        abstract = nnx.eval_shape(lambda: build(self.config, self.vocab, attention=attention,
                                                tie=self.tie))
        gd = nnx.split(abstract, self.filt, ...)[0]
        step = train.make_train_step(gd, self.tx, loss_chunk=loss_chunk, packed=packed)
        seq = int(self.config.model.max_len)
        batch = jax.device_put(synthetic_batch(batch_size, seq, self.vocab, self.n_image,
                                               self.images))
        t = time.perf_counter()
        compiled = step.lower(self.tr, self.fr, self.opt, batch).compile()
        return compiled, batch, time.perf_counter() - t

    def run(self, batch_size: int, remat: str, attention: str, loss_chunk: int, warmup: int,
            steps: int, free_bytes, profile_dir: str = "") -> dict:
        import jax
        import numpy as np

        rec: dict = {"batch": batch_size, "remat": remat, "attention": attention,
                     "loss_chunk": loss_chunk}
        compiled, batch, seconds = self.compile(batch_size, remat, attention, loss_chunk)
        rec["compile_s"] = round(seconds, 1)
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        rec["xla_flops"] = float((cost or {}).get("flops", 0.0)) or None
        try:
            ma = compiled.memory_analysis()
            need = ma.temp_size_in_bytes + ma.output_size_in_bytes - ma.alias_size_in_bytes
            rec["temp_gb"] = round(ma.temp_size_in_bytes / 2**30, 2)
        except Exception:  # not every backend reports it
            need = None
        free = free_bytes()
        if need is not None and free is not None and need > free:
            rec["error"] = (f"predicted out of memory: needs {need / 2**30:.1f} GiB more, "
                            f"{free / 2**30:.1f} GiB free")
            return rec
        m = None
        for _ in range(warmup):
            self.tr, self.opt, m = compiled(self.tr, self.fr, self.opt, batch)
        if m is not None:
            jax.block_until_ready(m)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            self.tr, self.opt, m = compiled(self.tr, self.fr, self.opt, batch)
            jax.block_until_ready(m)
            times.append(time.perf_counter() - t)
        if profile_dir:  # two more steps under the profiler, outside the timing
            jax.profiler.start_trace(profile_dir)
            for _ in range(2):
                self.tr, self.opt, m = compiled(self.tr, self.fr, self.opt, batch)
            jax.block_until_ready(m)
            jax.profiler.stop_trace()
        loss = float(m["loss"])
        if not np.isfinite(loss):
            rec["error"] = f"loss is {loss}"
            return rec
        rec["step_s"] = statistics.median(times)
        rec["loss"] = round(loss, 4)
        return rec


# ---------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    t_start = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="toy sizes, one config (CPU smoke run)")
    p.add_argument("--budget-s", type=float, default=200.0,
                   help="start no new configuration after this many seconds")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (>= 1)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--configs", default="",
                   help="comma-separated batch:remat:attention[:loss_chunk] (remat none|dots|"
                        "full, attention einsum|xla|cudnn, loss_chunk 0 = whole logits); "
                        "default: a grid, likely best first")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="peak bf16 TFLOP/s (default: by device kind; H100/H200 SXM 989)")
    p.add_argument("--untied", action="store_true", help="separate lm_head (default: tied)")
    p.add_argument("--profile", default="",
                   help="write a jax.profiler trace of two steps of the first configuration "
                        "to this directory")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps {args.steps}: need at least one timed step")
    if not args.tiny:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.9")

    result: dict = {"mfu": None, "mfu_vs_measured_matmul": None, "step_s": None,
                    "tokens_per_s": None, "config": None, "device": None, "tried": [],
                    "note": "random-init weights, synthetic batches (timing only)"}
    try:
        _bench(args, result, t_start)
    except (Exception, KeyboardInterrupt) as e:  # the JSON line must come out whatever happened
        traceback.print_exc()
        result["error"] = _short_error(e)
    result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    print(_save(result), flush=True)
    return result


def _save(result: dict) -> str:
    """``result`` as one JSON line, also written to ``$OUT/mfu.json`` when OUT is set (after
    every configuration too, so a run killed part-way still leaves what it measured)."""
    line = json.dumps(result)
    if os.environ.get("OUT"):
        try:
            with open(os.path.join(os.environ["OUT"], "mfu.json"), "w") as fh:
                fh.write(line + "\n")
        except OSError as e:
            print(f"could not write $OUT/mfu.json: {e}", flush=True)
    return line


def _bench(args, result: dict, t_start: float, config=None, runner_cls=Runner) -> None:
    """The grid of ``args.configs`` on ``config`` (default: ``make_config``), best into
    ``result``."""
    import jax

    dev = jax.devices()[0]
    result["device"] = f"{dev.platform}:{dev.device_kind}"
    result["jax"] = jax.__version__
    print(f"jax {jax.__version__}  XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}  "
          f"XLA_PYTHON_CLIENT_MEM_FRACTION={os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION')}",
          flush=True)
    peak = device_peak(dev.device_kind, args.peak_tflops)
    n = 256 if args.tiny else 8192
    mm = measured_matmul(n, "bfloat16")
    result.update(peak_flops=peak, matmul_flops_per_s=round(mm), matmul_n=n)
    print(f"device {result['device']}  peak {peak and peak / 1e12} TFLOP/s  measured {n}^3 bf16 "
          f"matmul {mm / 1e12:.4g} TFLOP/s", flush=True)

    config = config or make_config(args.tiny)
    vocab = TINY_VOCAB if args.tiny else VOCAB_1B
    t = time.perf_counter()
    runner = runner_cls(config, vocab, tie=not args.untied)
    seq = int(config.model.max_len)
    result["model"] = {"trained_params": runner.n_trained, "frozen_params": runner.n_frozen,
                       "image_tokens": runner.n_image, "seq_len": seq,
                       "dims": dataclasses.asdict(runner.dims)}
    print(f"init {time.perf_counter() - t:.1f}s: {runner.n_trained:,} trained + "
          f"{runner.n_frozen:,} frozen params, {runner.n_image} visual tokens, seq {seq}",
          flush=True)
    per_seq = runner.flops(1, seq)
    print("model FLOPs per sequence: " + ", ".join(f"{k} {v:.4g}" for k, v in per_seq.items()),
          flush=True)

    def free_bytes():
        try:
            stats = dev.memory_stats()
            return stats["bytes_limit"] - stats["bytes_in_use"]
        except Exception:  # CPU (None) or a backend without these counters
            return None

    grid = parse_configs(args.configs or ",".join(TINY_ORDER if args.tiny else ORDER))
    result["model_flops_per_seq"] = per_seq
    best = None
    skipped, broken, too_big = [], set(), []
    for b, remat, attn, chunk in grid:
        name = f"{b}:{remat}:{attn}:{chunk}"
        if time.perf_counter() - t_start > args.budget_s:
            skipped.append(f"{name} (budget)")
            continue
        if attn in broken:
            skipped.append(f"{name} (attention {attn} failed)")
            continue
        if any(b >= b0 and (remat, attn, chunk) == k0 for b0, k0 in too_big):
            skipped.append(f"{name} (a smaller batch ran out of memory)")
            continue
        t = time.perf_counter()
        try:
            rec = runner.run(b, remat, attn, chunk, args.warmup, args.steps, free_bytes,
                             args.profile if not result["tried"] else "")
        except Exception as e:
            rec = {"batch": b, "remat": remat, "attention": attn, "loss_chunk": chunk,
                   "error": _short_error(e)}
            if not _is_oom(rec["error"]):
                traceback.print_exc(limit=-6)
                if attn == "cudnn" and "cudnn" in rec["error"].lower():
                    broken.add(attn)  # the kernel is unavailable; its other configs would fail too
        rec["wall_s"] = round(time.perf_counter() - t, 1)
        if "step_s" in rec:
            flops = runner.flops(b, seq)
            rec["model_flops"] = flops["total"]
            rec["tokens_per_s"] = round(b * seq / rec["step_s"])
            rec["mfu"] = round(flops["total"] / rec["step_s"] / peak, 4) if peak else None
            rec["mfu_vs_measured_matmul"] = round(flops["total"] / rec["step_s"] / mm, 4)
            if rec.get("xla_flops") and peak:
                rec["xla_flops_utilization"] = round(rec["xla_flops"] / rec["step_s"] / peak, 4)
            rec["step_s"] = round(rec["step_s"], 5)
            if best is None or rec["step_s"] / b < best["step_s"] / best["batch"]:
                best = rec
                result.update(
                    mfu=rec["mfu"], mfu_vs_measured_matmul=rec["mfu_vs_measured_matmul"],
                    step_s=rec["step_s"], tokens_per_s=rec["tokens_per_s"],
                    config={"batch": b, "remat": remat, "attention": attn, "loss_chunk": chunk,
                            "seq_len": seq},
                    model_flops_per_step=flops)
            print(f"{name}: step {rec['step_s']:.4f}s  {rec['tokens_per_s']:,} tok/s  "
                  f"MFU {rec['mfu']}  (vs matmul {rec['mfu_vs_measured_matmul']})  "
                  f"XLA {rec.get('xla_flops') or 0:.3g} FLOP  compile {rec['compile_s']}s  "
                  f"temp {rec.get('temp_gb')} GiB  loss {rec['loss']}", flush=True)
        else:
            if _is_oom(rec["error"]):
                too_big.append((b, (remat, attn, chunk)))
            print(f"{name}: FAILED after {rec['wall_s']}s: {rec['error']}", flush=True)
        result["tried"].append(rec)
        result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        _save(result)
        if runner.damaged():  # a failed step may have consumed the donated buffers
            runner.reset()
    if skipped:
        result["skipped"] = skipped


if __name__ == "__main__":
    main()
