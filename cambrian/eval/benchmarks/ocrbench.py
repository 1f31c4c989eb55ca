"""OCRBench (1000 items, 10 categories), Cambrian's OCR & Chart group.

Data: the HF parquet export of ``echo840/OCRBench`` (columns dataset,
question, question_type (the category), answer (list of accepted strings), image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "ocrbench"
GROUP = "ocr_chart"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("echo840/OCRBench", ("data/test-*.parquet",))
SUFFIX = "Give the short answer directly."
VARIANTS = {"cambrian": None, "lmms-eval": None, "vlmevalkit": None, "fixed": None}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "OCRBench"), limit)):
        answers = common.field(row, "answer", where)
        answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
        samples.append({
            "id": str(i),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + "\n" + SUFFIX,
            "references": answers,
            "category": common.field(row, "question_type", where, str),
            "dataset": str(row.get("dataset")),
        })
    return samples


def _fields(rec: Mapping) -> dict:
    return {"references": list(rec["references"]), "category": rec["category"],
            "dataset": rec.get("dataset")}


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = % of items right (= the 0-1000 "Final Score" / 10 on the full set)."""
    out = common.simple_score(records, profile, "ocrbench", VARIANTS, _fields, by="category",
                              keep_records=keep_records)
    out["final_score"] = round(out["score"] * out["n"] / 100.0)
    return out
