"""Short free-form answers (RealWorldQA's non-letter answers, POPE's yes/no), as each harness
reads them: Cambrian takes the first whitespace token of the answer (an empty output crashes it),
lmms-eval compares the whole stripped answer, VLMEvalKit scores it as GQA.
"""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.eval.metrics import gqa_exact
from cambrian.eval.metrics.choice_extract import cambrian_first_token, lmms_eval_mcq
from cambrian.eval.metrics.registry import HarnessError, labels

VARIANT_REQUIRED = True


def _need(references: Sequence[str]) -> None:
    if not references:
        raise HarnessError("a short answer needs a reference answer")


def _first_token(prediction: str, what: str) -> str:
    tokens = prediction.strip().lower().split()
    if not tokens:
        raise HarnessError(f"Cambrian's {what} takes split()[0] of an empty answer (IndexError)")
    return tokens[0]


def cambrian_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/realworldqa/realworldqa_test.py:extract_single_answer:
    keyword tail, rstrip ".", first whitespace token."""
    _need(references)
    return 1.0 if cambrian_first_token(prediction.strip()) == references[0].lower() else 0.0


def cambrian_pope(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/pope/pope_test.py:compute_metrics."""
    _need(references)
    token = _first_token(prediction, "pope_test").rstrip(".:,")
    return 1.0 if token == references[0].lower() else 0.0


def lmms_eval_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/realworldqa/utils.py:realworldqa_process_results:
    a gold that is a letter A-D (either case) is read with the shared letter extractor."""
    _need(references)
    gold = references[0].strip()
    if gold.upper() in ("A", "B", "C", "D"):
        return 1.0 if lmms_eval_mcq(prediction.strip(), "ABCD") == gold.upper() else 0.0
    pred = prediction.strip().lower().strip().rstrip(".")
    return 1.0 if pred == gold.lower() else 0.0


def vlmevalkit_realworldqa(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/vqa_eval.py:process_line(method='accuracy'),
    as for GQA."""
    return gqa_exact.vlmevalkit(prediction, references)


def fixed_short(prediction: str, references: Sequence[str], **_) -> float:
    """Corrects
    cambrian-mllm/cambrian@539ffc3:eval/eval/realworldqa/realworldqa_test.py:extract_single_answer
    and eval/eval/pope/pope_test.py:compute_metrics: first token without brackets / trailing
    punctuation; an empty output is wrong instead of a crash."""
    _need(references)
    tokens = prediction.strip().lower().split()
    token = tokens[0].rstrip(".:,").lstrip("(").rstrip(")") if tokens else None
    return 1.0 if token == references[0].lower() else 0.0


SCORERS = {
    "cambrian": {"realworldqa": cambrian_realworldqa, "pope": cambrian_pope},
    "lmms-eval": {"realworldqa": lmms_eval_realworldqa},
    "vlmevalkit": {"realworldqa": vlmevalkit_realworldqa},
    "fixed": labels({("realworldqa", "pope"): fixed_short}),
}

