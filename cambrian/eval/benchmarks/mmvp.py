"""MMVP (300 questions = 150 CLIP-blind pairs), Cambrian's Vision-Centric group: pair accuracy.

Data: the ``MMVP/MMVP`` dataset files: ``Questions.csv`` (Index, Question, Options "(a) x (b) y",
Correct Answer "(a)"/"(b)") and ``MMVP Images/<Index>.jpg``. Keep the file order: consecutive
questions form a pair. lmms-eval corrects two gold answers (Index 100 and 280 -> (a)).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import fsspec

from cambrian.eval import metrics
from cambrian.eval.benchmarks import common
from cambrian.eval.metrics.mmvp_pair import parse_options

NAME = "mmvp"
GROUP = "vision_centric"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("MMVP/MMVP", ("Questions.csv", "MMVP Images/*.jpg"))
LMMS_EVAL_CORRECTIONS = {100: "A", 280: "A"}


def prompt(question: str, options: str) -> str:
    """Cambrian's layout: "(a) x (b) y" -> "A. x" / "B. y" lines."""
    parts = [p.strip().replace("(a)", "A.").replace("(b)", "B.") for p in options.split("(b)")]
    if len(parts) > 1:
        parts[1] = "B. " + parts[1]
    return question + " Options:" + "".join(f"\n{p}" for p in parts) + "\n" + common.MCQ_SUFFIX


def load(root: str, *, limit: int | None = None) -> list[dict]:
    path = common.find_files(root, ["Questions.csv", "**/Questions.csv"], "MMVP")[0]
    image_dir = path.rsplit("/", 1)[0] + "/MMVP Images"
    with fsspec.open(path, "rt", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    samples = []
    for line, row in enumerate(rows, 1):
        where = f"{path}:line {line}"
        if not row or row[0] in ("Index", "lndex"):
            continue
        if len(row) < 4 or not row[0].strip().isdigit():
            raise common.DataFormatError(f"{where}: expected Index, Question, Options, Correct "
                                         f"Answer; got {row}")
        index, question, options, gold = int(row[0]), row[1], row[2], row[3].strip()
        texts = parse_options(options)
        samples.append({
            "id": str(index),
            "image": common.read_image_file(f"{image_dir}/{index}.jpg", where),
            "prompt": prompt(question, options),
            "answer": gold.strip("()").upper(),
            "choices": dict(zip(common.letters(len(texts)), texts)),
            "index": index,
        })
        if limit is not None and len(samples) >= limit:
            break
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = pair accuracy (%) over consecutive records; also per-question accuracy."""
    harness = common.profile_name(profile)
    golds = [str(r["answer"]) for r in records]
    if harness == "lmms-eval":
        golds = [LMMS_EVAL_CORRECTIONS.get(int(r["index"]), g) for r, g in zip(records, golds)]
    preds = [str(r["prediction"]) for r in records]
    options = [list(r["choices"].values()) for r in records]
    pair = metrics.scorer("mmvp_pair", harness)(predictions=preds, references=golds,
                                                options=options)
    per_q = common.simple_score([{**r, "answer": g} for r, g in zip(records, golds)], harness,
                                "mcq_letter", {harness: "mmvp"}, common.mcq_fields,
                                keep_records=keep_records)
    out = {"score": 100.0 * pair, "n": len(records), "question_accuracy": per_q["score"]}
    if keep_records:
        out["record_scores"] = per_q["record_scores"]
    return out
