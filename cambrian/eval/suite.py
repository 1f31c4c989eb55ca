"""Benchmark suites: which benchmarks a run evaluates, and their groups.

A benchmark is a module of ``cambrian/eval/benchmarks/`` (or an object with the same attributes):
``NAME``, ``GROUP``, ``MAX_NEW_TOKENS``, ``load(root, limit=None)``, ``score(records, profile)``.
"""

from __future__ import annotations

import importlib

from cambrian.eval.benchmarks import synthetic

SUITES: dict[str, tuple[str, ...]] = {
    "synthetic": tuple(synthetic.BENCHMARKS),
    "cambrian": ("mme", "mmbench", "seed", "gqa", "scienceqa", "mmmu", "mathvista", "ai2d",
                 "chartqa", "ocrbench", "textvqa", "docvqa", "mmvp", "realworldqa", "cvbench"),
    "extras": ("vstar", "pope", "mmstar", "blink"),
}


def benchmark(name: str):
    if name in synthetic.BENCHMARKS:
        return synthetic.BENCHMARKS[name]
    try:
        return importlib.import_module(f"cambrian.eval.benchmarks.{name}")
    except ModuleNotFoundError as e:
        raise ValueError(f"unknown benchmark {name!r}") from e


def get(name: str) -> list:
    """Suite name, or comma-separated benchmark names -> benchmark modules."""
    names = SUITES.get(name) or tuple(n for n in name.split(",") if n)
    if not names:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return [benchmark(n) for n in names]
