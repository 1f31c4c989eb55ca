"""Letter extractors: the rule each harness uses to read an option letter from a generation.

Each function reproduces one harness function; the docstring names it. They return the extracted
text (lower-case for Cambrian's, upper-case letters for lmms-eval's), or "" / None when nothing is
found, exactly as the original does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cambrian.eval.metrics.registry import HarnessError
from cambrian.eval.metrics.text import strip_each

_CAMBRIAN_KEYWORDS = ("answer is", "answer is:", "answer:")


def cambrian_keyword_tail(text: str) -> str:
    """Cambrian: lower, strip, keep what follows the last "answer is" / "answer:", strip."""
    text = text.lower().strip()
    for keyword in _CAMBRIAN_KEYWORDS:
        if keyword in text:
            text = text.split(keyword)[-1]
    return text.strip()


def cambrian_mcq(text: str, rstrip: str = ".", truncate: bool = True) -> str:
    """Cambrian ``extract_mcq_answer``: any answer *starting* with the letter counts."""
    text = cambrian_keyword_tail(text).rstrip(rstrip).lstrip("(").rstrip(")")
    if truncate and len(text) > 1:
        text = text[0]
    return text


def cambrian_single(text: str) -> str:
    """Cambrian ``extract_single_answer`` / ScienceQA ``extract_answer`` (rstrip ".")."""
    return cambrian_keyword_tail(text).rstrip(".")


def cambrian_first_token(text: str) -> str:
    """Cambrian RealWorldQA: ``extract_single_answer(...).split()[0]``; raises on empty output."""
    tokens = cambrian_single(text).split()
    if not tokens:
        raise HarnessError("Cambrian's realworldqa_test takes split()[0] of an empty answer "
                           "(IndexError)")
    return tokens[0]


# lmms-eval tasks/_task_utils/mcq_extract.py (format-priority version).
LMMS_EVAL_DEFAULT_CHOICES = tuple("ABCDEFGH")
_LMMS_EVAL_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is",
    "the best answer is", "best answer is", "the correct option is", "correct option is",
    "the best option is", "best option is", "the choice is", "choice is",
    "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is",
    "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
_LMMS_EVAL_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5,
                       "colon": 4, "right_paren": 3, "space": 2, "fallback": 0}


def lmms_eval_mcq(response: str, choices: Sequence[str] | None = None) -> str:
    """lmms-eval ``extract_mcq_answer``: best (format priority, then last position) candidate.

    Only upper-case letters are candidates, so "b" alone is not read.
    """
    if not response or not response.strip():
        return ""
    letters = list(choices or LMMS_EVAL_DEFAULT_CHOICES)
    text = " " + strip_each(response.strip(), ",.!?;:'\"") + " "
    cands: list[tuple[str, int, str]] = []
    for fmt, (pre, post) in (("parentheses", ("(", ")")), ("period", ("", ".")),
                             ("colon", ("", ":")), ("right_paren", ("", ")")),
                             ("space", ("", " "))):
        for ch in letters:
            if pre + ch + post in text:
                cands.append((ch, text.rfind(pre + ch + post), fmt))
    lower = text.lower()
    for phrase in _LMMS_EVAL_PHRASES:
        idx = lower.find(phrase)
        if idx != -1:
            for ch in letters:
                pos = text.find(ch, idx + len(phrase))
                if pos != -1:
                    cands.append((ch, pos, "phrase"))
    stripped = text.strip()
    for ch in letters:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            cands.append((ch, 0, "start"))
    for ch in letters:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            cands.append((ch, len(text) - 1, "end"))
    if not cands:
        cands = [(ch, text.rfind(ch), "fallback") for ch in letters if ch in text]
    if not cands:
        return ""
    cands.sort(key=lambda c: (_LMMS_EVAL_PRIORITY[c[2]], c[1]), reverse=True)
    return cands[0][0]


def lmms_eval_seed(pred: str) -> str:
    """lmms-eval SEED-Bench: the first character of the stripped output."""
    return pred.strip()[:1]


def lmms_eval_ai2d_filter(pred: str) -> str:
    """lmms-eval AI2D ``MultiChoiceRegexFilter``: "X." at the start, else the raw text."""
    match = re.match(r"^\s*([A-Z])\.", pred)
    return match.group(1) if match else pred


def lmms_eval_cv_bench(text: str) -> str:
    """lmms-eval CV-Bench ``_extract_answer_letter``: a letter at the very start ("The" -> T)."""
    match = re.match(r"[\(\s]*([A-Z])[\)\.\s]*", text.strip(), flags=re.IGNORECASE)
    return match.group(1).upper() if match else ""


_LMMS_EVAL_VSTAR_PATTERNS = (
    r"^([A-D])\s*[\.)\]]*",
    r"(?:THE\s+)?(?:ANSWER|CHOICE|OPTION)(?:\s+IS)?[\s:]+([A-D])",
    r"\(([A-D])\)",
    r"([A-D])\s*(?:\.|\)|])",
    r"(?:^|\s)([A-D])(?:\s|$)",
)


def lmms_eval_vstar(response: str) -> str | None:
    """lmms-eval V*Bench ``extract_answer_letter`` (upper-cases first, so "Bicycle" -> B)."""
    response = response.strip().upper()
    for pattern in _LMMS_EVAL_VSTAR_PATTERNS:
        match = re.search(pattern, response, re.IGNORECASE)
        if match:
            return match.group(1).upper()
    letters = re.findall(r"[A-D]", response)
    if len(letters) == 1:
        return letters[0]
    if response and response[0] in "ABCD":
        return response[0]
    return None


_LMMS_EVAL_MMVP_PATTERNS = (
    r"^\s*\(?([AB])\)?\.?\s*$",
    r"^\s*\(?([AB])\)?[\.\s]",
    r"answer\s+is\s+\(?([AB])\)?",
    r"option\s+\(?([AB])\)?",
    r"\(?([AB])\)?(?:\s|$)",
)


def lmms_eval_mmvp(text: str) -> str:
    """lmms-eval MMVP ``_extract_answer_letter``: A/B only, case-insensitive regex cascade."""
    text = text.strip()
    for pattern in _LMMS_EVAL_MMVP_PATTERNS:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return match.group(1).upper()
    if text and text[0].upper() in ("A", "B"):
        return text[0].upper()
    return ""
