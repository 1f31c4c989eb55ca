"""Multiple-choice letter scoring (``mcq_letter``), one variant per harness task.

Fields: ``prediction`` (raw generation), ``choices`` ({letter: option text}, in order) and
``answer`` (the gold letter; "(B)" and AI2D's option index "1" are accepted too).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping

from cambrian.eval.metrics import choice_extract as ex
from cambrian.eval.metrics.can_infer import lmms_eval_can_infer, vlmevalkit_can_infer
from cambrian.eval.metrics.mmmu_open import cambrian_match, parse_multi_choice
from cambrian.eval.metrics.registry import HarnessError, labels
from cambrian.eval.metrics.text import hf_exact_match

VARIANT_REQUIRED = True
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

        score.__doc__ = fn.__doc__
        return score

    return labels({names: scorer(fn) for names, fn in entries.items()})


# ---- Cambrian (each *_test.py strips the decoded output first) ----

def cambrian_seed(pred, choices, gold):
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_mmbench(pred, choices, gold):
    return ex.cambrian_mcq(pred.strip(), ".:,") == gold.lower()


def cambrian_scienceqa(pred, choices, gold):
    """Right if the text before the first "." is the letter, or the punctuation-free answer is
    the option text."""
    answer = ex.cambrian_single(pred.strip())
    text = _option(choices, gold).lower().strip()
    same_text = answer.translate(_NO_PUNCT).lower().strip() == text.translate(_NO_PUNCT).strip()
    return same_text or answer.split(".")[0] == gold.lower()


def cambrian_ai2d(pred, choices, gold):
    """Letters a-d are mapped to the option index and compared with the gold index."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,")
    answer = {"a": "0", "b": "1", "c": "2", "d": "3"}.get(answer, answer)
    return answer == str(ord(gold) - ord("A"))


def cambrian_ade_coco(pred, choices, gold):
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_omni(pred, choices, gold):
    """Letter, or the (case-kept) option text -- which the 1-char truncation rarely allows."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,")
    return answer == gold.lower() or answer == _option(choices, gold)


def cambrian_realworldqa(pred, choices, gold):
    """The first whitespace token ("(B)" and "B)" are wrong; an empty output raises)."""
    return ex.cambrian_first_token(pred.strip()) == gold.lower()


def cambrian_vstar(pred, choices, gold):
    return ex.cambrian_mcq(pred.strip(), ".") == gold.lower()


def cambrian_mmmu(pred, choices, gold):
    return cambrian_match(ex.cambrian_mcq(pred.strip(), ".:,"), gold)


def cambrian_mathvista(pred, choices, gold):
    # The test looks for type "multiple-choice" but the data says "multi_choice", so no letter
    # extraction ever runs: only an output that *is* the letter counts.
    return cambrian_match(pred.strip().lower().strip(), gold)


def cambrian_mmvp(pred, choices, gold):
    """No 1-char truncation; the letter or the option text."""
    answer = ex.cambrian_mcq(pred.strip(), ".:,", truncate=False)
    return answer == gold.lower() or answer == _option(choices, gold).lower()


def cambrian_mmstar(pred, choices, gold):
    # Its "(A)" checks run on the lower-cased token and never fire; an empty output raises.
    tokens = pred.strip().lower().split()
    if not tokens:
        raise HarnessError("Cambrian's mmstar_test takes split()[0] of an empty answer "
                           "(IndexError)")
    return tokens[0].rstrip(".:,") == gold.lower()


def cambrian_blink(pred, choices, gold):
    answer = pred.strip().split(".")[0].lower().strip()
    return answer.split(" ")[0].lstrip("(").rstrip(")") == gold.lower()


# ---- lmms-eval (the task framework strips every generation) ----

def lmms_eval_seed(pred, choices, gold):
    """The first character, case-insensitive ("blue" counts for B)."""
    return ex.lmms_eval_seed(pred).upper() == gold


def lmms_eval_scienceqa(pred, choices, gold):
    pred = pred.strip()
    if pred.lower() == gold.lower():
        return True
    return len(pred) >= 2 and pred[0].isupper() and pred[1] == "." and pred[0].lower() == \
        gold.lower()


def lmms_eval_ai2d(pred, choices, gold):
    return hf_exact_match(ex.lmms_eval_ai2d_filter(pred.strip()), gold)


def lmms_eval_cv_bench(pred, choices, gold):
    return ex.lmms_eval_cv_bench(pred) == gold


def lmms_eval_realworldqa(pred, choices, gold):
    return ex.lmms_eval_mcq(pred.strip()) == gold


def lmms_eval_vstar(pred, choices, gold):
    return ex.lmms_eval_vstar(pred) == gold


def lmms_eval_mmbench_static(pred, choices, gold):
    """can_infer, then the shared ``extract_mcq_answer`` instead of the GPT judge."""
    pred = pred.strip()
    letter = lmms_eval_can_infer(pred, choices)
    if letter is None:
        letter = ex.lmms_eval_mcq(pred, list(choices))
    return letter == gold


def lmms_eval_mmbench(pred, choices, gold):
    """can_infer, else the GPT judge (None)."""
    letter = lmms_eval_can_infer(pred.strip(), choices)
    return None if letter is None else letter == gold


def lmms_eval_mmmu(pred, choices, gold):
    """Official MMMU parser; where it would pick a random letter -> None."""
    letter = parse_multi_choice(pred.strip(), choices)
    return None if letter is None else letter == gold


def lmms_eval_mmvp(pred, choices, gold):
    return ex.lmms_eval_mmvp(pred) == gold


def lmms_eval_mathvista(pred, choices, gold):
    """Rule-based part only: an output equal to an option text; anything else goes to GPT."""
    pred = pred.strip()
    hits = [k for k, v in choices.items() if str(v) == pred]
    return hits[0] == gold if hits else None


# ---- VLMEvalKit (raw generation; exact_matching: a failed can_infer is 'Z', i.e. wrong) ----

def vlmevalkit_mcq(pred, choices, gold):
    return (vlmevalkit_can_infer(pred, choices) or "Z") == gold


def vlmevalkit_mathvista(pred, choices, gold):
    """MathVista prefetch: can_infer on the options; the GPT extractor (None) otherwise."""
    letter = vlmevalkit_can_infer(pred, choices)
    return None if letter is None else letter == gold


# ---- fixed: Cambrian's rules with the documented defects corrected ----

def fixed_realworldqa(pred, choices, gold):
    """First token with brackets and trailing punctuation removed; an empty output is wrong."""
    tokens = ex.cambrian_single(pred.strip()).split()
    return bool(tokens) and tokens[0].rstrip(".:,").lstrip("(").rstrip(")") == gold.lower()


def fixed_mathvista(pred, choices, gold):
    """The letter extraction Cambrian meant to apply to multiple-choice MathVista items."""
    return ex.cambrian_mcq(pred.strip(), ".:,") == gold.lower()


def fixed_mmstar(pred, choices, gold):
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
