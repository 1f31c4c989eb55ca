"""TextVQA validation, Cambrian's OCR & Chart group.

Data: the HF parquet export of ``lmms-lab/textvqa`` (columns
question_id, question, answers (10), ocr_tokens, image). Cambrian puts the OCR tokens in the prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "textvqa"
GROUP = "ocr_chart"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/textvqa", ("data/validation-*.parquet",))
VARIANTS = {"cambrian": None, "lmms-eval": None, "vlmevalkit": None, "fixed": None}


def prompt(question: str, ocr_tokens: Sequence[str]) -> str:
    tokens = ",".join(f" {t}" for t in ocr_tokens)
    return f"{question}\nReference OCR tokens:{tokens}\n{common.SHORT_SUFFIX}"


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for row, where in common.read_parquet(common.split_files(root, "validation", "TextVQA"),
                                          limit):
        samples.append({
            "id": str(common.field(row, "question_id", where)),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": prompt(common.field(row, "question", where, str),
                             [str(t) for t in row.get("ocr_tokens") or []]),
            "references": [str(a) for a in common.field(row, "answers", where, list)],
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = VQA accuracy (%)."""
    return common.simple_score(records, profile, "vqa_accuracy", VARIANTS, common.ref_fields,
                               keep_records=keep_records)
