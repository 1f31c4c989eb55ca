"""GQA exact match, with each harness's normalisation.

Cambrian: lower-case, drop trailing "."; lmms-eval: HF ``exact_match`` with ignore_case and
ignore_punctuation (ASCII ``string.punctuation`` deleted on both sides); VLMEvalKit: strip + lower
only, so "Yes." is wrong.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from cambrian.eval.metrics.choice_extract import cb_first_token
from cambrian.eval.metrics.registry import HarnessError, register

_NO_PUNCT = str.maketrans("", "", string.punctuation)


def hf_exact_match(prediction: str, reference: str, ignore_case: bool = True,
                   ignore_punctuation: bool = True) -> bool:
    """HF ``evaluate`` exact_match as lmms-eval calls it (no regexes, numbers kept)."""
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = prediction.translate(_NO_PUNCT), reference.translate(_NO_PUNCT)
    return prediction == reference


def _need(references: Sequence[str]) -> None:
    if not references:
        raise HarnessError("exact match needs a reference answer")


@register("gqa_exact", "cambrian", "gqa", default=True)
def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    _need(references)
    pred = prediction.strip().lower().rstrip(".")
    return max(1.0 if pred == r.lower() else 0.0 for r in references)


@register("gqa_exact", "lmms-eval", "gqa", default=True)
def lmms_eval(prediction: str, references: Sequence[str], **_) -> float:
    _need(references)
    pred = prediction.strip()
    return max(1.0 if hf_exact_match(pred, r) else 0.0 for r in references)


@register("gqa_exact", "vlmevalkit", "GQA_TestDev_Balanced", "gqa", default=True)
def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    _need(references)
    pred = prediction.strip().lower()
    # hit_calculate averages the per-reference matches for GQA.
    return sum(1.0 if r.strip().lower() == pred else 0.0 for r in references) / len(references)


@register("gqa_exact", "fixed", "gqa", default=True)
def fixed(prediction: str, references: Sequence[str], **_) -> float:
    return cambrian(prediction, references)


# ---- short free-form answers (RealWorldQA non-letter answers, POPE yes/no) ----

def _first_token(prediction: str, what: str) -> str:
    tokens = prediction.strip().lower().split()
    if not tokens:
        raise HarnessError(f"Cambrian's {what} takes split()[0] of an empty answer (IndexError)")
    return tokens[0]


@register("short_answer", "cambrian", "realworldqa")
def cambrian_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    """``extract_single_answer``: keyword tail, rstrip ".", first whitespace token."""
    _need(references)
    return 1.0 if cb_first_token(prediction.strip()) == references[0].lower() else 0.0


@register("short_answer", "cambrian", "pope")
def cambrian_pope(prediction: str, references: Sequence[str], **_) -> float:
    _need(references)
    token = _first_token(prediction, "pope_test").rstrip(".:,")
    return 1.0 if token == references[0].lower() else 0.0


@register("short_answer", "lmms-eval", "realworldqa")
def lmms_eval_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    _need(references)
    pred = prediction.strip().lower().strip().rstrip(".")
    return 1.0 if pred == references[0].lower().strip() else 0.0


@register("short_answer", "vlmevalkit", "realworldqa")
def vlmevalkit_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    return vlmevalkit(prediction, references)


@register("short_answer", "fixed", "realworldqa", "pope")
def fixed_short(prediction: str, references: Sequence[str], **_) -> float:
    """First token without brackets / trailing punctuation; an empty output is wrong."""
    _need(references)
    tokens = prediction.strip().lower().split()
    token = tokens[0].rstrip(".:,").lstrip("(").rstrip(")") if tokens else None
    return 1.0 if token == references[0].lower() else 0.0
