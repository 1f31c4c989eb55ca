"""Greedy generation throughput: cambrian's batched, jit-compiled, batch-invariant decoding
against transformers ``generate`` (PyTorch) on the same random-weight Llama, same CPU.

    python benchmarks/generate.py [--batch 32] [--new-tokens 32] [--repeats 3] [--threads 1]

transformers runs at batch 1 (how per-sample evaluation loops call it) and at the same batch
size with left padding. Every run decodes exactly ``--new-tokens`` tokens per prompt (no EOS),
tokens/s counts generated tokens only, figures are medians over ``--repeats`` rounds after a
warm-up (our compile time is reported apart). Each round times every contender once, so a
change in load on a shared machine hits all of them alike. The last line printed is one JSON
object.

Both frameworks get the same number of CPU threads (``--threads``, default 1; 0 keeps each
library's default). On a shared machine multithreaded torch and XLA spin against other load and
their timings become erratic (torch at batch 1 ran 6x slower with 2 threads than with 1 here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bs1-prompts", type=int, default=4,
                    help="prompts timed one at a time for the transformers batch-1 figure")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both; 0: defaults")
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    if args.threads:
        # Must precede the first jax import.
        multi = str(args.threads > 1).lower()
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_cpu_multi_thread_eigen={multi}"
                                   + f" intra_op_parallelism_threads={args.threads}")

    import torch
    import transformers

    from cambrian.models import llm

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=4,
        max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
    ref = transformers.LlamaForCausalLM(hf_cfg).eval()
    n_params = sum(p.numel() for p in ref.parameters())
    with tempfile.TemporaryDirectory() as d:
        ref.save_pretrained(d)
        model = llm.load(d)

    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, args.vocab, rng.integers(16, 65)).tolist()
               for _ in range(args.batch)]
    n_new = args.new_tokens
    gen_kw = dict(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, pad_token_id=0)

    def hf_batch(ps):
        t = max(map(len, ps))
        ids = torch.zeros((len(ps), t), dtype=torch.long)
        mask = torch.zeros((len(ps), t), dtype=torch.long)
        for r, p in enumerate(ps):
            ids[r, t - len(p):], mask[r, t - len(p):] = torch.tensor(p), 1
        with torch.no_grad():
            return ref.generate(ids, attention_mask=mask, **gen_kw)[:, t:].tolist()

    def ours(invariant=True):
        return llm.generate(model, prompts, max_new_tokens=n_new, eos_id=None,
                            batch_invariant=invariant)

    t0 = time.perf_counter()
    ours_tokens = ours()
    compile_s = time.perf_counter() - t0
    ours_plain_tokens = ours(False)
    bs1 = prompts[:args.bs1_prompts]
    hf_batch(bs1[:1])  # warm-up
    hf_tokens = hf_batch(prompts)

    contenders = {
        "ours": ours,
        "ours_plain": lambda: ours(False),
        "hf_bs1": lambda: [hf_batch([p]) for p in bs1],
        "hf_same_bs": lambda: hf_batch(prompts),
    }
    times = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for k, fn in contenders.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    ours_s, ours_plain_s, hf_bs1_s, hf_same_s = (
        med["ours"], med["ours_plain"], med["hf_bs1"], med["hf_same_bs"])

    total = args.batch * n_new
    ours_tps = total / ours_s
    hf_bs1_tps = len(bs1) * n_new / hf_bs1_s
    hf_same_tps = total / hf_same_s
    result = {
        "model": f"llama random {n_params / 1e6:.1f}M params (vocab {args.vocab}, hidden "
                 f"{args.hidden}, {args.layers} layers, GQA 8/4)",
        "device": "cpu", "torch_threads": torch.get_num_threads(), "batch": args.batch,
        "new_tokens": n_new, "repeats": args.repeats,
        "ours_tok_s": round(ours_tps, 1),
        "ours_plain_kernels_tok_s": round(total / ours_plain_s, 1),
        "ours_compile_s": round(compile_s, 2),
        "hf_bs1_tok_s": round(hf_bs1_tps, 1), "hf_same_bs_tok_s": round(hf_same_tps, 1),
        "speedup_vs_hf_bs1": round(ours_tps / hf_bs1_tps, 2),
        "speedup_vs_hf_same_bs": round(ours_tps / hf_same_tps, 2),
        "greedy_tokens_equal_hf": ours_tokens == hf_tokens,
        "invariant_equals_plain_kernels": ours_tokens == ours_plain_tokens,
        "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
