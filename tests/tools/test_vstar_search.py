"""Search mechanics against an oracle that scores crops by their pixels (the planted target's
colour), independent of the search code: descent, bounds, batching, triggers, determinism."""

import numpy as np
import pytest

from cambrian.tools import vstar

MAGENTA = np.array([255, 0, 255], np.uint8)


def plant(side: int, box, seed: int = 0) -> np.ndarray:
    """A grey noisy image with a magenta target filling ``box`` = [x0, y0, x1, y1]."""
    rng = np.random.default_rng(seed)
    img = rng.integers(100, 140, size=(side, side, 3)).astype(np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = MAGENTA
    return img


class Oracle:
    """Score = (share of the target's pixels in the crop) x (share of the crop it fills, capped at
    1 from 1/16 up): high only on a tight crop holding the whole target. Records call sizes."""

    def __init__(self, target_px: dict[str, int]):
        self.target_px, self.calls = target_px, []

    def __call__(self, crops, targets):
        self.calls.append(len(crops))
        out = []
        for c, t in zip(crops, targets):
            n = int(np.all(c == MAGENTA, axis=-1).sum())
            out.append(n / self.target_px[t] * min(1.0, 16 * n / (c.shape[0] * c.shape[1])))
        return np.asarray(out)


def settings(**kw):
    base = dict(threshold=0.9, max_depth=4, budget=100, overlap=0.25, min_size=8)
    return vstar.Settings(**{**base, **kw})


def test_quadrants_overlap_and_cover():
    kids = vstar.quadrants([0, 0, 400, 400], 0.25)
    assert kids == [[0, 0, 250, 250], [150, 0, 400, 250], [0, 150, 250, 400],
                    [150, 150, 400, 400]]
    # a target on the seam (190..210) is whole in a child
    assert any(k[0] <= 190 and k[2] >= 210 for k in kids)


def test_descends_to_the_planted_target_and_stops_at_threshold():
    box = [300, 60, 320, 80]  # 20 px in a 512 px image: 1/655 of it
    img = plant(512, box)
    oracle = Oracle({"t": 400})
    [[s]] = vstar.search_items([img], [["t"]], oracle, settings())
    tr = s.trace()
    assert tr["found"] and tr["score"] >= 0.9
    x0, y0, x1, y1 = tr["box"]
    assert x0 <= 300 and y0 <= 60 and x1 >= 320 and y1 >= 80  # holds the whole target
    # the crop is small: side 512 * (1.25 / 2) ** depth, and the score (>= 0.9) needs the target
    # to fill 1/16 of it, so 20 px target -> crop side <= 80 -> depth 4 (side 78)
    assert len(tr["steps"]) == 4 and (x1 - x0) == 78
    # each step moved into a child of the previous box, its best
    prev = [0, 0, 512, 512]
    for st in tr["steps"]:
        assert st["boxes"] == vstar.quadrants(prev, 0.25)
        assert st["chosen"] == int(np.argmax(st["scores"]))
        prev = st["boxes"][st["chosen"]]
    assert oracle.calls == [4, 4, 4, 4]


def test_bounds_depth_budget_min_size():
    img = plant(512, [300, 60, 320, 80])
    for kw, steps in [(dict(max_depth=2), 2), (dict(budget=8), 2), (dict(budget=3), 0),
                      (dict(min_size=200), 2)]:  # sides 320, 200, then 125 < 200
        [[s]] = vstar.search_items([img], [["t"]], Oracle({"t": 400}), settings(**kw))
        assert len(s.steps) == steps, kw
        assert not s.found and s.scored <= settings(**kw).budget
        assert (s.trace()["box"] is None) == (steps == 0)


def test_batched_across_items_and_targets_one_call_per_step():
    imgs = [plant(512, [300, 60, 320, 80], 0), plant(256, [10, 200, 30, 220], 1),
            plant(512, [100, 400, 140, 440], 2)]
    targets = [["t20"], ["t20", "t20"], ["t40"]]
    oracle = Oracle({"t20": 400, "t40": 1600})
    out = vstar.search_items(imgs, targets, oracle, settings())
    depths = [len(s.steps) for item in out for s in item]
    assert depths == [4, 3, 3, 3]  # 20 px in 512 / 256; 40 px in 512 -> crop <= 160
    # every step scores all pending searches' children at once
    assert oracle.calls == [16, 16, 16, 4]
    for item, img in zip(out, imgs):
        for s in item:  # the found crop holds the whole target
            assert s.found
            crop = vstar.crop(img, s.result)
            assert np.all(crop == MAGENTA, axis=-1).sum() == np.all(img == MAGENTA, axis=-1).sum()
    # deterministic: the same traces again
    again = vstar.search_items(imgs, targets, Oracle({"t20": 400, "t40": 1600}), settings())
    assert [s.trace() for i in again for s in i] == [s.trace() for i in out for s in i]


def test_when_unresolved_searches_only_targets_scoring_below_trigger():
    big = plant(128, [0, 0, 64, 64])  # the target fills a quarter: resolved on the global view
    small = plant(512, [300, 60, 320, 80])
    oracle = Oracle({"big": 64 * 64, "small": 400})
    out = vstar.search_items([big, small], [["big"], ["small"]], oracle, settings(),
                             mode="when_unresolved", trigger=0.5)
    assert oracle.calls[0] == 2  # the global views, in one call
    assert out[0][0].steps == [] and out[0][0].trace()["global_score"] == 1.0
    assert len(out[1][0].steps) == 4 and out[1][0].found
    off = vstar.search_items([small], [["small"]], oracle, settings(), mode="off")
    assert off[0][0].steps == []
    with pytest.raises(ValueError, match="eval.vstar.mode"):
        vstar.search_items([small], [["small"]], oracle, settings(), mode="sometimes")
