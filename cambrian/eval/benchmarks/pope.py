"""POPE (extra; not in any group average): yes/no object hallucination.

Data: the HF parquet export of ``lmms-lab/POPE`` (columns question_id,
question, answer (yes/no), category (adversarial / popular / random), image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "pope"
GROUP = None
MAX_NEW_TOKENS = 128
SOURCE = common.Source("lmms-lab/POPE", ("data/test-*.parquet",))
VARIANTS = {"cambrian": "pope", "fixed": "pope"}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "POPE"), limit)):
        samples.append({
            "id": str(row.get("question_id", i)),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + "\n" + common.SHORT_SUFFIX,
            "answer": common.field(row, "answer", where, str),
            "category": str(row.get("category")),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) (Cambrian: the first word of the answer, trailing ".:," removed)."""
    return common.simple_score(records, profile, "short_answer", VARIANTS, common.ref_fields,
                               by="category", keep_records=keep_records)
