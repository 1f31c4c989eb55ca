"""Is the input pipeline or the train step the bottleneck?

    python benchmarks/loader.py [--n 400] [--repeats 3]

Measures, on this machine: examples/s of one loader worker (PNG decode + per-encoder
pad-to-square and resize + tokenise + pad, then first-fit packing into 2048-token rows), and
examples/s the jitted runlocal train step consumes. For Cambrian-8B shapes it estimates, from
FLOPs, the examples/s one TPU v4 chip consumes (6 x params x tokens for the LLM + connector,
2 x params x tokens for the frozen encoders, at 50% of the 275 TFLOP/s bf16 peak). Last line:
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

# Cambrian-1-8B: Llama-3-8B, 2048-token rows; SigLIP-SO400M + CLIP-L + DINOv2-g + ConvNeXt-XXL.
LLM_PARAMS = 8.0e9
ENCODER_PARAMS_TOKENS = [(0.43e9, 729), (0.30e9, 576), (1.1e9, 729), (0.85e9, 4096)]
TOKENS_PER_EXAMPLE = 2048
TPU_V4_PEAK, MFU = 275e12, 0.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import jax
    from flax import nnx

    from cambrian import config as C
    from cambrian import optim, sharding, train
    from cambrian.data import chat_templates, loader, packing, tokenizer
    from cambrian.models.encoders import preprocess

    cfg = C.load("encoders/dinov2.py:runlocal")
    tok = tokenizer.load("synthetic")
    model = train.build_model(cfg, tok)
    path, root = loader.resolve("synthetic:train", "", cfg.cache_dir, cfg.data.synthetic.to_dict())
    recs = loader.load_records(path)[: args.n]
    enc = loader.Encoder(template=chat_templates.get("vicuna_v1"), tokenizer=tok,
                         num_image_tokens=model.num_image_tokens, max_len=cfg.model.max_len,
                         images=model.host_images(), image_root=root, skip_bad=False,
                         system="")
    rates, pack_eff = [], 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        exs = [enc(r) for r in recs]
        packed = packing.pack([{"tokens": e["tokens"][e["segment_ids"] > 0],
                                "loss_mask": e["loss_mask"][e["segment_ids"] > 0],
                                "images": [0]} for e in exs], 2048, max_images=16)
        rates.append(len(recs) / (time.perf_counter() - t0))
        pack_eff = packing.packing_efficiency(packed)

    stage = cfg.stages.stage2
    gd, trainable, frozen = nnx.split(model, optim.trainable_filter(stage.trainable), ...)
    tx = optim.make(stage, trainable)
    step = train.make_train_step(gd, tx)
    opt = tx.init(trainable)
    mesh = sharding.make_mesh(cfg.mesh)
    bs = stage.batch_size
    batch = preprocess.stack(exs[:bs])
    batch = sharding.put_batch(batch, mesh)
    trainable, opt, m = step(trainable, frozen, opt, batch)  # compile
    jax.block_until_ready(m["loss"])
    times = []
    for _ in range(max(5, args.repeats)):
        t0 = time.perf_counter()
        trainable, opt, m = step(trainable, frozen, opt, batch)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    step_rate = bs / statistics.median(times)

    flops = 6 * LLM_PARAMS * TOKENS_PER_EXAMPLE + sum(2 * p * t for p, t in ENCODER_PARAMS_TOKENS)
    chip_rate = TPU_V4_PEAK * MFU / flops
    print(json.dumps({
        "loader_examples_per_s_per_worker": round(statistics.median(rates), 1),
        "step_examples_per_s_runlocal": round(step_rate, 1),
        "step_examples_per_s_cambrian8b_per_chip_est": round(chip_rate, 2),
        "loader_workers_needed_per_chip_cambrian8b": round(chip_rate / statistics.median(rates), 3),
        "packing_efficiency_2048": round(pack_eff, 3),
    }))


if __name__ == "__main__":
    main()
