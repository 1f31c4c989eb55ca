"""The synthetic benchmark suite used by ``:runlocal``: one benchmark per Cambrian group.

Items come from ``cambrian/data/synthetic.py`` (eval split, disjoint from training images).
Multiple-choice items are scored by the option letter the answer starts with; short-answer items by
normalised exact match. Chance level = mean over items of 1 / (number of possible answers): the
options of a multiple-choice item, the kind's answer set of a short-answer one. Answers are
balanced within each kind and form, so answering from the question alone scores about that.
``score`` also reports each question kind (``kinds``: score, chance, n).
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
from PIL import Image

from cambrian.data import synthetic

_LETTER = re.compile(r"^\s*\(?([A-H])\b\)?")


def normalize(text: str) -> str:
    return text.strip().rstrip(".").strip().lower()


def correct(item: dict, prediction: str) -> bool:
    if item["format"] == "mc":
        m = _LETTER.match(prediction)
        return bool(m) and m.group(1) == item["answer"]
    return normalize(prediction) == normalize(item["answer"])


class SyntheticBenchmark:
    """Duck-typed like a benchmark module (NAME, GROUP, MAX_NEW_TOKENS, load, score)."""

    MAX_NEW_TOKENS = 8

    def __init__(self, group: str):
        self.GROUP = group
        self.NAME = f"synthetic_{group}"

    def load(self, root: str, *, limit: int | None = None) -> list[dict]:
        path = os.path.join(root, f"eval_{self.GROUP}.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"synthetic benchmark file missing: {path}")
        with open(path) as fh:
            items = json.load(fh)[: limit or None]
        out = []
        for it in items:
            img = np.asarray(Image.open(os.path.join(root, it["image"])).convert("RGB"))
            out.append({**it, "image": img})
        return out

    def score(self, records: list[dict], profile: str = "cambrian") -> dict:
        out = _score(records)
        kinds: dict[str, list[dict]] = {}
        for r in records:
            kinds.setdefault(r.get("kind", "?"), []).append(r)
        out["kinds"] = {k: _score(rs) for k, rs in sorted(kinds.items())}
        return out


def _score(records: list[dict]) -> dict:
    hits = [correct(r, r["prediction"]) for r in records]
    n = len(records)
    return {"score": 100.0 * sum(hits) / max(n, 1), "n": n,
            "chance": 100.0 * float(np.mean([r["chance"] for r in records])) if n else 0.0}


BENCHMARKS = {b.NAME: b for b in (SyntheticBenchmark(g) for g in synthetic.GROUPS)}


def root(cache_dir: str, sizes: dict | None = None) -> str:
    return synthetic.ensure(cache_dir, sizes)
