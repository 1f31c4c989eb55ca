"""MathVista free-form answers (multiple-choice items use ``mcq_letter``).

Cambrian compares the lower-cased output with the answer, or within 5 % of the prediction for
numbers. lmms-eval and VLMEvalKit send an answer their rules cannot read to a GPT extractor; only
their rule-based part is reproduced here (None where the extractor would be called). Fields:
``answer`` (the gold string), ``answer_type`` ("integer", "float", "text", "list"; None for
predictions saved without it: rule-based part skipped) and ``precision`` (as the dataset stores it).
"""

from __future__ import annotations

from cambrian.eval.metrics.mmmu_open import cambrian_match


def cambrian(prediction: str, answer: str, **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mathvista/mathvista_test.py:compute_metrics
    (free_form)."""
    return 1.0 if cambrian_match(prediction.strip().lower().strip(), str(answer)) else 0.0


def fixed(prediction: str, answer: str, **_) -> float:
    """Corrects
    cambrian-mllm/cambrian@539ffc3:eval/eval/mathvista/mathvista_test.py:compute_metrics: the 5 %
    tolerance is taken relative to the gold answer, and a trailing "." is dropped."""
    answer_text = prediction.strip().lower().rstrip(".")
    return 1.0 if cambrian_match(answer_text, str(answer), tolerance_of_gold=True) else 0.0


def _normalised(extraction: str, answer_type: str, precision) -> str | None:
    """lmms-eval ``normalize_extracted_answer`` for free-form answers (None where it fails)."""
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            # round() with the dataset's float precision (2.0) raises, lmms-eval catches it;
            # a None precision rounds to an int.
            return str(round(float(extraction), precision))
    except (TypeError, ValueError):
        return None
    return extraction


def lmms_eval(prediction: str, answer: str, answer_type: str | None = None, precision=0,
              **_) -> float | None:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mathvista/utils.py:mathvista_process_results
    with MathVistaEvaluator.extract_answer / normalize_extracted_answer / safe_equal
    (tasks/mathvista/mathvista_evals.py): an empty output, an integer answer that ``int()`` reads, a
    float answer that ``float()`` reads; anything else goes to the GPT extractor."""
    pred = prediction.strip()
    if answer_type is None:
        return None
    if not pred:
        extraction = ""
    elif answer_type == "integer" and _parses(int, pred):
        extraction = str(int(pred))
    elif answer_type == "float" and _parses(float, pred):
        extraction = str(float(pred))
    else:
        return None
    got = _normalised(extraction, answer_type, precision)
    return 1.0 if str(got).strip() == str(answer).strip() else 0.0


def _parses(kind, text: str) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True


def vlmevalkit(prediction: str, answer: str, answer_type: str | None = None,
               **_) -> float | None:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/mathvista.py:post_check(prefetch=True):
    the prefetch succeeds only when ``int()`` / ``float()`` of the raw output equals the answer (for
    text and list answers only when the answer is the string "None"); every other output goes to the
    GPT extractor (None)."""
    try:
        if answer_type == "integer":
            hit = int(prediction) == int(answer)
        elif answer_type == "float":
            hit = float(prediction) == float(answer)
        else:
            hit = answer_type is not None and str(answer) == "None"
    except ValueError:
        hit = False
    return 1.0 if hit else None


SCORERS = {
    "cambrian": {"mathvista": cambrian},
    "fixed": {"mathvista": fixed},
    "lmms-eval": {"mathvista": lmms_eval},
    "vlmevalkit": {"mathvista": vlmevalkit},
}
