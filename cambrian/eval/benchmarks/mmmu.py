"""MMMU validation, Cambrian's Knowledge group.

Data: the HF parquet export of ``lmms-lab/MMMU`` (columns id,
question, options (a Python-list string), answer, question_type ("multiple-choice" / "open"),
image_1..image_7). As in Cambrian only ``image_1`` is fed and ``<image n>`` tags are removed; the
options are read with Cambrian's regex ``'(.*?)'``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cambrian.eval import metrics
from cambrian.eval.benchmarks import common

NAME = "mmmu"
GROUP = "knowledge"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/MMMU", ("data/validation-*.parquet",))
MC = "multiple-choice"
MC_VARIANTS = {"cambrian": "mmmu", "lmms-eval": "mmmu_val", "vlmevalkit": "mmmu",
               "fixed": "mmmu"}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for row, where in common.read_parquet(common.split_files(root, "validation", "MMMU"), limit):
        qtype = common.field(row, "question_type", where, str)
        text = common.field(row, "question", where, str)
        choices: dict[str, str] = {}
        if qtype == MC:
            options = re.findall(r"'(.*?)'", common.field(row, "options", where, str))
            choices = dict(zip(common.letters(len(options)), options))
            text += " Options:" + common.format_options(options) + "\n" + common.MCQ_SUFFIX
        else:
            text += "\n" + common.SHORT_SUFFIX
        image = row.get("image_1")
        # Cambrian strips after prefixing the image token, so leading whitespace survives.
        text = re.sub(r"<image \d+>", "", text)
        text = text.rstrip() if image is not None else text.strip()
        sample_id = common.field(row, "id", where, str)
        samples.append({
            "id": sample_id,
            "image": None if image is None else common.decode_image(image, where),
            "prompt": text,
            "answer": common.field(row, "answer", where, str),
            "question_type": qtype,
            "choices": choices,
            "category": sample_id.split("_")[1] if "_" in sample_id else "",
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) over multiple-choice and open questions."""
    harness = common.profile_name(profile)
    mc = metrics.scorer("mcq_letter", harness, MC_VARIANTS[harness])
    open_ = metrics.scorer("mmmu_open", harness)

    def pick(rec):
        if rec["question_type"] == MC:
            return mc, common.mcq_fields(rec)
        return open_, {"references": [str(rec["answer"])]}

    values, errors = common.apply(records, pick)
    out = common.summary(values, errors, by_category=common.by_key(records, values, "category"))
    if keep_records:
        out["record_scores"] = values
    return out
