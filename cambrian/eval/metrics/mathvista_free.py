"""MathVista free-form answers (multiple-choice items use ``mcq_letter``).

Cambrian compares the lower-cased output with the answer, or within 5 % of the prediction for
numbers. lmms-eval and VLMEvalKit send anything that is not directly a number to a GPT extractor;
only their rule-based part is reproduced here (None where the extractor would be called).
"""

from __future__ import annotations

from cambrian.eval.metrics.mmmu_open import cambrian_match
from cambrian.eval.metrics.text import is_number


def cambrian(prediction: str, answer: str, **_) -> float:
    return 1.0 if cambrian_match(prediction.strip().lower().strip(), str(answer)) else 0.0


def fixed(prediction: str, answer: str, **_) -> float:
    answer_text = prediction.strip().lower().rstrip(".")
    return 1.0 if cambrian_match(answer_text, str(answer), tolerance_of_gold=True) else 0.0


def _numeric_prefetch(prediction: str, answer: str, precision: int | None) -> float | None:
    pred = prediction.strip()
    if not (is_number(pred) and is_number(str(answer))):
        return None
    value, gold = float(pred), float(answer)
    if precision is not None:
        value, gold = round(value, precision), round(gold, precision)
    return 1.0 if value == gold else 0.0


def lmms_eval(prediction: str, answer: str, precision: int | None = None, **_) -> float | None:
    return _numeric_prefetch(prediction, answer, precision)


def vlmevalkit(prediction: str, answer: str, precision: int | None = None, **_) -> float | None:
    return _numeric_prefetch(prediction, answer, precision)


SCORERS = {
    "cambrian": {"mathvista": cambrian},
    "fixed": {"mathvista": fixed},
    "lmms-eval": {"mathvista": lmms_eval},
    "vlmevalkit": {"mathvista": vlmevalkit},
}
