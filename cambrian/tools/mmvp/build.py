"""Annotated pairs -> a benchmark folder in MMVP's own layout, which the suite's ``mmvp`` loader
reads and scores with MMVP's pair accuracy::

    OUT/Questions.csv        Index,Question,Options,Correct Answer   (1,"Is ...?","(a) x (b) y",(a))
    OUT/MMVP Images/<Index>.jpg
    OUT/pairs.jsonl          provenance (not read by the loader): source images, similarities,
                             pattern of each pair

Input: JSONL, one pair a line -- ``mine``'s output with the annotation added::

    {"image_1": ..., "image_2": ..., "question": "Is the dog facing left or right?",
     "options": ["Left", "Right"], "answer_1": "a", "answer_2": "b"}

``question`` is one string (asked of both images, as MMVP does) or a list of two; ``answer_*`` is
"a"/"b" (or "(a)", "A") or the option's text; ``pattern`` (optional) is one of
``patterns.PATTERNS``. Index 2p-1 and 2p are pair p, so the pair scorer sees them consecutively.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping

from PIL import Image

from cambrian.tools import sources
from cambrian.tools.mmvp import patterns

ANNOTATION = ("question", "options", "answer_1", "answer_2")
IMAGES = "MMVP Images"


class AnnotationError(ValueError):
    pass


def _letter(answer, options: list[str], where: str, field: str) -> str:
    text = str(answer).strip()
    bare = text.strip("()").strip().lower()
    if bare in ("a", "b"):
        return bare
    for letter, opt in zip("ab", options):
        if text.lower() == opt.lower():
            return letter
    raise AnnotationError(f"{where}: {field}={answer!r}; expected 'a', 'b' or one of the options "
                          f"{options}")


def parse_pair(rec: object, where: str) -> dict:
    """One annotated line -> {"images", "questions", "options", "answers", "pattern"}."""
    if not isinstance(rec, Mapping):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [f for f in ("image_1", "image_2", *ANNOTATION) if f not in rec]
    if missing:
        raise AnnotationError(f"{where}: missing {', '.join(missing)}; each pair needs image_1, "
                              "image_2, question, options (two texts) and answer_1/answer_2")
    options = rec["options"]
    if (not isinstance(options, list) or len(options) != 2
            or not all(isinstance(o, str) and o.strip() for o in options)):
        raise AnnotationError(f"{where}: options={options!r}; expected a list of two texts")
    if any(c in o for o in options for c in "()"):
        raise AnnotationError(f"{where}: options={options!r}; MMVP writes options as "
                              "'(a) x (b) y', so an option text may not contain parentheses")
    q = rec["question"]
    questions = [q, q] if isinstance(q, str) else q
    if (not isinstance(questions, list) or len(questions) != 2
            or not all(isinstance(x, str) and x.strip() for x in questions)):
        raise AnnotationError(f"{where}: question={q!r}; expected a text or a list of two")
    pattern = rec.get("pattern")
    if pattern is not None and pattern not in patterns.PATTERNS:
        raise AnnotationError(f"{where}: pattern={pattern!r}; expected one of "
                              f"{', '.join(patterns.PATTERNS)} (or leave it out)")
    answers = [_letter(rec[f], options, where, f) for f in ("answer_1", "answer_2")]
    return {"images": [rec["image_1"], rec["image_2"]], "questions": questions,
            "options": options, "answers": answers,
            "pattern": pattern or patterns.tag_pair(questions, options),
            "pattern_from": "annotation" if pattern else "rules",
            "source": {k: rec[k] for k in ("rank", "sim_a", "sim_b") if k in rec}}


def read_annotations(path: str, *, skip_unannotated: bool = False) -> tuple[list[dict], int]:
    """(parsed pairs, lines skipped). A line with none of the annotation fields is a pair the
    reviewer did not keep: an error unless ``skip_unannotated``; a partial one is always one."""
    pairs, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{path}:{n}"
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnnotationError(f"{where}: not JSON ({e.msg})") from e
            if (skip_unannotated and isinstance(rec, Mapping)
                    and not any(k in rec for k in ANNOTATION)):
                skipped += 1
                continue
            pairs.append(parse_pair(rec, where))
    if not pairs:
        raise AnnotationError(f"{path}: no annotated pairs (add question, options, answer_1, "
                              "answer_2 to the pairs to keep)")
    return pairs, skipped


def build(annotations: str, out: str, *, skip_unannotated: bool = False,
          overwrite: bool = False) -> dict:
    """Writes the benchmark folder ``out``; returns counts. Images are re-encoded as RGB JPEG."""
    pairs, skipped = read_annotations(annotations, skip_unannotated=skip_unannotated)
    csv_path = os.path.join(out, "Questions.csv")
    if os.path.exists(csv_path) and not overwrite:
        raise FileExistsError(f"{csv_path} exists; pass --overwrite or another --out")
    os.makedirs(os.path.join(out, IMAGES), exist_ok=True)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["Index", "Question", "Options", "Correct Answer"])
    prov = []
    for p, pair in enumerate(pairs):
        options = f"(a) {pair['options'][0]} (b) {pair['options'][1]}"
        for k in range(2):
            index = 2 * p + k + 1
            Image.fromarray(sources.read_ref(pair["images"][k])).save(
                os.path.join(out, IMAGES, f"{index}.jpg"), quality=95)
            writer.writerow([index, pair["questions"][k], options, f"({pair['answers'][k]})"])
        prov.append({"index_1": 2 * p + 1, "index_2": 2 * p + 2, "image_1": pair["images"][0],
                     "image_2": pair["images"][1], "pattern": pair["pattern"],
                     "pattern_from": pair["pattern_from"], **pair["source"]})
    with open(csv_path + ".tmp", "w", encoding="utf-8", newline="") as f:
        f.write(rows.getvalue())
    os.replace(csv_path + ".tmp", csv_path)
    with open(os.path.join(out, "pairs.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in prov)
    return {"folder": out, "pairs": len(pairs), "questions": 2 * len(pairs), "skipped": skipped}


def pattern_overrides(folder: str) -> dict[int, str]:
    """{first Index of a pair: pattern} an annotator set, from a built folder's ``pairs.jsonl``
    (empty if none)."""
    path = os.path.join(folder, "pairs.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {int(r["index_1"]): r["pattern"] for r in map(json.loads, f)
                if r.get("pattern_from") == "annotation"}
