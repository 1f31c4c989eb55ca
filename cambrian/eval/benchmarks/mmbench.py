"""MMBench-EN dev with circular evaluation, Cambrian's General group.

Data: the HF parquet export of ``lmms-lab/MMBench_EN`` (columns index,
question, hint, A-D ("nan" when absent), answer, category, l2-category, source, image). The dev
split holds the circular copies (options rotated, index + k * 1e6); a question counts only if all
its copies are right. Cambrian keys the copies by question + image hash + source, the other
harnesses by ``index % 1e6`` (equivalent on dev).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from cambrian.eval.benchmarks import common

NAME = "mmbench"
GROUP = "general"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/MMBench_EN", ("data/dev-*.parquet",))
VARIANTS = {"cambrian": "mmbench_en", "lmms-eval": "mmbench_en_dev",
            "vlmevalkit": "ImageMCQDataset", "fixed": "mmbench"}


def _present(value) -> bool:
    return value is not None and str(value) != "nan"


def image_hash(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for row, where in common.read_parquet(common.split_files(root, "dev", "MMBench"), limit):
        question = common.field(row, "question", where, str)
        hint = row.get("hint")
        text = (f"{hint}\n{question}" if _present(hint) else question) + " Options:"
        choices = {k: str(row[k]) for k in "ABCD" if _present(row.get(k))}
        text += "".join(f"\n{k}. {v}" for k, v in choices.items())
        image = common.decode_image(common.field(row, "image", where), where)
        source = str(row.get("source"))
        samples.append({
            "id": str(common.field(row, "index", where)),
            "image": image,
            "prompt": text + "\n" + common.MCQ_SUFFIX,
            "answer": common.field(row, "answer", where, str),
            "choices": choices,
            "index": int(row["index"]),
            "category": str(row.get("category")),
            "l2_category": str(row.get("l2-category")),
            "circular_key": f"{question} {image_hash(image)} {source}",
        })
    return samples


def _circular(records: Sequence[Mapping], values: Sequence[float | None],
              key) -> list[float | None]:
    """A group is 0 if any copy is wrong, None (judge) if any is undecided, else 1."""
    groups: dict[str, list[float | None]] = {}
    for rec, v in zip(records, values):
        groups.setdefault(key(rec), []).append(v)
    out = []
    for vs in groups.values():
        out.append(0.0 if any(v == 0.0 for v in vs) else None if None in vs else 1.0)
    return out


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = circular accuracy (%)."""
    harness = common.profile_name(profile)
    per_q = common.simple_score(records, harness, "mcq_letter", VARIANTS, common.mcq_fields,
                                keep_records=True)
    values = per_q.pop("record_scores")
    if harness in ("cambrian", "fixed"):
        groups = _circular(records, values, lambda r: str(r["circular_key"]))
    else:
        groups = _circular(records, values, lambda r: str(int(r["index"]) % 1_000_000))
    out = common.summary(groups, per_q["harness_errors"], accuracy=per_q["score"])
    out["n_groups"], out["n"] = out["n"], len(records)
    if keep_records:
        out["record_scores"] = values
    return out
