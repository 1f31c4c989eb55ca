"""MME (perception + cognition yes/no pairs), Cambrian's General group: MME-P, max 2000.

Data: the HF parquet export of ``lmms-lab/MME`` (columns question_id =
image path shared by an image's two questions, question (ends " Please answer yes or no."),
answer Yes/No, category, image). Keep the file order: Cambrian pairs consecutive lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import common
from cambrian.eval.metrics import mme_pair

NAME = "mme"
GROUP = "general"
MAX_NEW_TOKENS = 32
SOURCE = common.Source("lmms-lab/MME", ("data/test-*.parquet",))


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = []
    rows = common.read_parquet(common.split_files(root, "test", "MME"), limit)
    for i, (row, where) in enumerate(rows):
        qid = str(common.field(row, "question_id", where))
        samples.append({
            "id": f"{qid}#{i}",
            "image": common.decode_image(common.field(row, "image", where), where),
            "prompt": common.field(row, "question", where, str) + "\n" + common.SHORT_SUFFIX,
            "answer": common.field(row, "answer", where, str),
            "category": common.field(row, "category", where, str),
            "question_id": qid,
        })
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = Perception (sum of the 10 perception categories, 0-2000)."""
    harness = common.profile_name(profile)
    items = [mme_pair.Item(str(r["prediction"]), str(r["answer"]), str(r["category"]),
                             str(r["question_id"])) for r in records]
    cats = mme_pair.category_scores(items, harness)
    out = {"score": mme_pair.perception(cats), "n": len(items),
           "perception": mme_pair.perception(cats), "cognition": mme_pair.cognition(cats),
           "categories": cats}
    if keep_records:
        out["record_scores"] = [float(mme_pair.question_correct(it, harness)) for it in items]
    return out
