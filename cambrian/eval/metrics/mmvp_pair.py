"""MMVP pair accuracy: a pair of questions (consecutive items) counts only if both are right.

Fields: ``predictions`` and ``references`` (gold letters "A"/"B" or "(a)"/"(b)") in file order,
``options`` = the two option texts (shared), one [a, b] list per question, or the raw
"(a) x (b) y" string. Cambrian pairs by the parity of the line index with a running counter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cambrian.eval.metrics.can_infer import vlmevalkit_can_infer
from cambrian.eval.metrics.choice_extract import lmms_eval_mmvp
from cambrian.eval.metrics.mcq_letter import cambrian_mmvp, gold_letter
from cambrian.eval.metrics.registry import HarnessError, labels


def parse_options(text: str) -> list[str]:
    """Cambrian ``give_options``: "(a) Open (b) Closed" -> ["Open", "Closed"]."""
    return [part.split(")")[1].strip() for part in text.split("(")[1:]]


def _per_question(options, n: int) -> list[dict[str, str]]:
    if isinstance(options, str):
        options = parse_options(options)
    if options and all(isinstance(o, str) for o in options):
        options = [options] * n
    if len(options) != n:
        raise ValueError(f"MMVP needs 2 shared option texts or one list per question; got "
                         f"{len(options)} lists for {n} questions")
    return [{chr(ord("A") + i): str(t) for i, t in enumerate(opts)} for opts in options]


def pair_accuracy(hits: Sequence[bool]) -> float:
    """Share of consecutive pairs (0-1, 2-3, ...) with both questions right; a trailing
    unpaired question is ignored and no complete pair scores 0 (as lmms-eval does)."""
    pairs = [hits[i:i + 2] for i in range(0, len(hits) - 1, 2)]
    return sum(all(p) for p in pairs) / len(pairs) if pairs else 0.0


def cambrian_pair_accuracy(hits: Sequence[bool]) -> float:
    """Cambrian ``mmvp_test``: +1 on an even line, +1 on an odd line only if the counter is odd,
    -1 on a wrong odd line with an odd counter; accuracy = counter / lines."""
    if not hits:
        raise HarnessError("Cambrian's mmvp_test divides by the number of lines (0)")
    correct = 0
    for ind, hit in enumerate(hits):
        if hit:
            if ind % 2 == 0 or correct % 2 == 1:
                correct += 1
        elif ind % 2 == 1 and correct % 2 == 1:
            correct -= 1
    return correct / len(hits)


def _scorer(judge: Callable[[str, dict[str, str], str], bool],
            aggregate: Callable[[Sequence[bool]], float], doc: str):
    def score(predictions: Sequence[str], references: Sequence[str], options, **_) -> float:
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        per_q = _per_question(options, len(predictions))
        hits = [bool(judge(p, c, gold_letter(r))) for p, r, c in zip(predictions, references,
                                                                       per_q)]
        return aggregate(hits)
    score.__doc__ = doc
    return score


_CB = "cambrian-mllm/cambrian@539ffc3:eval/eval/mmvp/mmvp_test.py:compute_metrics"
_LE = "EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmvp/utils.py:"
_VK = "open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/multiple_choice.py:"
SCORERS = {
    "cambrian": {"mmvp": _scorer(cambrian_mmvp, cambrian_pair_accuracy,
                                 f"{_CB} (the parity counter).")},
    "lmms-eval": {"mmvp": _scorer(
        lambda p, c, g: lmms_eval_mmvp(p) == g, pair_accuracy,
        f"{_LE}mmvp_process_results + mmvp_aggregate_pair_results.")},
    "vlmevalkit": labels({("MMVP(exact_matching)", "mmvp"): _scorer(
        lambda p, c, g: (vlmevalkit_can_infer(p, c) or "Z") == g, pair_accuracy,
        f"{_VK}eval_vanilla (can_infer) + report_acc_MMVP (Overall: pairs).")}),
    "fixed": {"mmvp": _scorer(cambrian_mmvp, pair_accuracy,
                              f"Corrects {_CB}: pairs by position (0-1, 2-3, ...), not by a "
                              "running parity counter.")},
}
