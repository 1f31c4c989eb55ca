"""CV-Bench (2,638 items: 2D from ADE20K + COCO, 3D from Omni3D), Cambrian's Vision-Centric group.

Data: ``nyu-visionx/CV-Bench`` parquet (``test_2d.parquet`` + ``test_3d.parquet``, or the combined
``test.parquet`` / ``test-*.parquet``; columns idx, type, task, source (ADE20K / COCO / Omni3D),
prompt (question with "(A) x" options), choices, answer "(A)", image).

Scores as the dataset card defines them (per-source means, not per-item): 2D = (ADE20K + COCO) / 2,
3D = Omni3D, CV-Bench = (2D + 3D) / 2. Cambrian scores ADE/COCO with its ``rstrip('.')`` extractor
and Omni3D with ``rstrip('.:,')`` + option text; lmms-eval's ``cv_bench`` task reports the micro
accuracy instead (reproduced under that profile).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval import metrics
from cambrian.eval.benchmarks import common

NAME = "cvbench"
GROUP = "vision_centric"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("nyu-visionx/CV-Bench", ("test_2d.parquet", "test_3d.parquet"))
SOURCES_2D = ("ADE20K", "COCO")
OMNI3D = "Omni3D"


def _files(root: str) -> list[str]:
    try:
        return (common.find_files(root, ["test_2d*.parquet", "**/test_2d*.parquet"], "CV-Bench 2D")
                + common.find_files(root, ["test_3d*.parquet", "**/test_3d*.parquet"],
                                    "CV-Bench 3D"))
    except FileNotFoundError:
        return common.split_files(root, "test", "CV-Bench")


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(_files(root), limit)):
        options = [str(c) for c in common.field(row, "choices", where, list)]
        source = common.field(row, "source", where, str)
        if source not in (*SOURCES_2D, OMNI3D):
            raise common.DataFormatError(f"{where}: field 'source' should be one of "
                                         f"{[*SOURCES_2D, OMNI3D]}, got {source!r}")
        samples.append({
            "id": str(row.get("idx", i)),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "prompt", where, str) + "\n" + common.MCQ_SUFFIX,
            "answer": common.field(row, "answer", where, str).strip().strip("()"),
            "choices": dict(zip(common.letters(len(options)), options)),
            "source": source,
            "type": str(row.get("type")),
            "task": str(row.get("task")),
        })
    return samples


def _variant(harness: str, source: str) -> str:
    if harness == "lmms-eval":
        return "cv_bench"
    if harness == "vlmevalkit":
        return "cvbench"
    return "omni" if source == OMNI3D else "ade/coco"


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = (2D + 3D) / 2 (%); "2d" and "3d" are the two paper columns."""
    harness = common.profile_name(profile)
    values, errors = common.apply(records, lambda r: (
        metrics.scorer("mcq_letter", harness, _variant(harness, r["source"])),
        common.mcq_fields(r)))
    by_source = common.by_key(records, values, "source")
    if harness == "lmms-eval":  # its cv_bench / cv_bench_2d / cv_bench_3d tasks: micro accuracy
        two = [v for r, v in zip(records, values) if r["source"] in SOURCES_2D]
        three = [v for r, v in zip(records, values) if r["source"] == OMNI3D]
        acc_2d, acc_3d = 100 * common.mean(two), 100 * common.mean(three)
        total = 100 * common.mean(values)
    else:
        acc_2d = sum(by_source.get(s, 0.0) for s in SOURCES_2D) / len(SOURCES_2D)
        acc_3d = by_source.get(OMNI3D, 0.0)
        total = (acc_2d + acc_3d) / 2
    out = common.summary(values, errors, **{"2d": acc_2d, "3d": acc_3d, "by_source": by_source})
    out["score"] = total
    if keep_records:
        out["record_scores"] = values
    return out
