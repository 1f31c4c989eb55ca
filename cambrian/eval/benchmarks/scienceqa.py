"""ScienceQA-IMG (test questions with an image), Cambrian's Knowledge group.

Data: the HF parquet export of ``derek-thomas/ScienceQA`` (columns image
(None for text-only questions), question, choices (list), answer (index), hint, grade, subject).
Cambrian runs the whole test split but reports ``multimodal_acc`` over the image questions
(text-only ones get an empty output); only those are loaded here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "scienceqa"
GROUP = "knowledge"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("derek-thomas/ScienceQA", ("data/test-*.parquet",))
VARIANTS = {"cambrian": "scienceqa", "lmms-eval": "scienceqa_img", "vlmevalkit": "scienceqa",
            "fixed": "scienceqa"}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "ScienceQA"))):
        if row.get("image") is None:
            continue
        options = [str(c) for c in common.field(row, "choices", where, list)]
        answer = common.field(row, "answer", where, int)
        if not 0 <= answer < len(options):
            raise common.DataFormatError(f"{where}: answer index {answer} outside the "
                                         f"{len(options)} choices")
        hint, question = row.get("hint") or "", common.field(row, "question", where, str)
        text = f"{hint} {question}" if hint else question
        samples.append({
            "id": str(i),
            "image": common.decode_image(row["image"], where),
            "prompt": text + common.format_options(options) + "\n" + common.LETTER_ONLY_SUFFIX,
            "answer": chr(ord("A") + answer),
            "choices": dict(zip(common.letters(len(options)), options)),
            "category": str(row.get("subject")),
        })
        if limit is not None and len(samples) >= limit:
            break
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%) over questions with an image (Cambrian's ``multimodal_acc``)."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               by="category", keep_records=keep_records)
