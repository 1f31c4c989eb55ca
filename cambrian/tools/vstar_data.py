"""The synthetic search task: a small target in a large image that the global view cannot resolve.

Each scene is a ``SIDE``-pixel image (8x the 56-pixel runlocal towers): a plain grey background
with light noise, a few larger squares of neutral grey shades (distractors) and one small square of
a saturated colour (``TARGET_PX`` pixels: 3 in the 56-pixel global view, a small fraction of its
14-pixel token cell, so its colour does not show; about one token cell in a depth-3 crop of the
search). The question asks the small square's colour (four options, balanced); the target is "small
square". (One object filling one token cell, answered by its colour: what the tiny frozen random
:runlocal tower passes on, and the :runlocal model learns in minutes.)

``ensure(cache_dir)`` writes once, under ``cache_dir/vstar_synthetic/<VERSION>-...``:

* ``train.json`` + ``images/``: LLaVA records on crops at the search's scales, one question each:
  "Is there a small square in the image? Answer yes or no." (yes when the square lies inside the
  crop, no when it is wholly outside; balanced) and, on crops small enough to resolve it, the colour
  question as in the benchmark; shuffled with the embedded synthetic ``mix`` (linked in as
  ``synthetic/``), whose dense answers on large shapes teach the LLM to read the visual tokens;
* ``bench/``: the eval items in V*Bench's layout (``test_questions.jsonl``,
  ``direct_attributes/<name>.png`` with ``<name>.json`` holding ``target_object`` and ``bbox``),
  read by the ``vstar`` and ``vstar_search`` benchmarks (``eval.roots.vstar``).

    python -m cambrian.tools.vstar_data   # then: launch/tpu.py --config tools/vstar.py:runlocal
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, ImageDraw

from cambrian.data import synthetic
from cambrian.data.synthetic import COLORS, LETTER_PROMPT

VERSION = "v7"
SIDE = 448
TARGET_PX = (28, 36)  # 3-4 pixels in the global view, 14-18 (a token cell) in a depth-3 crop
DISTRACTOR_PX = (40, 90)
DISTRACTORS = (3, 6)
SCALES = (0.625, 0.39, 0.25)  # crop side / image side: the search's depths 1..3
RESOLVED = 0.39  # crops at most this fraction of the image show the square's colour
TARGET = "small square"
PRESENCE = "Is there a {target} in the image? Answer yes or no."
QUESTION = "What is the colour of the {target}?"
SIZES = {"train": 1500, "eval": 60}  # scenes
_SEEDS = {"train": 11, "eval": 12}


def _apart(box, others, gap: int = 6) -> bool:
    return all(box[2] + gap <= o[0] or o[2] + gap <= box[0] or box[3] + gap <= o[1]
               or o[3] + gap <= box[1] for o in others)


def scene(rng: np.random.Generator, color: str | None = None) -> tuple[Image.Image, dict]:
    """A SIDE x SIDE grey image with grey distractor squares and one small coloured square
    (``color``, else drawn at random); returns it and ``{"color", "box": [x0, y0, x1, y1]}``."""
    base = int(rng.integers(140, 181))
    noise = rng.integers(-6, 7, size=(SIDE, SIDE, 1))
    img = Image.fromarray(np.clip(base + noise, 0, 255).repeat(3, axis=2).astype(np.uint8))
    d = ImageDraw.Draw(img)
    boxes: list[list[int]] = []
    for _ in range(int(rng.integers(DISTRACTORS[0], DISTRACTORS[1] + 1))):
        size = int(rng.integers(*DISTRACTOR_PX))
        x, y = (int(v) for v in rng.integers(0, SIDE - size, size=2))
        if _apart([x, y, x + size, y + size], boxes):
            shade = int(rng.integers(60, 231))
            d.rectangle([x, y, x + size - 1, y + size - 1], fill=(shade,) * 3)
            boxes.append([x, y, x + size, y + size])
    color = color or str(rng.choice(list(COLORS)))
    size = int(rng.integers(*TARGET_PX))
    while True:  # clear of the distractors, so a crop around it shows it alone
        x, y = (int(v) for v in rng.integers(4, SIDE - size - 4, size=2))
        box = [x, y, x + size, y + size]
        if _apart(box, boxes):
            break
    d.rectangle([x, y, x + size - 1, y + size - 1], fill=COLORS[color])
    return img, {"color": color, "box": box}


def question() -> tuple[str, list[str]]:
    """(V*Bench-style question text with options, the options in letter order)."""
    options = list(COLORS)
    opts = "\n".join(f"({'ABCD'[i]}) {c}" for i, c in enumerate(options))
    return f"{QUESTION.format(target=TARGET)}\n{opts}\n{LETTER_PROMPT}", options


def _inside(box, crop) -> float:
    """Fraction of ``box``'s area inside ``crop``."""
    w = max(0, min(box[2], crop[2]) - max(box[0], crop[0]))
    h = max(0, min(box[3], crop[3]) - max(box[1], crop[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


def _crop(rng, box: list[int], side: int, want: float) -> list[int] | None:
    """A random ``side``-pixel crop holding ``box`` wholly (``want`` 1) or not at all (0)."""
    for _ in range(100):
        if want:
            lo = [max(0, box[k + 2] - side) for k in (0, 1)]
            hi = [min(SIDE - side, box[k]) for k in (0, 1)]
            x, y = (int(rng.integers(lo[k], hi[k] + 1)) for k in (0, 1))
        else:
            x, y = (int(v) for v in rng.integers(0, SIDE - side + 1, size=2))
        crop = [x, y, x + side, y + side]
        if _inside(box, crop) == want:
            return crop
    return None


def _train_records(rng, img: Image.Image, obj: dict, i: int, root: str) -> list[dict]:
    """Per scale, a presence record (yes or no at even odds) and, where the colour is resolved,
    a colour record on another crop holding the square."""
    out = []
    text, options = question()
    for j, scale in enumerate(SCALES):
        side = int(SIDE * scale)
        jobs = [("p", float(rng.random() < 0.5))] + ([("c", 1.0)] if scale <= RESOLVED else [])
        for kind, want in jobs:
            crop = _crop(rng, obj["box"], side, want)
            if crop is None:  # no crop of this side misses the square
                continue
            if kind == "p":
                q, a = PRESENCE.format(target=TARGET), "Yes" if want else "No"
            else:
                q, a = text, "ABCD"[options.index(obj["color"])]
            rel = f"images/train_{i:05d}_{j}{kind}.png"
            img.crop(crop).save(os.path.join(root, rel), compress_level=1)
            out.append({"id": f"train_{i:05d}_{j}{kind}", "image": rel, "conversations": [
                {"from": "human", "value": "<image>\n" + q}, {"from": "gpt", "value": a}]})
    return out


def _eval_item(img: Image.Image, obj: dict, i: int, bench: str) -> dict:
    name = f"direct_attributes/sa_{i:05d}"
    img.save(os.path.join(bench, name + ".png"), compress_level=1)
    text, options = question()
    x0, y0, x1, y1 = obj["box"]
    with open(os.path.join(bench, name + ".json"), "w") as fh:
        json.dump({"target_object": [TARGET], "bbox": [[x0, y0, x1 - x0, y1 - y0]],
                   "question": text.split("\n")[0]}, fh)
    return {"image": name + ".png", "text": text, "category": "direct_attributes",
            "question_id": i, "label": "ABCD"[options.index(obj["color"])]}


def root(cache_dir: str, sizes: dict[str, int] | None = None) -> str:
    """Where ``ensure`` writes the task."""
    sizes = {**SIZES, **(sizes or {})}
    return os.path.join(cache_dir, "vstar_synthetic",
                        f"{VERSION}-train{sizes['train']}-eval{sizes['eval']}")


def ensure(cache_dir: str, sizes: dict[str, int] | None = None) -> str:
    """Generates the task under ``root(cache_dir, sizes)`` once; returns that folder."""
    sizes = {**SIZES, **(sizes or {})}
    root_ = root(cache_dir, sizes)
    if os.path.exists(os.path.join(root_, "DONE")):
        return root_
    tmp = root_ + f".tmp{os.getpid()}"
    bench = os.path.join(tmp, "bench")
    for sub in ("images", "bench/direct_attributes", "bench/relative_position"):
        os.makedirs(os.path.join(tmp, sub), exist_ok=True)
    rng = np.random.default_rng(_SEEDS["train"])
    records = []
    for i in range(sizes["train"]):
        records += _train_records(rng, *scene(rng), i, tmp)
    # + the embedded synthetic mix (captions and questions on large shapes): its dense answers
    # teach a randomly initialised LLM to read the visual tokens, which the search task builds on
    mix = synthetic.ensure(cache_dir)
    os.symlink(os.path.abspath(mix), os.path.join(tmp, "synthetic"))
    with open(os.path.join(mix, "mix.json")) as fh:
        records += [{**r, "image": "synthetic/" + r["image"]} for r in json.load(fh)]
    rng.shuffle(records)
    with open(os.path.join(tmp, "train.json"), "w") as fh:
        json.dump(records, fh)
    rng = np.random.default_rng(_SEEDS["eval"])
    colors = list(COLORS)  # each colour equally often
    items = [_eval_item(*scene(rng, colors[i % len(colors)]), i, bench)
             for i in range(sizes["eval"])]
    with open(os.path.join(bench, "test_questions.jsonl"), "w") as fh:
        fh.writelines(json.dumps(it) + "\n" for it in items)
    with open(os.path.join(bench, "relative_position", "README"), "w") as fh:
        fh.write("The synthetic search task has direct-attribute items only.\n")
    with open(os.path.join(tmp, "DONE"), "w") as fh:
        fh.write(VERSION)
    try:
        os.rename(tmp, root_)
    except OSError:  # another process finished first
        pass
    return root_


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", default=os.path.expanduser(
        os.environ.get("CAMBRIAN_CACHE", "~/.cache/cambrian")))
    print(ensure(p.parse_args().cache))
