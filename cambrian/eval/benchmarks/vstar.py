"""V*Bench (extra; not in any group average).

Data: ``craigwu/vstar_bench``: ``test_questions.jsonl`` (image = path relative to the dataset root,
text = question with "(A) x (B) y" options and the answer instruction, label = gold letter,
category, question_id) plus the image folders. The prompt is ``text`` as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "vstar"
GROUP = None
MAX_NEW_TOKENS = 32
SOURCE = common.Source("craigwu/vstar_bench",
                       ("test_questions.jsonl", "direct_attributes/*", "relative_position/*"))
VARIANTS = {p: "vstar" for p in common.PROFILES}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    path = common.find_files(root, ["test_questions.jsonl", "**/test_questions.jsonl"],
                             "V*Bench")[0]
    base = path.rsplit("/", 1)[0]
    samples = []
    for row, where in common.read_jsonl(path):
        text = common.field(row, "text", where, str)
        samples.append({
            "id": str(row.get("question_id", len(samples))),
            "image": common.read_image_file(f"{base}/{common.field(row, 'image', where, str)}",
                                            where),
            "prompt": text,
            "answer": common.field(row, "label", where, str).strip().strip("()"),
            "choices": common.paren_options(text),
            "category": str(row.get("category")),
        })
        if limit is not None and len(samples) >= limit:
            break
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%)."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               by="category", keep_records=keep_records)
