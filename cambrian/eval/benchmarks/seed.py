"""SEED-Bench (image questions), Cambrian's General group.

Data: the HF parquet export of ``lmms-lab/SEED-Bench`` (columns question,
choice_a-d, answer (letter), question_id, question_type_id (1-9), data_type, image = a list of
images). As in Cambrian, rows with more than one image (video frames) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "seed"
GROUP = "general"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/SEED-Bench", ("data/test-*.parquet",))
VARIANTS = {"cambrian": "seed", "lmms-eval": "seedbench", "vlmevalkit": "seed", "fixed": "seed"}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for row, where in common.read_parquet(common.split_files(root, "test", "SEED-Bench")):
        images = common.field(row, "image", where, list)
        if len(images) != 1:
            continue
        choices = {k: str(common.field(row, f"choice_{k.lower()}", where)) for k in "ABCD"}
        samples.append({
            "id": str(common.field(row, "question_id", where)),
            "image": common.decode_image(images[0], where),
            "prompt": common.field(row, "question", where, str) + " Options:"
            + "".join(f"\n{k}. {v}" for k, v in choices.items()) + "\n" + common.MCQ_SUFFIX,
            "answer": common.field(row, "answer", where, str),
            "choices": choices,
            "category": str(row.get("question_type_id")),
        })
        if limit is not None and len(samples) >= limit:
            break
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) over image questions."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               by="category", keep_records=keep_records)
