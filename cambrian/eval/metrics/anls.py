"""ANLS (DocVQA): 1 - normalised Levenshtein distance to the closest reference, 0 below 0.5.

Both reference harnesses normalise the strings (strip, lower, collapse whitespace) for the
distance but divide by the *raw* lengths (of ``s.upper()``, which "ß" lengthens). lmms-eval strips
the generation upstream, VLMEvalKit does not, so padded outputs score differently. Cambrian has no
local DocVQA scorer (test-server submission); its profile uses the lmms-eval definition.
"""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import levenshtein

THRESHOLD = 0.5


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str, references: Sequence[str], raw_lengths: bool = True) -> float:
    if not references:
        raise HarnessError("ANLS needs at least one reference answer")
    det = _norm(prediction)
    dists = []
    for gt in references:
        ref = _norm(gt)
        if raw_lengths:
            length = max(len(gt.upper()), len(prediction.upper()))
        else:
            length = max(len(ref), len(det))
        dists.append(0.0 if length == 0 else levenshtein(ref, det) / length)
    value = 1.0 - min(dists)
    return 0.0 if value < THRESHOLD else value


def lmms_eval(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:anls (the generation stripped by
    api/task.py:ConfigurableTask.process_results)."""
    return anls(prediction.strip(), references)


def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/vqa_eval.py:process_line(method='anls')
    + hit_calculate (no strip)."""
    return anls(prediction, references)


def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/docvqa/docvqa_test.py:compute_metrics only writes a
    test-server submission (ANLS is computed by the server); the local number is
    EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:anls on the stripped output."""
    return anls(prediction.strip(), references)


def fixed(prediction: str, references: Sequence[str], **_) -> float:
    """Corrects the ANLS that stands in for cambrian-mllm/cambrian@539ffc3:eval/eval/docvqa/
    docvqa_test.py:compute_metrics (EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:
    anls): the denominator is taken from the normalised strings that are compared."""
    return anls(prediction, references, raw_lengths=False)


SCORERS = {
    "lmms-eval": labels({("docvqa_val", "docvqa"): lmms_eval}),
    "vlmevalkit": labels({("DocVQA_VAL", "docvqa"): vlmevalkit}),
    "cambrian": {"docvqa": cambrian},
    "fixed": {"docvqa": fixed},
}
