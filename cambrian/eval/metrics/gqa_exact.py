"""GQA exact match, with each harness's normalisation.

Cambrian: lower-case, drop trailing "."; lmms-eval: HF ``exact_match`` with ignore_case and
ignore_punctuation (ASCII ``string.punctuation`` deleted on both sides); VLMEvalKit: strip + lower
only, so "Yes." is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import hf_exact_match


def _need(references: Sequence[str]) -> None:
    if not references:
        raise HarnessError("exact match needs a reference answer")


def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/gqa/gqa_test.py:compute_metrics."""
    _need(references)
    pred = prediction.strip().lower().rstrip(".")
    return max(1.0 if pred == r.lower() else 0.0 for r in references)


def lmms_eval(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:exact_match_hf_evaluate
    (ignore_case, ignore_punctuation; tasks/gqa/gqa.yaml)."""
    _need(references)
    pred = prediction.strip()
    return max(1.0 if hf_exact_match(pred, r) else 0.0 for r in references)


def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/vqa_eval.py:process_line(method='accuracy')
    + hit_calculate."""
    _need(references)
    pred = prediction.strip().lower()
    # hit_calculate averages the per-reference matches for GQA.
    return sum(1.0 if r.strip().lower() == pred else 0.0 for r in references) / len(references)


def fixed(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/gqa/gqa_test.py:compute_metrics unchanged (no
    documented defect)."""
    return cambrian(prediction, references)


SCORERS = {
    "cambrian": {"gqa": cambrian},
    "lmms-eval": {"gqa": lmms_eval},
    "vlmevalkit": labels({("GQA_TestDev_Balanced", "gqa"): vlmevalkit}),
    "fixed": {"gqa": fixed},
}

