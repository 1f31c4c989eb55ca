"""MMMU: the official answer parsers (used by lmms-eval) and the open-question scorers.

Open questions differ the most between harnesses: Cambrian compares the extracted answer exactly
or, for numbers, within 5 % *of the prediction* (its ``relaxed_accuracy(pred, gt)`` is called as
``(gt, pred)``); the lmms-eval snapshot scores every open question 0 (it passes the first parsed
candidate to ``eval_open`` as a string, lmms-eval #1436, fixed by #1471 after the snapshot);
VLMEvalKit rewrites the question after inference as A = the answer, B = "Other Answers"
(VLMEvalKit #1617).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cambrian.eval.metrics.can_infer import vlmevalkit_can_infer
from cambrian.eval.metrics.choice_extract import cambrian_single
from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import is_number, strip_each

TOLERANCE = 0.05


def parse_multi_choice(response: str, index2ans: Mapping[str, str]) -> str | None:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/_task_utils/mmmu_mcq_utils.py:
    parse_mmmu_multi_choice_response (official MMMU); None where it picks a random letter."""
    response = " " + strip_each(response, ",.!?;:'") + " "
    letters = list(index2ans)
    with_brackets, by_index = False, True
    cands = [c for c in letters if f"({c})" in response]
    if cands:
        with_brackets = True
    if not cands:
        cands = [c for c in letters if f"{c} " in response]
    if not cands:
        cands = [c for c in letters if f"{c}." in response]
    if not cands and len(response.split()) > 5:
        cands = [c for c, text in index2ans.items() if text.lower() in response.lower()]
        by_index = False
    if not cands:
        return None  # random.choice(all_choices) upstream
    if len(cands) == 1:
        return cands[0]
    if not by_index:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in cands]
    elif with_brackets:
        starts = [response.rfind(f"({c})") for c in cands]
    else:
        starts = [response.rfind(f" {c} ") for c in cands]
    return cands[starts.index(max(starts))]  # np.argmax: first maximum


def extract_numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def _check_is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_str(text: str) -> list[str | float]:
    text = text.strip()
    if _check_is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def parse_open_response(response: str) -> list[str | float]:
    """Official MMMU ``parse_open_response``: key sub-responses plus every number in them."""
    response = response.strip().strip(".").lower()
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    keys = []
    for index, resp in enumerate(subs):
        if index == len(subs) - 1:
            indicators.append("=")
        shortest = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    if not keys:
        keys = [response]
    preds: list[str] = list(keys)
    for key in keys:
        preds.extend(extract_numbers(key))
    out: list[str | float] = []
    for pred in preds:
        out.extend(normalize_str(pred))
    return list(dict.fromkeys(out))


def eval_open(gold: str | Sequence[str], parsed) -> bool:
    """Official MMMU ``eval_open``: a normalised gold string inside a parsed string, or equal
    numbers. ``parsed`` is iterated, so a string is read character by character."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    norm_answers: list[str | float] = []
    for answer in golds:
        norm_answers.extend(normalize_str(answer))
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(a, str) and a in pred for a in norm_answers):
                return True
        elif pred in norm_answers:
            return True
    return False


def _relative(value: float, base: float) -> bool:
    return abs(value - base) <= abs(base) * TOLERANCE


def cambrian_match(answer: str, gold: str, tolerance_of_gold: bool = False) -> bool:
    """Cambrian's MMMU / MathVista test: exact, else 5 % numeric tolerance (of the prediction)."""
    gold = gold.lower()
    if answer == gold:
        return True
    if is_number(gold) and is_number(answer):
        a, g = float(answer), float(gold)
        return _relative(a, g) if tolerance_of_gold else _relative(g, a)
    return False


def _need(references: Sequence[str]) -> None:
    if not references:
        raise HarnessError("MMMU open question needs a reference answer")


def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mmmu/mmmu_test.py:compute_metrics (open:
    extract_single_answer, then ``relaxed_accuracy(gt, pred)``)."""
    _need(references)
    answer = cambrian_single(prediction.strip())
    return 1.0 if any(cambrian_match(answer, g) for g in references) else 0.0


def lmms_eval_snapshot(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmmu/utils.py:mmmu_process_results +
    evaluate_mmmu: the first parsed candidate reaches eval_open as a string, which it reads
    character by character, so (for any non-empty gold) nothing matches."""
    _need(references)
    parsed = parse_open_response(prediction.strip())
    flattened = str(parsed[0]) if parsed else ""
    return 1.0 if eval_open(list(references), flattened) else 0.0


def lmms_eval_official(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmmu/utils.py:parse_open_response +
    eval_open with the candidate list (the official MMMU contract; not the snapshot's default)."""
    _need(references)
    return 1.0 if eval_open(list(references), parse_open_response(prediction.strip())) else 0.0


def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/multiple_choice.py:MMMU_preproc, then
    eval_vanilla (can_infer) without a judge."""
    # MMMU_preproc: the open question becomes A = the answer, B = "Other Answers" after inference.
    _need(references)
    choices = {"A": references[0], "B": "Other Answers"}
    return 1.0 if vlmevalkit_can_infer(prediction, choices) == "A" else 0.0


def fixed(prediction: str, references: Sequence[str], **_) -> float:
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/mmmu/mmmu_test.py:compute_metrics: the
    tolerance is taken relative to the gold answer."""
    _need(references)
    answer = cambrian_single(prediction.strip())
    return 1.0 if any(cambrian_match(answer, g, tolerance_of_gold=True) for g in references) \
        else 0.0


SCORERS = {
    "cambrian": labels({("mmmu (open)", "mmmu"): cambrian}),
    "lmms-eval": labels({("mmmu_val (snapshot)", "mmmu_val", "snapshot"): lmms_eval_snapshot,
                         ("mmmu_val (official MMMU contract)", "official"): lmms_eval_official}),
    "vlmevalkit": labels({("MMMU_DEV_VAL(exact_matching)", "mmmu"): vlmevalkit}),
    "fixed": labels({("mmmu (open)", "mmmu"): fixed}),
}
