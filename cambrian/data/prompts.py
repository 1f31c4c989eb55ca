"""Answer-format prompts added to the questions of short-answer sources (Cambrian-1 §5.3).

A model tuned on VQA-heavy data answers everything in one word ("answer machine"). Cambrian-1 fixes
this by appending a format instruction to the questions of short-answer datasets, so the model
learns when a short answer is wanted. A recipe source lists ``PromptRule``s; ``apply`` appends the
matching rules' texts (joined by a space, after a newline) to the human turns.

The texts below follow the paper's list; the numbering matches it (there is no prompt 5).
"""

from __future__ import annotations

import dataclasses
import re

SHORT_ANSWER = "Answer the question using a single word or phrase."  # 1
SHORT_NUMBER = "Answer the question using a single number or phrase."  # 2
OPTION_LETTER = "Answer with the option's letter from the given choices directly."  # 3
SHORT_DIRECT = "Give the short answer directly."  # 4
NO_ANSWER = "When the provided information is insufficient, respond with <no answer>."  # 6
HTML_CODE = "Directly provide the HTML code."  # 7
REASONING = "First show your reasoning process and then give the final answer."  # 8
UNANSWERABLE = ("When the provided information is insufficient, respond with 'Unanswerable'. "
                "Answer the question using a single word or phrase.")  # 9 (VizWiz)
LETTER = "Answer with the letter."  # 10

WHEN = ("always", "multiple_choice", "open")
TURNS = ("all", "first")

# Two or more option markers such as "A. ...", "(B) ...", "C) ..." make a question multiple-choice.
_OPTION = re.compile(r"(?:^|\n)\s*\(?([A-H])[.):]\s+\S|\(([A-H])\)\s*\S")


@dataclasses.dataclass(frozen=True)
class PromptRule:
    """Append ``text`` to human turns: ``when`` picks questions by kind, ``turns`` which turns."""

    text: str
    when: str = "always"
    turns: str = "all"

    def __post_init__(self):
        if self.when not in WHEN:
            raise ValueError(f"PromptRule.when must be one of {WHEN}, got {self.when!r}")
        if self.turns not in TURNS:
            raise ValueError(f"PromptRule.turns must be one of {TURNS}, got {self.turns!r}")
        if not self.text.strip():
            raise ValueError("PromptRule.text is empty")


def is_multiple_choice(question: str) -> bool:
    """True when the question lists at least two lettered options."""
    letters = {a or b for a, b in _OPTION.findall(question)}
    return len(letters) >= 2


def apply(conversations: list[dict], rules: tuple[PromptRule, ...]) -> tuple[list[dict], bool]:
    """Returns (conversations with prompts added, whether anything was added).

    A rule whose text the turn already contains is not added again, so files that ship with
    prompts (LLaVA-665K's VQA parts) are left as they are.
    """
    if not rules:
        return conversations, False
    out, changed, first = [], False, True
    for turn in conversations:
        if turn["from"] != "human":
            out.append(turn)
            continue
        value = turn["value"]
        mc = is_multiple_choice(value)
        texts = [r.text for r in rules
                 if (r.turns == "all" or first)
                 and (r.when == "always" or (r.when == "multiple_choice") == mc)
                 and r.text not in value]
        first = False
        if texts:
            value = value.rstrip() + "\n" + " ".join(texts)
            changed = True
        out.append({**turn, "value": value})
    return out, changed
