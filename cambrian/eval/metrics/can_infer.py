"""``can_infer``: MMBench-style rule matching of a generation to an option (letter, then text).

VLMEvalKit uses it for every multiple-choice set (open-compass/VLMEvalKit@e8e78f0:
vlmeval/utils/matching_util.py); lmms-eval's MMBench evaluator has its own older copy
(EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py). When it fails, both
would ask a GPT judge; VLMEvalKit with ``exact_matching`` answers 'Z'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cambrian.eval.metrics.registry import HarnessError

_API_FAILURE = "Failed to obtain answer via API"
_VLMEVALKIT_REJECTS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_VLMEVALKIT_PUNCT = ".()[],:;!*#{}"
# VLMEvalKit #1552 (verbose chain-of-thought answers): case-insensitive, A-D only, no word
# boundary after the letter ("The answer is Bicycle" reads B), no colon or bracket before it.
_VLMEVALKIT_ANSWER_IS = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")


def vlmevalkit_can_infer_option(answer: str, choices: Mapping[str, str]) -> str | None:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/utils/matching_util.py:can_infer_option (the
    quantifier check runs only with $VERBOSE set: skipped)."""
    if _API_FAILURE in answer:
        return None
    for reject in _VLMEVALKIT_REJECTS:
        if reject in answer:
            return "Z"
    mod = answer
    for c in _VLMEVALKIT_PUNCT:
        mod = mod.replace(c, " ")
    splits = [x.strip() for x in mod.split()]
    count = sum(1 for c in choices if c in splits)
    if count == 1:
        for ch in choices:
            # Only a letter among the last four tokens is taken as the choice.
            if ch in splits and splits.index(ch) > len(splits) - 5:
                return ch
    elif count == 0 and "Z" in splits:
        return "Z"
    match = _VLMEVALKIT_ANSWER_IS.search(answer)
    if match and match.group(1).upper() in choices:
        return match.group(1).upper()
    return None


def vlmevalkit_can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/utils/matching_util.py:can_infer_text."""
    answer = answer.lower()
    if len(answer) > 2 * sum(len(str(v)) for v in choices.values()):
        return None
    cands = [k for k, v in choices.items() if str(v).lower() in answer]
    return cands[0] if len(cands) == 1 else None


def vlmevalkit_can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/utils/matching_util.py:can_infer; None where it
    fails (a judge, or 'Z' under exact matching)."""
    answer = str(answer)
    return (vlmevalkit_can_infer_option(answer, choices)
            or vlmevalkit_can_infer_text(answer, choices))


_LMMS_EVAL_TUPS = (("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
            (":", ""), (":", ","), (":", "."), (":", ")"), (":", ")."))


def lmms_eval_can_infer_option(answer: str, letters: str = "ABCDE") -> str | None:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py:
    MMBench_Evaluator.can_infer_option (always checks A-E)."""
    if _API_FAILURE in answer:
        return None
    splits = [x.strip() for x in answer.split()]

    def count(pre: str = "", post: str = "") -> int:
        return sum(1 for c in letters if pre + c + post in splits)

    if count() == 1:
        for ch in letters:
            if "A" in splits and len(splits) > 3:
                break  # "A" may be an article; fall through to the punctuated forms
            if ch in splits:
                return ch
    for pre, post in _LMMS_EVAL_TUPS:
        if count(pre, post) == 1:
            for ch in letters:
                if pre + ch + post in splits:
                    return ch
    return None


def lmms_eval_can_infer_text(answer: str, choices: Mapping[str, str]) -> str | None:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py:
    MMBench_Evaluator.can_infer_text."""
    answer = answer.lower()
    for k in choices:
        if k not in "ABCD":
            raise HarnessError(f"lmms-eval can_infer_text asserts option keys in 'ABCD', got {k!r}")
    cands = [k for k, v in choices.items() if str(v).lower() in answer]
    return cands[0] if len(cands) == 1 else None


def lmms_eval_can_infer(answer: str, choices: Mapping[str, str]) -> str | None:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py:
    MMBench_Evaluator.can_infer (prefetch before the GPT judge)."""
    return lmms_eval_can_infer_option(answer) or lmms_eval_can_infer_text(answer, choices)
