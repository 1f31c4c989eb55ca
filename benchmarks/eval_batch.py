"""Eval throughput and batch invariance: the runlocal synthetic suite at bs=1 and bs=16.

    python benchmarks/eval_batch.py [--checkpoint RUN_DIR] [--limit 60] [--repeats 3]

Runs the suite with the model of ``encoders/dinov2.py:runlocal`` (random weights, or a trained
run's checkpoint), once per batch size and repeat, in fresh prediction folders, after one
untimed warm-up run per batch size that compiles every length bucket (the runner keeps its
compiled decoders between runs). Checks that every run, warm-ups included, writes byte-identical
prediction files. Last line: one JSON object with ``speedup_bs16_vs_bs1`` (median wall time
ratio), ``identical``, the medians and the raw times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="", help="a runlocal run's workdir (default: random)")
    ap.add_argument("--limit", type=int, default=60, help="samples per benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import jax

    from cambrian import config as C
    from cambrian import train
    from cambrian.data import tokenizer
    from cambrian.eval import runner

    cfg = C.load("encoders/dinov2.py:runlocal")
    cfg.eval.limit = args.limit
    tok = tokenizer.load(cfg.model.tokenizer)
    model = train.build_model(cfg, tok)
    if args.checkpoint:
        from flax import nnx

        params = train._init_from(args.checkpoint, nnx.state(model, nnx.Param))
        nnx.update(model, params)
    times: dict[int, list[float]] = {1: [], 16: []}
    outputs: list[dict] = []

    def files(wd: str) -> dict:
        pred = os.path.join(wd, "predictions")
        return {f: open(os.path.join(pred, f)).read() for f in sorted(os.listdir(pred))}

    with tempfile.TemporaryDirectory() as tmp:
        for bs in (1, 16):  # warm-up: compile every bucket once
            cfg.eval.batch_size = bs
            runner.evaluate(model, cfg, tok, os.path.join(tmp, f"warm{bs}"))
            outputs.append(files(os.path.join(tmp, f"warm{bs}")))
        for r in range(args.repeats):
            for bs in (1, 16):
                cfg.eval.batch_size = bs
                wd = os.path.join(tmp, f"bs{bs}_{r}")
                t0 = time.perf_counter()
                runner.evaluate(model, cfg, tok, wd)
                times[bs].append(time.perf_counter() - t0)
                outputs.append(files(wd))
    med = {bs: statistics.median(t) for bs, t in times.items()}
    preds = [json.loads(x)["prediction"] for text in outputs[0].values() for x in text.splitlines()]
    print(json.dumps({"speedup_bs16_vs_bs1": round(med[1] / med[16], 2),
                      "identical": all(o == outputs[0] for o in outputs), "samples": len(preds),
                      "distinct_predictions": len(set(preds)),
                      "seconds_bs1": round(med[1], 2), "seconds_bs16": round(med[16], 2),
                      "times_bs1": [round(t, 2) for t in times[1]],
                      "times_bs16": [round(t, 2) for t in times[16]],
                      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}))

if __name__ == "__main__":
    main()
