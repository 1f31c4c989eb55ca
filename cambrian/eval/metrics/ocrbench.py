"""OCRBench: an item is right if some reference is contained in the normalised prediction.

Normalisation: lower-case, strip, newlines -> spaces; for handwritten math expressions (HME)
case is kept and all spaces are deleted. Substring quirks ("1" in "10") count as right everywhere.
lmms-eval also folds full-width ASCII and the ideographic space, but only outside HME (its HME
branch compares the raw text, so "x\uff0b1" does not contain "x+1"). Cambrian's ``get_accuracy``
defaults to exact match (``extra_penalization=True``) but its CLI flag defaults to containment,
which is what its reported numbers use.
"""

from __future__ import annotations

from collections.abc import Sequence

from cambrian.eval.metrics.registry import HarnessError, labels

HME_CATEGORY = "Handwritten Mathematical Expression Recognition"
HME_DATASET = "HME100k"


def _normal(text: str) -> str:
    return text.lower().strip().replace("\n", " ")


def _hme(text: str) -> str:
    return text.strip().replace("\n", " ").replace(" ", "")


def fold_fullwidth(text: str) -> str:
    """U+FF01..U+FF5E -> ASCII, U+3000 -> space (lmms-eval #1415, ``_fold_fullwidth_ascii``)."""
    return "".join(" " if c == "\u3000" else chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e"
                   else c for c in text)


def ocr_match(prediction: str, references: Sequence[str], hme: bool, exact: bool = False) -> float:
    if not references:
        raise HarnessError("OCRBench needs at least one reference answer")
    norm = _hme if hme else _normal
    pred = norm(prediction)
    for ref in references:
        ref = norm(ref)
        if (ref == pred) if exact else (ref in pred):
            return 1.0
    return 0.0


def cambrian(prediction: str, references: Sequence[str], category: str = "", **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/ocrbench/ocrbench_test.py:compute_metrics as its
    CLI runs it (``--extra_penalization`` absent: containment); the eval script strips."""
    return ocr_match(prediction.strip(), references, category == HME_CATEGORY)


def cambrian_exact(prediction: str, references: Sequence[str], category: str = "", **_) -> float:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/ocrbench/ocrbench_test.py:get_accuracy with its
    function default ``extra_penalization=True``: edit distance 0, i.e. exact match."""
    return ocr_match(prediction.strip(), references, category == HME_CATEGORY, exact=True)


def lmms_eval(prediction: str, references: Sequence[str], category: str = "",
              dataset: str | None = None, **_) -> float:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/ocrbench/utils.py:
    ocrbench_process_results: full-width folding in the non-HME branch only."""
    # lmms-eval keys HME on the source dataset; the category is the same split of OCRBench.
    hme = dataset == HME_DATASET if dataset is not None else category == HME_CATEGORY
    if hme:
        return ocr_match(prediction.strip(), references, hme)
    return ocr_match(fold_fullwidth(prediction.strip()), [fold_fullwidth(r) for r in references],
                     hme)


def vlmevalkit(prediction: str, references: Sequence[str], category: str = "", **_) -> float:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/image_vqa.py:OCRBench.evaluate (no strip
    of the generation; the same normalisation as Cambrian, keyed on the category)."""
    return ocr_match(prediction, references, category == HME_CATEGORY)


def fixed(prediction: str, references: Sequence[str], category: str = "", **_) -> float:
    """Cambrian's containment rule (cambrian-mllm/cambrian@539ffc3:eval/eval/ocrbench/
    ocrbench_test.py:compute_metrics) unchanged: it has no documented defect."""
    return cambrian(prediction, references, category)


SCORERS = {
    "cambrian": labels({
        ("ocrbench (cli_default: extra_penalization=False)", "ocrbench", "cli_default"): cambrian,
        ("ocrbench (function_default_extra_penalization: extra_penalization=True)",
         "function_default", "extra_penalization", "exact"): cambrian_exact,
    }),
    "lmms-eval": {"ocrbench": lmms_eval},
    "vlmevalkit": labels({("OCRBench", "ocrbench"): vlmevalkit}),
    "fixed": {"ocrbench": fixed},
}
