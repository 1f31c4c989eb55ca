"""DocVQA, Cambrian's OCR & Chart group, scored by ANLS.

Data: the HF parquet export of ``lmms-lab/DocVQA``, config ``DocVQA`` (``DocVQA/<split>-*.parquet``;
columns questionId, question, answers, image). Cambrian generates on ``test`` and submits to the RRC
server (no local score); locally the ``validation`` split (which has answers) is scored with
lmms-eval's ANLS. Items without answers are kept for a submission but not scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "docvqa"
GROUP = "ocr_chart"
MAX_NEW_TOKENS = 128
SOURCE = common.Source("lmms-lab/DocVQA", ("DocVQA/validation-*.parquet",))
SPLIT = "validation"
SUFFIX = "Give the short answer directly."
VARIANTS = {"cambrian": None, "lmms-eval": None, "vlmevalkit": None, "fixed": None}


def load(root: str, *, limit: int | None = None, split: str = SPLIT) -> list[dict]:
    samples = []
    files = common.split_files(root, split, "DocVQA", config="DocVQA")
    for row, where in common.read_parquet(files, limit):
        answers = row.get("answers")
        samples.append({
            "id": str(common.field(row, "questionId", where)),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + "\n" + SUFFIX,
            "references": [str(a) for a in answers] if answers else [],
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = ANLS (%) over the items that have reference answers."""
    scored = [r for r in records if r.get("references")]
    out = common.simple_score(scored, profile, "anls", VARIANTS, common.ref_fields,
                              keep_records=keep_records)
    out["unscored"] = len(records) - len(scored)
    if keep_records:
        values = iter(out["record_scores"])
        out["record_scores"] = [next(values) if r.get("references") else None for r in records]
    return out
