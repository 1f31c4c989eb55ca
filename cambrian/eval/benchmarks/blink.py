"""BLINK validation, the six subtasks Cambrian evaluates (extra; not in any group average).

Data: the HF parquet export of ``BLINK-Benchmark/BLINK`` (``<Subtask>/val-*.parquet`` per
config; columns idx, prompt (question + "(A) x" options), choices, answer "(A)", image_1..4). As in
Cambrian only ``image_1`` is fed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "blink"
GROUP = None
MAX_NEW_TOKENS = 32
SUBTASKS = ("Counting", "IQ_Test", "Object_Localization", "Relative_Depth",
            "Relative_Reflectance", "Spatial_Relation")
SOURCE = common.Source("BLINK-Benchmark/BLINK", tuple(f"{s}/val-*.parquet" for s in SUBTASKS))
VARIANTS = {"cambrian": "blink", "vlmevalkit": "blink", "fixed": "blink"}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for subtask in SUBTASKS:
        files = common.split_files(root, "val", f"BLINK {subtask}", config=subtask)
        for i, (row, where) in enumerate(common.read_parquet(files)):
            options = [str(c) for c in common.field(row, "choices", where, list)]
            samples.append({
                "id": str(row.get("idx", f"{subtask}_{i}")),
                "image": common.decode_image(common.field(row, "image_1", where), where),
                "prompt": common.field(row, "prompt", where, str) + "\n"
                + common.LETTER_ONLY_SUFFIX,
                "answer": common.field(row, "answer", where, str).strip().strip("()"),
                "choices": dict(zip(common.letters(len(options)), options)),
                "category": subtask,
            })
            if limit is not None and len(samples) >= limit:
                return samples
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) over the six subtasks."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               by="category", keep_records=keep_records)
