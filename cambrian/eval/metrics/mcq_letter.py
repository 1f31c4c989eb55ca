"""Multiple-choice letter scoring (``mcq_letter``), one variant per harness task.

Fields: ``prediction`` (raw generation), ``choices`` ({letter: option text}, in order) and
``answer`` (the gold letter; "(B)" and AI2D's option index "1" are accepted too).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping

from cambrian.eval.metrics import choice_extract as ex
from cambrian.eval.metrics.can_infer import lmms_eval_can_infer, vlmevalkit_can_infer
from cambrian.eval.metrics.mmmu_open import cambrian_match, parse_multi_choice
from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import hf_exact_match, levenshtein, lmms_eval_until

VARIANT_REQUIRED = True
REALWORLDQA_LETTERS = ("A", "B", "C", "D")
_NO_PUNCT = str.maketrans("", "", string.punctuation)


def gold_letter(answer: str | int, choices: Mapping[str, str] | None = None) -> str:
    """"B", "(B)", "b" -> "B"; an option index (AI2D's "1", ScienceQA's 1) -> its letter."""
    text = str(answer).strip().strip("()").strip()
    if text.isdigit() and (choices is None or text not in choices):
        return chr(ord("A") + int(text))
    if len(text) != 1 or not text.isalpha():
        raise ValueError(f"answer {answer!r} is not an option letter or index")
    return text.upper()


def _option(choices: Mapping[str, str], letter: str) -> str:
    if letter not in choices:
        raise ValueError(f"gold letter {letter!r} is not among the choices {list(choices)}")
    return str(choices[letter])


def _letter_scorers(entries: Mapping[str | tuple[str, ...], Callable]) -> dict[str, Callable]:
    """Each judge ``fn(pred, choices, gold_letter) -> bool | None`` as an ``mcq_letter`` scorer,
    under its labels."""

    def scorer(fn):
        def score(prediction: str, choices: Mapping[str, str], answer: str, **_) -> float | None:
            hit = fn(prediction, dict(choices), gold_letter(answer, choices))
            return None if hit is None else float(hit)

        score.__doc__, score.__wrapped__ = fn.__doc__, fn
        return score

    return labels({names: scorer(fn) for names, fn in entries.items()})


# ---- Cambrian (each *_test.py strips the decoded output first) ----

def cambrian_seed(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/seed/seed_test.py:extract_mcq_answer (rstrip
    ".")."""
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_mmbench(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mmbench_en/mmbench_en_test.py:extract_mcq_answer
    (rstrip ".:,"); circular grouping is the benchmark module's."""
    return ex.cambrian_mcq(pred.strip(), ".:,") == gold.lower()


def cambrian_scienceqa(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/scienceqa/scienceqa_test.py:is_correct: right if the
    text before the first "." is the letter, or the punctuation-free answer is the option text."""
    answer = ex.cambrian_single(pred.strip())
    text = _option(choices, gold).lower().strip()
    same_text = answer.translate(_NO_PUNCT).lower().strip() == text.translate(_NO_PUNCT).strip()
    return same_text or answer.split(".")[0] == gold.lower()


def cambrian_ai2d(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/ai2d/ai2d_test.py:compute_metrics: letters a-d are
    mapped to the option index and compared with the gold index."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,")
    answer = {"a": "0", "b": "1", "c": "2", "d": "3"}.get(answer, answer)
    return answer == str(ord(gold) - ord("A"))


def cambrian_ade_coco(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/ade/ade_test.py:compute_metrics (coco_test.py is the
    same)."""
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_omni(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/omni/omni_test.py:compute_metrics: the letter, or
    the (case-kept) option text -- which the 1-char truncation rarely allows."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,")
    return answer == gold.lower() or answer == _option(choices, gold)


def cambrian_realworldqa(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/realworldqa/realworldqa_test.py:
    extract_single_answer: the first whitespace token ("(B)" and "B)" are wrong; an empty output
    raises)."""
    return ex.cambrian_first_token(pred.strip()) == gold.lower()


def cambrian_vstar(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/vstar/vstar_test.py:extract_mcq_answer (rstrip
    ".")."""
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_mmmu(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mmmu/mmmu_test.py:compute_metrics
    (multiple-choice)."""
    return cambrian_match(ex.cambrian_mcq(pred.strip(), ".:,"), gold)


def cambrian_mathvista(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mathvista/mathvista_test.py:compute_metrics."""
    # The test looks for type "multiple-choice" but the data says "multi_choice", so no letter
    # extraction ever runs: only an output that *is* the letter counts.
    return cambrian_match(pred.strip().lower().strip(), gold)


def cambrian_mmvp(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mmvp/mmvp_test.py:compute_metrics: no 1-char
    truncation; the letter or the option text."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,", truncate=False)
    return answer == gold.lower() or answer == _option(choices, gold).lower()


def cambrian_mmstar(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mmstar/mmstar_test.py:compute_metrics."""
    # Its "(A)" checks run on the lower-cased token and never fire; an empty output raises.
    tokens = pred.strip().lower().split()
    if not tokens:
        raise HarnessError("Cambrian's mmstar_test takes split()[0] of an empty answer "
                           "(IndexError)")
    return tokens[0].rstrip(".:,") == gold.lower()


def cambrian_blink(pred, choices, gold):
    """cambrian-mllm/cambrian@539ffc3:eval/eval/blink/blink_test.py:compute_metrics: the first word
    of the text before the first "."."""
    answer = pred.strip().split(".")[0].lower().strip()
    return answer.split(" ")[0].lstrip("(").rstrip(")") == gold.lower()


# ---- lmms-eval (the task framework strips every generation) ----

def lmms_eval_seed(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/seedbench/utils.py:seed_process_result +
    seed_aggregation_result: the first character, case-insensitive ("blue" counts for B), after
    its "ASSISTANT:" stop string (tasks/seedbench/seedbench.yaml)."""
    return ex.lmms_eval_seed(lmms_eval_until(pred)).lower().strip() == gold.lower()


def lmms_eval_scienceqa(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/scienceqa/utils.py:sqa_process_results."""
    pred = pred.strip()
    if pred.lower() == gold.lower():
        return True
    return len(pred) >= 2 and pred[0].isupper() and pred[1] == "." and pred[0].lower() == \
        gold.lower()


def lmms_eval_ai2d(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/ai2d/utils.py:
    MultiChoiceRegexFilter.apply, then
    EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:exact_match_hf_evaluate
    (ignore_case, ignore_punctuation; tasks/ai2d/ai2d.yaml)."""
    return hf_exact_match(ex.lmms_eval_ai2d_filter(pred.strip()), gold)


def lmms_eval_cv_bench(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/cv_bench/utils.py:
    cv_bench_process_results."""
    return ex.lmms_eval_cv_bench(pred) == gold


def lmms_eval_realworldqa(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/realworldqa/utils.py:
    realworldqa_process_results: the shared extractor over the choices A-D whatever the options, for
    a gold A-D; any other gold is compared as a short answer."""
    if gold not in REALWORLDQA_LETTERS:
        return pred.strip().lower().strip().rstrip(".") == gold.lower()
    return ex.lmms_eval_mcq(pred.strip(), REALWORLDQA_LETTERS) == gold


def lmms_eval_vstar(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/vstar_bench/utils.py:
    vstar_process_results."""
    return ex.lmms_eval_vstar(pred) == gold


def lmms_eval_mmbench_static(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py:
    MMBench_Evaluator.eval_sub_data(static_only=True): can_infer, then the shared
    ``extract_mcq_answer`` instead of the GPT judge."""
    pred = pred.strip()
    letter = lmms_eval_can_infer(pred, choices)
    if letter is None:
        letter = ex.lmms_eval_mcq(pred, list(choices))
    return letter == gold


def lmms_eval_mmbench(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmbench/mmbench_evals.py:
    MMBench_Evaluator.prefetch_answer: can_infer, else the GPT judge (None)."""
    letter = lmms_eval_can_infer(pred.strip(), choices)
    return None if letter is None else letter == gold


def lmms_eval_mmmu(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/_task_utils/mmmu_mcq_utils.py:
    parse_mmmu_multi_choice_response; where it would pick a random letter -> None."""
    letter = parse_multi_choice(pred.strip(), choices)
    return None if letter is None else letter == gold


def lmms_eval_mmvp(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mmvp/utils.py:mmvp_process_results."""
    return ex.lmms_eval_mmvp(pred) == gold


def lmms_eval_mathvista(pred, choices, gold):
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mathvista/utils.py:
    mathvista_process_results with MathVistaEvaluator.extract_answer / normalize_extracted_answer /
    safe_equal (tasks/mathvista/mathvista_evals.py), rule-based part: an empty output, or one equal
    to an option text, is normalised and compared; anything else goes to the GPT extractor
    (None)."""
    pred = pred.strip()
    texts = [str(v) for v in choices.values()]
    if pred and pred not in texts:
        return None
    return lmms_eval_mathvista_option(pred, texts).strip() == _option(choices, gold).strip()


def lmms_eval_mathvista_option(extraction: str, texts: list[str]) -> str:
    """``normalize_extracted_answer`` for multi_choice: "(x)" -> its letter, a letter -> its option,
    anything else -> the option nearest in edit distance (the first of equals)."""
    extraction = extraction.strip()
    found = re.findall(r"\(([a-zA-Z])\)", extraction)
    if found:
        extraction = found[0].upper()
    letters = [chr(ord("A") + i) for i in range(len(texts))]
    if extraction in letters:
        return texts[letters.index(extraction)]
    distances = [levenshtein(extraction, t) for t in texts]
    return texts[distances.index(min(distances))]


# ---- VLMEvalKit (raw generation; exact_matching: a failed can_infer is 'Z', i.e. wrong) ----

def vlmevalkit_mcq(pred, choices, gold):
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/multiple_choice.py:eval_vanilla ->
    extract_answer_from_item without a judge: can_infer, else 'Z'."""
    return (vlmevalkit_can_infer(pred, choices) or "Z") == gold


def vlmevalkit_mathvista(pred, choices, gold):
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/mathvista.py:post_check: the
    prefetch takes any letter can_infer finds (right or wrong, 'Z' included); an output it cannot
    read goes to the GPT extractor (None)."""
    letter = vlmevalkit_can_infer(pred, choices)
    return None if letter is None else letter == gold


# ---- fixed: Cambrian's rules with the documented defects corrected ----

def fixed_realworldqa(pred, choices, gold):
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/realworldqa/realworldqa_test.py:
    extract_single_answer: first token with brackets and trailing punctuation removed; an empty
    output is wrong."""
    tokens = ex.cambrian_single(pred.strip()).split()
    return bool(tokens) and tokens[0].rstrip(".:,").lstrip("(").rstrip(")") == gold.lower()


def fixed_mathvista(pred, choices, gold):
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/mathvista/mathvista_test.py:
    compute_metrics: the letter extraction Cambrian meant to apply to multiple-choice MathVista
    items (its "multiple-choice" test never matches the data's "multi_choice")."""
    return ex.cambrian_mcq(pred.strip(), ".:,") == gold.lower()


def fixed_mmstar(pred, choices, gold):
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/mmstar/mmstar_test.py:compute_metrics:
    brackets stripped from the first token; an empty output is wrong instead of a crash."""
    tokens = pred.strip().lower().split()
    return bool(tokens) and tokens[0].rstrip(".:,").lstrip("(").rstrip(")") == gold.lower()


SCORERS = {
    "cambrian": _letter_scorers({
        "seed": cambrian_seed,
        ("mmbench_en", "mmbench"): cambrian_mmbench,
        ("scienceqa", "sqa"): cambrian_scienceqa,
        "ai2d": cambrian_ai2d,
        ("ade/coco (CV-Bench 2D)", "ade/coco", "ade", "coco", "cvbench_2d"): cambrian_ade_coco,
        ("omni (CV-Bench 3D)", "omni", "cvbench_3d"): cambrian_omni,
        ("realworldqa", "rwqa"): cambrian_realworldqa,
        "vstar": cambrian_vstar,
        ("mmmu (multiple-choice)", "mmmu"): cambrian_mmmu,
        ("mathvista (multi_choice)", "mathvista"): cambrian_mathvista,
        "mmvp": cambrian_mmvp,
        "mmstar": cambrian_mmstar,
        "blink": cambrian_blink,
    }),
    "lmms-eval": _letter_scorers({
        ("seedbench", "seed"): lmms_eval_seed,
        ("scienceqa_img", "scienceqa"): lmms_eval_scienceqa,
        "ai2d": lmms_eval_ai2d,
        ("cv_bench", "cvbench"): lmms_eval_cv_bench,
        "realworldqa": lmms_eval_realworldqa,
        ("vstar_bench", "vstar"): lmms_eval_vstar,
        ("mmbench_en_dev_static", "mmbench_static"): lmms_eval_mmbench_static,
        ("mmbench_en_dev", "mmbench"): lmms_eval_mmbench,
        ("mmmu_val", "mmmu"): lmms_eval_mmmu,
        "mmvp": lmms_eval_mmvp,
        "mathvista": lmms_eval_mathvista,
    }),
    "vlmevalkit": _letter_scorers({
        ("ImageMCQDataset(exact_matching)", "ImageMCQDataset", "seed", "mmbench", "scienceqa",
         "ai2d", "mmmu", "realworldqa", "vstar", "cvbench", "mmvp", "mmstar",
         "blink"): vlmevalkit_mcq,
        "mathvista": vlmevalkit_mathvista,
    }),
    "fixed": _letter_scorers({
        "seed": cambrian_seed,
        "mmbench": cambrian_mmbench,
        "scienceqa": cambrian_scienceqa,
        "ai2d": cambrian_ai2d,
        "ade/coco": cambrian_ade_coco,
        "omni": cambrian_omni,
        "vstar": cambrian_vstar,
        "mmmu": cambrian_mmmu,
        "mmvp": cambrian_mmvp,
        "blink": cambrian_blink,
        "realworldqa": fixed_realworldqa,
        "mathvista": fixed_mathvista,
        "mmstar": fixed_mmstar,
    }),
}
