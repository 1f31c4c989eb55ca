"""MathVista testmini, Cambrian's Knowledge group.

Data: the HF parquet export of ``AI4Math/MathVista`` (columns pid, query (question with hint and
choices), decoded_image, choices, answer, question_type ("multi_choice" / "free_form"),
answer_type, precision, metadata.category). Cambrian asks multiple-choice items for reasoning,
maps the gold choice text to its letter, and compares without extraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval import metrics
from cambrian.eval.benchmarks import common

NAME = "mathvista"
GROUP = "knowledge"
MAX_NEW_TOKENS = 512
SOURCE = common.Source("AI4Math/MathVista", ("data/testmini-*.parquet",))
MC = "multi_choice"
REASONING_SUFFIX = "First show your reasoning process and then give the final answer."


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    for row, where in common.read_parquet(common.split_files(root, "testmini", "MathVista"),
                                          limit):
        qtype = common.field(row, "question_type", where, str)
        answer = str(common.field(row, "answer", where))
        choices: dict[str, str] = {}
        if qtype == MC:
            options = [str(c) for c in common.field(row, "choices", where, list)]
            choices = dict(zip(common.letters(len(options)), options))
            letter = {text: k for k, text in choices.items()}.get(answer)
            if letter is None:
                raise common.DataFormatError(f"{where}: answer {answer!r} is not one of the "
                                             f"choices {options}")
            answer = letter
        suffix = REASONING_SUFFIX if qtype == MC else common.SHORT_SUFFIX
        metadata = row.get("metadata") or {}
        samples.append({
            "id": str(common.field(row, "pid", where)),
            "image": common.decode_image(common.field(row, "decoded_image", where), where),
            "prompt": common.field(row, "query", where, str) + "\n" + suffix,
            "answer": answer,
            "question_type": qtype,
            "choices": choices,
            "answer_type": common.field(row, "answer_type", where, str),
            # as stored (a float, or None): lmms-eval rounds with it as it is
            "precision": row.get("precision"),
            "category": str(metadata.get("category")),
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%); lmms-eval / VLMEvalKit defer non-trivial answers to GPT (counted
    wrong, see "deferred")."""
    harness = common.profile_name(profile)
    mc = metrics.scorer("mcq_letter", harness, "mathvista")
    free = metrics.scorer("mathvista_free", harness)

    def pick(rec):
        if rec["question_type"] == MC:
            return mc, common.mcq_fields(rec)
        # predictions saved before answer_type was kept: lmms-eval / VLMEvalKit defer them
        return free, {"answer": str(rec["answer"]), "answer_type": rec.get("answer_type"),
                      "precision": rec.get("precision", 0)}

    values, errors = common.apply(records, pick)
    out = common.summary(values, errors, by_category=common.by_key(records, values, "category"))
    if keep_records:
        out["record_scores"] = values
    return out
