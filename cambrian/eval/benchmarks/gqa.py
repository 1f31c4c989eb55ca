"""GQA testdev-balanced, Cambrian's General group.

Data: the HF parquet export of ``lmms-lab/GQA``: config ``testdev_balanced_instructions``
(``testdev-*.parquet``; id, imageId, question, answer, ...) and config
``testdev_balanced_images`` (id, image), joined on imageId.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "gqa"
GROUP = "general"
MAX_NEW_TOKENS = 128
SOURCE = common.Source("lmms-lab/GQA", ("testdev_balanced_instructions/testdev-*.parquet",
                                        "testdev_balanced_images/testdev-*.parquet"))
VARIANTS = {p: "gqa" for p in common.PROFILES}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    questions = list(common.read_parquet(
        common.split_files(root, "testdev", "GQA questions", "testdev_balanced_instructions"),
        limit))
    wanted = {str(common.field(q, "imageId", where)) for q, where in questions}
    images: dict[str, tuple[object, str]] = {}
    image_files = common.split_files(root, "testdev", "GQA images", "testdev_balanced_images")
    for row, where in common.read_parquet(image_files, columns=["id", "image"]):
        if str(row["id"]) in wanted:
            images[str(row["id"])] = (row["image"], where)
    samples = []
    for q, where in questions:
        image_id = str(q["imageId"])
        if image_id not in images:
            raise common.DataFormatError(f"{where}: imageId {image_id!r} not found in "
                                         f"{image_files}")
        cell, image_where = images[image_id]
        samples.append({
            "id": str(common.field(q, "id", where)),
            "image": common.decode_image(cell, image_where),
            "prompt": common.field(q, "question", where, str) + "\n" + common.SHORT_SUFFIX,
            "answer": common.field(q, "answer", where, str),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = exact-match accuracy (%)."""
    return common.simple_score(records, profile, "gqa_exact", VARIANTS, common.ref_fields,
                               keep_records=keep_records)
