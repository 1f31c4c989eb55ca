"""Eval-only: score a trained run's checkpoint on Cambrian-1's 16-benchmark suite.

    python launch/tpu.py --config eval/cambrian.py --config.checkpoint=runs/dinov2 \\
        --workdir runs/dinov2-eval
    python launch/tpu.py --config eval/cambrian.py:runlocal \\
        --config.checkpoint=runs/dinov2-local --workdir runs/dinov2-local-eval

The model (encoders, connector, LLM, tokenizer, template) is read from the run's saved
``config.json``; stages have zero steps, so nothing is trained. Args: runlocal -- the synthetic
suite; suite=NAME -- another suite (``cambrian``, ``extras`` or comma-separated benchmarks).
"""

from cambrian import config as C


def get_config(arg=None):
    a = C.parse_arg(arg, runlocal=False, suite="cambrian")
    c = C.base_config()
    c.eval.suite = "synthetic" if a.runlocal else a.suite
    c.eval.root = "" if a.runlocal else C.DATA + "/benchmarks"
    return c
