"""ChartQA relaxed accuracy: numbers within 5 % relative error, other answers exact.

lmms-eval and VLMEvalKit use pix2struct's ``relaxed_correctness`` (a trailing "%" divides by 100;
a gold value of 0 falls back to string comparison). Cambrian's test script has no "%" handling and
compares any two ``float()``-parsable strings numerically, gold 0 included.
"""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import is_number

MAX_RELATIVE_CHANGE = 0.05


def _pix2struct_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def pix2struct_relaxed(target: str, prediction: str) -> bool:
    pred, gold = _pix2struct_float(prediction), _pix2struct_float(target)
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= MAX_RELATIVE_CHANGE
    return prediction.lower() == target.lower()


def cambrian_relaxed(target: str, prediction: str) -> bool:
    pred, gold = prediction.lower(), target.lower()
    if is_number(gold) and is_number(pred):
        return abs(float(pred) - float(gold)) <= abs(float(gold)) * MAX_RELATIVE_CHANGE
    return pred == gold


def _best(match, prediction: str, references: Sequence[str]) -> float:
    if not references:
        raise HarnessError("relaxed accuracy needs a reference answer")
    return max(1.0 if match(str(r), prediction) else 0.0 for r in references)


def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/chartqa/chartqa_test.py:compute_metrics."""
    return _best(cambrian_relaxed, prediction.strip(), references)


def lmms_eval(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/chartqa/utils.py:chartqa_process_results
    (relaxed_correctness)."""
    return _best(pix2struct_relaxed, prediction.strip(), references)


def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/vqa_eval.py:process_line(method='relaxed_accuracy')
    + hit_calculate (the prediction stripped there)."""
    return _best(pix2struct_relaxed, prediction.strip(), references)


def fixed(prediction: str, references: Sequence[str], **_) -> float:
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/chartqa/chartqa_test.py:compute_metrics
    with the published (pix2struct) definition, which ChartQA's authors use: "%" read, gold 0
    exact."""
    return _best(pix2struct_relaxed, prediction.strip(), references)


SCORERS = {
    "cambrian": {"chartqa": cambrian},
    "lmms-eval": {"chartqa": lmms_eval},
    "vlmevalkit": labels({("ChartQA_TEST", "chartqa"): vlmevalkit}),
    "fixed": {"chartqa": fixed},
}
