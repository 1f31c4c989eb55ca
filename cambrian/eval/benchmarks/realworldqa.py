"""RealWorldQA (765 items), Cambrian's Vision-Centric group.

Data: the HF parquet export of ``lmms-lab/RealWorldQA`` (columns image,
question (already ends with its answer-format instruction; multiple-choice ones list "A. x"
options), answer (a letter, or a short answer)). The prompt is the question as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval import metrics
from cambrian.eval.benchmarks import common

NAME = "realworldqa"
GROUP = "vision_centric"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/RealWorldQA", ("data/test-*.parquet",))


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "RealWorldQA"), limit)):
        question = common.field(row, "question", where, str)
        samples.append({
            "id": str(i),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": question,
            "answer": str(common.field(row, "answer", where)).strip(),
            "choices": common.options_in_text(question),
        })
    return samples


def is_letter_item(rec: Mapping) -> bool:
    answer = str(rec["answer"])
    return len(answer) == 1 and answer.isupper() and (answer in rec["choices"]
                                                       or answer in "ABCD")


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%)."""
    harness = common.profile_name(profile)
    mc = metrics.scorer("mcq_letter", harness, "realworldqa")
    short = metrics.scorer("short_answer", harness, "realworldqa")

    def pick(rec):
        if is_letter_item(rec):
            return mc, common.mcq_fields(rec)
        return short, {"references": [str(rec["answer"])]}

    values, errors = common.apply(records, pick)
    out = common.summary(values, errors)
    if keep_records:
        out["record_scores"] = values
    return out
