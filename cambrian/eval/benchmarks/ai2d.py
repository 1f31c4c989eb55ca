"""AI2D test, Cambrian's Knowledge group.

Data: the HF parquet export of ``lmms-lab/ai2d`` (columns question,
options (list), answer (option index as a string), image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common

NAME = "ai2d"
GROUP = "knowledge"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("lmms-lab/ai2d", ("data/test-*.parquet",))
VARIANTS = {p: "ai2d" for p in common.PROFILES}


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for i, (row, where) in enumerate(common.read_parquet(
            common.split_files(root, "test", "AI2D"), limit)):
        options = [str(o) for o in common.field(row, "options", where, list)]
        answer = str(common.field(row, "answer", where)).strip()
        if not answer.isdigit() or int(answer) >= len(options):
            raise common.DataFormatError(f"{where}: field 'answer' should be an option index "
                                         f"< {len(options)}, got {answer!r}")
        samples.append({
            "id": str(i),
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + common.format_options(options)
            + "\n" + common.MCQ_SUFFIX,
            "answer": chr(ord("A") + int(answer)),
            "choices": dict(zip(common.letters(len(options)), options)),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%)."""
    return common.simple_score(records, profile, "mcq_letter", VARIANTS, common.mcq_fields,
                               keep_records=keep_records)
