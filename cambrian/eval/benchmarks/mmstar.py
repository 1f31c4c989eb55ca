"""MMStar (extra; not in any group average).

Data: ``Lin-Chen/MMStar`` parquet (``mmstar.parquet``; columns index,
question (ends with "Options: A: x, B: y, ..."), answer (letter), category, l2_category, image).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "mmstar"
GROUP = None
MAX_NEW_TOKENS = 128
SOURCE = common.Source("Lin-Chen/MMStar", ("mmstar.parquet",))
VARIANTS = {"cambrian": "mmstar", "vlmevalkit": "mmstar", "fixed": "mmstar"}


def options(question: str) -> dict[str, str]:
    """"Options: A: x, B: y" -> {"A": "x", "B": "y"}."""
    tail = question.rsplit("Options:", 1)[-1] if "Options:" in question else ""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"([A-Z]):\s*(.*?)(?=,\s*[A-Z]:|$)", tail, flags=re.DOTALL)}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    files = common.find_files(root, ["mmstar.parquet", "**/mmstar.parquet", "**/val-*.parquet",
                                     "**/*.parquet"], "MMStar")
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(files, limit)):
        question = common.field(row, "question", where, str)
        samples.append({
            "id": str(row.get("index", i)),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": question + "\n" + common.LETTER_ONLY_SUFFIX,
            "answer": common.field(row, "answer", where, str).strip(),
            "choices": options(question),
            "category": str(row.get("category")),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) (Cambrian: the first word of the answer must be the letter)."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               by="category", keep_records=keep_records)
