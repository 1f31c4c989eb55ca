"""V*Bench with guided visual search (extra; reported beside ``vstar``, in no group average).

The same items, prompts and scoring as ``vstar``, read from the same folder (``eval.roots.vstar``);
the runner decodes them with ``cambrian.tools.vstar_model.SearchDecoder`` (``SEARCH``): each
target is searched for in the high-resolution image, the answer sees the global view plus the
found crops, and each prediction record keeps its search trace under ``"search"``. Targets are the
``target_object`` list of the annotation JSON V*Bench ships beside each image
(``direct_attributes/<name>.json``), else the object names the question mentions
(``eval.vstar`` holds the search settings).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import fsspec

from cambrian.eval.benchmarks import common, vstar

NAME = "vstar_search"
GROUP = None
MAX_NEW_TOKENS = vstar.MAX_NEW_TOKENS
SOURCE = vstar.SOURCE
SEARCH = True  # the runner decodes with visual search
FOLDER = vstar.NAME  # reads vstar's folder


def load(root: str, *, limit: int | None = None) -> list[dict]:
    samples = vstar.load(root, limit=limit)
    path = common.find_files(root, ["test_questions.jsonl", "**/test_questions.jsonl"],
                             "V*Bench")[0]
    base = path.rsplit("/", 1)[0]
    rows = [row for row, _ in common.read_jsonl(path)][:len(samples)]
    for s, row in zip(samples, rows):
        s["image_file"] = row["image"]  # for drawing the trace (cambrian/results/trace.py)
        ann = f"{base}/{row['image'].rsplit('.', 1)[0]}.json"
        fs, p = fsspec.core.url_to_fs(ann)
        if fs.exists(p):
            with fsspec.open(ann, "rt") as fh:
                targets = json.load(fh).get("target_object")
            if targets:
                s["targets"] = [str(t) for t in targets]
    return samples


def score(records: Sequence[Mapping], profile: str = "cambrian", *,
          keep_records: bool = False) -> dict:
    """score = accuracy (%), as ``vstar``."""
    return vstar.score(records, profile, keep_records=keep_records)
