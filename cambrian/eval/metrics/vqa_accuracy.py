"""VQA accuracy (TextVQA): min(1, #matching other annotators / 3), averaged leave-one-out by index.

With m of the 10 answers matching: 0, 0.3, 0.6, 0.9, then 1.0 for m >= 4.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import evalai_answer, lmms_eval_until, vlmevalkit_answer


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """Leave-one-out by *index*: annotator i is compared with the other nine answers."""
    if not answers:
        raise HarnessError("VQA accuracy needs at least one reference answer")
    accs = []
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == pred)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def _scored(norm: Callable[[str], str], pred: str, references: Sequence[str]) -> float:
    return vqa_accuracy(norm(pred), [norm(r) for r in references])


def cambrian(prediction: str, references: Sequence[str], **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/textvqa/textvqa_test.py:compute_metrics
    (m4c_evaluator.py:TextVQAAccuracyEvaluator, EvalAIAnswerProcessor)."""
    # m4c TextVQAAccuracyEvaluator asserts exactly 10 human answers per question.
    if len(references) != 10:
        raise HarnessError(f"m4c evaluator asserts 10 answers, got {len(references)}")
    return _scored(evalai_answer, prediction.strip().lower(), [r.lower() for r in references])


def lmms_eval(prediction: str, references: Sequence[str], **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/textvqa/utils.py:textvqa_process_results
    (tasks/_task_utils/vqa_eval_metric.py:EvalAIAnswerProcessor), after its "ASSISTANT:"
    stop string (tasks/textvqa/_default_template_textvqa_yaml)."""
    return _scored(evalai_answer, lmms_eval_until(prediction).strip(), references)


def vlmevalkit(prediction: str, references: Sequence[str], **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/vqa_eval.py:process_line(method='vqa_score')
    + hit_calculate."""
    # No strip upstream and no comma / "'s" pre-pass; a period after a digit is kept ("5." != "5").
    return _scored(vlmevalkit_answer, prediction, references)


def fixed(prediction: str, references: Sequence[str], **_) -> float:
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/textvqa/textvqa_test.py:compute_metrics:
    the same processor without the 10-answer assertion."""
    return _scored(evalai_answer, prediction.strip(), references)


SCORERS = {
    "cambrian": {"textvqa": cambrian},
    "lmms-eval": labels({("textvqa_val", "textvqa"): lmms_eval}),
    "vlmevalkit": labels({("TextVQA_VAL", "textvqa"): vlmevalkit}),
    "fixed": {"textvqa": fixed},
}
