"""End to end: the :runlocal model trained on the synthetic search task finds the small target the
global view cannot resolve, and answers better with search than from the global view alone."""

import json
import os

import pytest

from cambrian import config as C
from cambrian import train
from cambrian.tools import vstar_data

STEPS = 1000  # the :runlocal config's own


def _contains(box, target) -> bool:
    """Whether crop ``box`` [x0, y0, x1, y1] holds the whole ``target`` [x, y, w, h]."""
    x, y, w, h = target
    return box[0] <= x and box[1] <= y and box[2] >= x + w and box[3] >= y + h


@pytest.mark.slow
def test_search_finds_the_small_target_and_beats_the_global_view(tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("CAMBRIAN_CACHE", cache)
    root = vstar_data.ensure(cache)
    cfg = C.load("tools/vstar.py:runlocal", [f"stages.stage2.steps={STEPS}"])
    assert cfg.eval.roots.vstar == f"{root}/bench"
    rep = train.run(cfg, str(tmp_path / "run"))
    scores = {b: rep["benchmarks"][b]["score"] for b in ("vstar", "vstar_search")}
    with open(tmp_path / "run" / "predictions" / "vstar_search.jsonl") as fh:
        recs = [json.loads(x) for x in fh]
    found = 0
    for r in recs:
        with open(os.path.join(root, "bench", r["image_file"].rsplit(".", 1)[0] + ".json")) as fh:
            gold = json.load(fh)["bbox"][0]
        [tr] = r["search"]
        found += _contains(tr["box"], gold)
    print(f"global view {scores['vstar']:.1f}%, with search {scores['vstar_search']:.1f}%, "
          f"target found in {found}/{len(recs)} (chance 33.3%)")
    # the final crop (1/4 of the image side) holds the whole target: the search found it
    assert found >= 0.8 * len(recs)
    assert scores["vstar_search"] >= scores["vstar"] + 20
