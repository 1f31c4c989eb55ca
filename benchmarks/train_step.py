"""Our jitted train step vs the same model in PyTorch, side by side on this CPU.

    python benchmarks/train_step.py [--repeats 20] [--hidden 256] [--layers 4] [--batch 16]

Model: the dinov2 runlocal probe (ViT 64 wide, 2 blocks, 56 px) -> mlp2x_gelu -> a Llama of the
given width, stage 2 (connector + LLM trained, encoder frozen), AdamW with global-norm clipping,
batches from the synthetic training data. PyTorch: transformers ``Dinov2Model`` +
``nn.Sequential(Linear, GELU, Linear)`` (+ the row-newline tokens) + ``LlamaForCausalLM`` of the
same sizes, ``torch.optim.AdamW``, the same tokens and images. Prints one JSON line with the median
step times, ``speedup_vs_torch`` (torch time / our time), our step's FLOPs (XLA cost analysis),
achieved FLOP/s and ``fraction_of_matmul_peak`` against a measured 2048^3 float32 matmul.
Each side is timed in its own subprocess (``--rounds`` alternating rounds of ``--repeats`` steps
each, median per round, median over rounds), so neither framework's thread pool competes with
the other's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _median_time(fn, repeats: int) -> float:
    fn()  # warm up (compile / allocator)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def prepare(args, cache_dir):
    """The probe model (random init) and one synthetic training batch, as both sides see them."""
    from cambrian import config as C
    from cambrian import train
    from cambrian.data import chat_templates, loader, tokenizer

    c = C.load("encoders/dinov2.py:runlocal")
    c.model.llm.random.update(dict(hidden_size=args.hidden, intermediate_size=3 * args.hidden,
                                   num_layers=args.layers, num_heads=args.hidden // 32,
                                   num_kv_heads=args.hidden // 64, head_dim=32))
    with c.unlocked():
        c.cache_dir = cache_dir
    c.data.synthetic.update(dict(align=64, train=256, eval=8))
    tok = tokenizer.load("synthetic")
    model = train.build_model(c, tok)
    st = c.stages.stage2
    path, root = loader.resolve(st.data, "", cache_dir, c.data.synthetic.to_dict())
    enc = loader.Encoder(template=chat_templates.get(c.model.template), tokenizer=tok,
                         num_image_tokens=model.num_image_tokens, max_len=c.model.max_len,
                         images=model.host_images(), image_root=root, skip_bad=False,
                         system=c.model.system_prompt)
    batch = next(iter(loader.dataset(loader.load_records(path), enc, batch_size=args.batch,
                                     num_batches=1, seed=0)))
    return batch, model, c


def build_ours(args, batch, model, c):
    import jax
    from flax import nnx

    from cambrian import optim, train

    st = c.stages.stage2
    gd, trainable, frozen = nnx.split(model, optim.trainable_filter(st.trainable), ...)
    tx = optim.make(st, trainable)
    step = train.make_train_step(gd, tx)
    state = {"tr": trainable, "opt": jax.jit(tx.init)(trainable)}
    jbatch = jax.device_put(batch)
    compiled = step.lower(trainable, frozen, state["opt"], jbatch).compile()  # compiled once
    flops = compiled.cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", 0.0)

    def run():
        state["tr"], state["opt"], m = compiled(state["tr"], frozen, state["opt"], jbatch)
        jax.block_until_ready(m["loss"])

    return run, float(flops)


def build_torch(args, batch, model, c):
    import numpy as np
    import torch
    from transformers import Dinov2Config, Dinov2Model, LlamaConfig, LlamaForCausalLM

    from cambrian.models.tokens import IMAGE_TOKEN

    torch.manual_seed(0)
    v = model.encoders["dinov2"].config
    vit = Dinov2Model(Dinov2Config(hidden_size=v.width, num_hidden_layers=v.depth,
                                   num_attention_heads=v.heads, mlp_ratio=v.mlp_dim // v.width,
                                   patch_size=v.patch, image_size=v.image_size)).eval()
    for p in vit.parameters():
        p.requires_grad_(False)
    lc = model.llm.config
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=lc.vocab_size, hidden_size=lc.hidden_size,
        intermediate_size=lc.intermediate_size, num_hidden_layers=lc.num_layers,
        num_attention_heads=lc.num_heads, num_key_value_heads=lc.num_kv_heads,
        head_dim=lc.head_dim, attn_implementation="sdpa"))
    proj = torch.nn.Sequential(torch.nn.Linear(v.width, lc.hidden_size), torch.nn.GELU(),
                               torch.nn.Linear(lc.hidden_size, lc.hidden_size))
    newline = torch.nn.Parameter(torch.zeros(lc.hidden_size))
    params = [*llm.parameters(), *proj.parameters(), newline]
    st = c.stages.stage2
    opt = torch.optim.AdamW(params, lr=st.lr, betas=(st.b1, st.b2), weight_decay=0.0)
    spec = model.specs["dinov2"]
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std).view(1, 3, 1, 1) * 255
    img = torch.from_numpy(np.asarray(batch["image"]["dinov2"])).permute(0, 3, 1, 2).float()
    tokens = torch.from_numpy(np.asarray(batch["tokens"])).long()
    is_img = tokens == IMAGE_TOKEN
    attn = torch.from_numpy(np.asarray(batch["segment_ids"]) != 0).long()
    labels = torch.where(torch.from_numpy(np.asarray(batch["loss_mask"])), tokens, -100)
    gh, gw = v.image_size // v.patch, v.image_size // v.patch

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            f = vit(pixel_values=(img - mean) / std).last_hidden_state[:, 1:]
        x = proj(f).view(-1, gh, gw, lc.hidden_size)
        x = torch.cat([x, newline.expand(x.shape[0], gh, 1, -1)], 2).flatten(1, 2)
        emb = llm.get_input_embeddings()(tokens.clamp(min=0))
        emb = emb.masked_scatter(is_img[..., None], x[:, : int(is_img[0].sum())].reshape(-1))
        loss = llm(inputs_embeds=emb, attention_mask=attn, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, st.grad_clip)
        opt.step()

    return run


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    t = _median_time(lambda: f(a).block_until_ready(), repeats)
    return 2 * n**3 / t


def time_side(args) -> None:
    """One side in this process (no other framework's thread pools running): prints
    ``{"step_s": median, "flops": ...}``."""
    batch, model, c = prepare(args, os.environ.get("CAMBRIAN_CACHE", "/tmp/cambrian-bench"))
    flops = 0.0
    if args.side == "ours":
        run, flops = build_ours(args, batch, model, c)
    else:
        run = build_torch(args, batch, model, c)
    print(json.dumps({"step_s": _median_time(run, args.repeats), "flops": flops,
                      "seq_len": int(c.model.max_len)}), flush=True)


def _side(args, side: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--repeats",
           str(args.repeats), "--hidden", str(args.hidden), "--layers", str(args.layers),
           "--batch", str(args.batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--side", choices=("ours", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        time_side(args)
        return
    # Each side in its own process (JAX's and torch's thread pools never compete), in
    # alternating rounds so both see the same background load; medians over rounds.
    t_ours, t_torch, flops, seq = [], [], 0.0, 0
    for r in range(args.rounds):
        o, t = _side(args, "ours"), _side(args, "torch")
        t_ours.append(o["step_s"])
        t_torch.append(t["step_s"])
        flops, seq = o["flops"], o["seq_len"]
        print(f"round {r + 1}: ours {o['step_s']:.4f} s/step, torch {t['step_s']:.4f} s/step",
              flush=True)
    t_o, t_t = statistics.median(t_ours), statistics.median(t_torch)
    peak = matmul_peak()
    print(json.dumps({
        "speedup_vs_torch": round(t_t / t_o, 3),
        "fraction_of_matmul_peak": round(flops / t_o / peak, 4),
        "ours_step_s": round(t_o, 5), "torch_step_s": round(t_t, 5),
        "flops_per_step": flops, "ours_flop_s": round(flops / t_o), "matmul_peak_flop_s":
        round(peak), "batch": args.batch, "seq_len": seq,
        "llm": {"hidden": args.hidden, "layers": args.layers}, "repeats": args.repeats,
        "rounds": args.rounds,
    }))


if __name__ == "__main__":
    main()
