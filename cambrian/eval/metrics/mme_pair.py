"""MME: per category 100 * (accuracy + accuracy+), accuracy+ = share of images with both
questions right; Perception = sum of the 10 perception categories (max 2000).

The three harnesses differ in the yes/no reading and in how they pair the two questions of an
image: Cambrian pairs consecutive lines by the parity of the *global* line index (so the file must
be pair-aligned), lmms-eval groups by question_id (asserting exactly two), VLMEvalKit groups by
image path.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence

from cambrian.eval.metrics.registry import HarnessError
from cambrian.eval.metrics.text import vlmevalkit_punctuation

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene",
              "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation",
             "code_reasoning")


@dataclasses.dataclass(frozen=True)
class Item:
    prediction: str
    answer: str
    category: str
    image: str | None = None  # question_id / image path shared by the two questions


def lmms_eval_yes_no(pred: str) -> str:
    """lmms-eval ``parse_pred_ans`` (from Otter): substring test on the first 4 characters."""
    pred = pred.lower().strip().replace(".", "")
    if pred in ("yes", "no"):
        return pred
    if len(pred) == 1:
        return {"y": "yes", "n": "no"}.get(pred, "other")
    head = pred[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def vlmevalkit_yes_no(output: str) -> str:
    """VLMEvalKit ``YOrN_Extraction``: a whole-word "yes" xor "no"."""
    words = vlmevalkit_punctuation(output.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


def _cambrian_correct(item: Item) -> bool:
    return item.prediction.strip().lower().rstrip(".") == item.answer.lower()


def cambrian_scores(items: Sequence[Item]) -> dict[str, float]:
    """cambrian-mllm/cambrian@539ffc3:eval/eval/mme/mme_test.py:compute_metrics: acc+ is counted
    with a parity state machine over the global line index, so it is only right when every pair sits
    on lines (2k, 2k+1)."""
    stats: dict[str, list[float]] = {}
    for idx, item in enumerate(items):
        tp, plus, total = stats.setdefault(item.category, [0.0, 0.0, 0.0])
        total += 1
        if _cambrian_correct(item):
            tp += 1
            if not (idx % 2 == 1 and plus % 2 == 0):
                plus += 1
        elif idx % 2 == 1 and plus % 2 == 1:
            plus -= 1
        stats[item.category] = [tp, plus, total]
    return {c: 100.0 * (tp / total + plus / total) for c, (tp, plus, total) in stats.items()}


def _groups(items: Sequence[Item]) -> dict[str, dict[str, list[Item]]]:
    groups: dict[str, dict[str, list[Item]]] = defaultdict(dict)
    for item in _pairwise(items):
        groups[item.category].setdefault(item.image, []).append(item)
    return groups


def _pairwise(items: Sequence[Item]) -> list[Item]:
    """Without image ids, consecutive questions of a category are taken as one image's pair."""
    if all(it.image is not None for it in items):
        return list(items)
    counters: dict[str, int] = defaultdict(int)
    out = []
    for it in items:
        out.append(dataclasses.replace(it, image=f"#pair{counters[it.category] // 2}"))
        counters[it.category] += 1
    return out


def lmms_eval_scores(items: Sequence[Item]) -> dict[str, float]:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/tasks/mme/utils.py:parse_pred_ans +
    mme_process_results + mme_aggregate_results: per question_id mean*100 + both-right*100."""
    scores = {}
    for category, images in _groups(items).items():
        total = 0.0
        for key, group in images.items():
            if len(group) != 2:
                raise HarnessError(f"lmms-eval asserts 2 answers per question_id; {key!r} in "
                                   f"{category!r} has {len(group)}")
            golds = [it.answer.lower().strip().replace(".", "") for it in group]
            if any(g not in ("yes", "no") for g in golds):
                raise HarnessError(f"lmms-eval asserts yes/no answers; got {golds} for {key!r}")
            hits = [1.0 if lmms_eval_yes_no(it.prediction) == g else 0.0
                    for it, g in zip(group, golds)]
            total += 100.0 * sum(hits) / 2 + 100.0 * (sum(hits) == 2)
        scores[category] = total / len(images)
    return scores


def vlmevalkit_scores(items: Sequence[Item]) -> dict[str, float]:
    """open-compass/VLMEvalKit@e8e78f0:vlmeval/dataset/utils/yorn.py:YOrN_Extraction + MME_rating:
    mean over all answers + mean over images of s1*s2 (exact matching: an 'Unknown' extraction is
    wrong; the answer compare is case-sensitive, as in vlmeval/dataset/image_yorn.py)."""
    scores = {}
    for category, images in _groups(items).items():
        hits = {k: [1.0 if vlmevalkit_yes_no(it.prediction) == it.answer else 0.0 for it in group]
                for k, group in images.items()}
        every = [h for group in hits.values() for h in group]
        for key, group in hits.items():
            if len(group) < 2:
                raise HarnessError(f"VLMEvalKit MME_rating indexes 2 answers per image; {key!r} "
                                   f"in {category!r} has {len(group)} (IndexError)")
        plus = [group[0] * group[1] for group in hits.values()]
        scores[category] = 100.0 * sum(every) / len(every) + 100.0 * sum(plus) / len(plus)
    return scores


def fixed_scores(items: Sequence[Item]) -> dict[str, float]:
    """Corrects cambrian-mllm/cambrian@539ffc3:eval/eval/mme/mme_test.py:compute_metrics: Cambrian's
    yes/no rule with pairs formed by image id (or consecutive order) per category."""
    scores = {}
    for category, images in _groups(items).items():
        hits = [[_cambrian_correct(it) for it in group] for group in images.values()]
        acc = sum(sum(h) for h in hits) / sum(len(h) for h in hits)
        scores[category] = 100.0 * acc + 100.0 * sum(all(h) for h in hits) / len(hits)
    return scores


def perception(scores: Mapping[str, float]) -> float:
    return sum(v for c, v in scores.items() if c in PERCEPTION)


def cognition(scores: Mapping[str, float]) -> float:
    return sum(v for c, v in scores.items() if c in COGNITION)


_PRED_KEYS = ("prediction", "pred", "response", "output")
_ANSWER_KEYS = ("answer", "reference", "gt_answer", "gt", "ground_truth", "label", "target")
_IMAGE_KEYS = ("question_id", "image_path", "image", "image_id", "pair_id", "pair")
_ID_LISTS = ("question_ids", "image_paths", "image_ids", "images", "pair_ids")


def _first(d: Mapping, keys: Sequence[str], what: str, where: str):
    for k in keys:
        if k in d:
            return d[k]
    raise ValueError(f"MME item {where} has no {what} field (tried {list(keys)}); got {sorted(d)}")


def _image_of(d: Mapping) -> str | None:
    return next((str(d[k]) for k in _IMAGE_KEYS if d.get(k) is not None), None)


def _from_item(d: Mapping, i: int, category: str | None) -> list[Item]:
    cat = str(d.get("category", category))
    if "predictions" in d:  # one item = one image's pair of questions
        refs = d.get("references") or _first(d, ("answers", "gt_answers"), "answers", f"#{i}")
        image = _image_of(d) or f"#item{i}"
        return [Item(str(p), str(r), cat, image) for p, r in zip(d["predictions"], refs)]
    answer = d["references"][0] if "references" in d else _first(d, _ANSWER_KEYS, "answer",
                                                                 f"#{i}")
    return [Item(str(_first(d, _PRED_KEYS, "prediction", f"#{i}")), str(answer), cat,
                 _image_of(d))]


def to_items(predictions: Sequence[str] | None = None, references: Sequence[str] | None = None,
             category: str | None = None, items: Sequence[Mapping] | None = None,
             **lists) -> list[Item]:
    """Scorer fields -> ``Item`` list, in file order. Either ``items`` (one dict per question:
    prediction, answer, category, question_id / image path; or one dict per image with
    ``predictions`` + ``references``), or parallel ``predictions`` / ``references`` lists (one
    ``category`` or a ``categories`` list, optional ``question_ids`` / ``image_paths``)."""
    if items is not None:
        return [it for i, d in enumerate(items) for it in _from_item(d, i, category)]
    if predictions is None or references is None or len(predictions) != len(references):
        raise ValueError("MME scorer needs `items`, or `predictions` and `references` of equal "
                         "length")
    ids = next((lists[k] for k in _ID_LISTS if lists.get(k) is not None), None)
    cats = lists.get("categories") or [category] * len(predictions)
    return [Item(str(p), str(r), str(c), None if ids is None else str(ids[i]))
            for i, (p, r, c) in enumerate(zip(predictions, references, cats))]


_HARNESS_SCORES = {"cambrian": cambrian_scores, "lmms-eval": lmms_eval_scores,
                   "vlmevalkit": vlmevalkit_scores, "fixed": fixed_scores}


def _scorer(harness: str):
    def score(predictions=None, references=None, category=None, items=None, **lists) -> float:
        return sum(_HARNESS_SCORES[harness](to_items(predictions, references, category, items,
                                                     **lists)).values())
    score.__doc__ = ("Sum of the category scores (one category: its 0-200 score): "
                     + _HARNESS_SCORES[harness].__doc__)
    return score


SCORERS = {h: {"MME" if h == "vlmevalkit" else "mme": _scorer(h)} for h in _HARNESS_SCORES}


def category_scores(items: Sequence[Item], harness: str) -> dict[str, float]:
    """{category: 0-200 score} under ``harness``'s pairing and yes/no reading."""
    return _HARNESS_SCORES[harness](items)


def question_correct(item: Item, harness: str) -> bool:
    """Whether one question is answered right under ``harness``'s yes/no reading."""
    if harness in ("cambrian", "fixed"):
        return _cambrian_correct(item)
    if harness == "lmms-eval":
        return lmms_eval_yes_no(item.prediction) == item.answer.lower().strip().replace(".", "")
    return vlmevalkit_yes_no(item.prediction) == item.answer
