"""Benchmark scorers, reproducing how each reference harness scores a raw generation.

    from cambrian.eval import metrics
    fn = metrics.scorer("mcq_letter", harness="lmms-eval", variant="seedbench")
    fn(prediction="B.", choices={"A": "red", "B": "green"}, answer="B")   # -> 1.0

``harness`` is one of ``HARNESSES``: "cambrian" (Cambrian-1's eval scripts, the default),
"lmms-eval", "vlmevalkit", or "fixed" (Cambrian's rules with the documented defects corrected),
each pinned to one commit of its harness (``PINS``: cambrian-mllm/cambrian@539ffc3,
EvolvingLMMs-Lab/lmms-eval@75571cf, open-compass/VLMEvalKit@e8e78f0).
The "fixed" profile changes only documented defects (scoring.md §5): MMMU / MathVista numeric
tolerance taken relative to the gold answer; MathVista multiple-choice answers read with the letter
extractor; RealWorldQA / MMStar / POPE first-token readers strip brackets and score an empty output
as wrong instead of crashing; MME pairs formed by image, MMVP pairs by position, not by a running
parity counter; TextVQA without the 10-answer assertion; ChartQA with pix2struct's published rule;
ANLS divided by the lengths of the strings actually compared.

A scorer returns a float in [0, 1] (``mme_pair``: a 0-200 category score), ``None`` where the
harness would defer to an LLM judge or a random fallback, and raises ``HarnessError`` where the
harness itself crashes. Each scorer is the module of its name (``registry.py``): vqa_accuracy,
anls, chartqa_relaxed, gqa_exact, ocrbench, mcq_letter, mme_pair, mmvp_pair, mmmu_open; used by
the benchmark modules only: short_answer, mathvista_free. Functions are named after the harness
they reproduce (``cambrian_…``, ``lmms_eval_…``, ``vlmevalkit_…``, ``fixed_…``).
"""

from __future__ import annotations

from cambrian.eval.metrics.registry import (
    HARNESSES,
    PINS,
    HarnessError,
    Scorer,
    ScorerNotFound,
    available,
    harness_name,
)
from cambrian.eval.metrics.registry import resolve as scorer

__all__ = ["HARNESSES", "PINS", "HarnessError", "Scorer", "ScorerNotFound", "available",
           "harness_name", "scorer"]
