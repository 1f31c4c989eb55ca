"""ChartQA test (human + augmented), Cambrian's OCR & Chart group.

Data: the HF parquet export of ``lmms-lab/ChartQA`` (columns type
("human_test" / "augmented_test"), question, answer, image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "chartqa"
GROUP = "ocr_chart"
MAX_NEW_TOKENS = 128
SOURCE = common.Source("lmms-lab/ChartQA", ("data/test-*.parquet",))
NUMBER_SUFFIX = "Answer the question using a single number or phrase."
VARIANTS = {p: "chartqa" for p in common.PROFILES}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "ChartQA"), limit)):
        samples.append({
            "id": str(i),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + "\n" + NUMBER_SUFFIX,
            "answer": str(common.field(row, "answer", where)),
            "category": str(row.get("type")),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = relaxed accuracy (%) over all items (human and augmented)."""
    return common.simple_score(records, profile, "chartqa_relaxed", VARIANTS, common.ref_fields,
                               by="category", keep_records=keep_records)
