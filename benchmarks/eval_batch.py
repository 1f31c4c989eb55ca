"""Eval throughput and batch invariance: the runlocal synthetic suite at bs=1 and bs=16.

    python benchmarks/eval_batch.py [--checkpoint RUN_DIR] [--limit 60] [--repeats 3]

Runs the suite with the model of ``encoders/dinov2.py:runlocal`` (random weights, or a trained
run's checkpoint), once per batch size and repeat, in fresh prediction folders; checks that every
prediction is identical across batch sizes. Last line: one JSON object with
``speedup_bs16_vs_bs1`` (median wall time ratio), ``identical`` and the raw times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="", help="a runlocal run's workdir (default: random)")
    ap.add_argument("--limit", type=int, default=60, help="samples per benchmark")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

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
    preds: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bs in (1, 16):  # warm-up: compile every bucket once
            cfg.eval.batch_size = bs
            runner.evaluate(model, cfg, tok, os.path.join(tmp, f"warm{bs}"))
        for r in range(args.repeats):
            for bs in (1, 16):
                cfg.eval.batch_size = bs
                wd = os.path.join(tmp, f"bs{bs}_{r}")
                t0 = time.perf_counter()
                runner.evaluate(model, cfg, tok, wd)
                times[bs].append(time.perf_counter() - t0)
                got = {}
                for f in sorted(os.listdir(os.path.join(wd, "predictions"))):
                    for line in open(os.path.join(wd, "predictions", f)):
                        rec = json.loads(line)
                        got[(f, rec["id"])] = rec["prediction"]
                preds[bs] = got
    med = {bs: statistics.median(t) for bs, t in times.items()}
    print(json.dumps({"speedup_bs16_vs_bs1": round(med[1] / med[16], 2),
                      "identical": preds[1] == preds[16], "samples": len(preds[1]),
                      "seconds_bs1": round(med[1], 2), "seconds_bs16": round(med[16], 2)}))


if __name__ == "__main__":
    main()
