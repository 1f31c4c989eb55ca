"""The synthetic search task: small details in a large image that the global view cannot resolve.

Each scene is a ``SIDE``-pixel image (8x the 56-pixel runlocal towers) holding three small squares
of distinct colours (``OBJECT_PX`` pixels: 5 in the global view, where their colours show), each
with a centred dot of another colour (2 pixels in the global view: lost; 8-10 pixels in a crop of
a quarter of the image side). The question asks the colour of the dot on the object of one colour,
so answering needs a close look; the target is "the <colour> object". (Colours, not shapes: the
tiny :runlocal model learns colours in minutes, shapes not at this budget.)

``ensure(cache_dir)`` writes once, under ``cache_dir/vstar_synthetic/<VERSION>``:

* ``train.json`` + ``images/``: LLaVA records on crops at the search's scales: a caption (the
  squares wholly inside, with their dots where resolvable) and, in another record, asking for every
  colour "Is there a <colour> object in the image? Answer yes or no." (yes when the object lies
  inside the crop, no when it is outside; partly visible ones are not asked) and, on crops where
  an object is resolvable, the dot question as in the benchmark, in random order;
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

VERSION = "v5"
SIDE = 448
OBJECT_PX = (36, 44)
DOT = 0.45  # dot side / object side: 2 pixels in the global view, 8-10 in a depth-3 crop
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (230, 200, 30)}
SCALES = (1.0, 0.625, 0.39, 0.25)  # crop side / image side: the search's depths 0..3
RESOLVED = 0.39  # crops at most this fraction of the image show the dots clearly
PRESENCE = "Is there a {target} in the image? Answer yes or no."
DESCRIBE = "Describe the image briefly."
QUESTION = "What is the colour of the dot on the {target}?"
LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
SIZES = {"train": 1500, "eval": 60}  # scenes
_SEEDS = {"train": 11, "eval": 12}


def scene(rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    """A SIDE x SIDE image with three squares of distinct colours, each with a centred dot of
    another colour; each ``{"color", "dot", "box": [x0, y0, x1, y1]}``."""
    base = rng.integers(225, 256, size=3)
    noise = rng.integers(-8, 9, size=(SIDE, SIDE, 1))
    img = Image.fromarray(np.clip(base[None, None] + noise, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    objs: list[dict] = []
    for color in rng.choice(list(COLORS), size=3, replace=False):
        size = int(rng.integers(*OBJECT_PX))
        while True:  # keep objects apart, so a resolving crop holds one
            x, y = (int(v) for v in rng.integers(8, SIDE - size - 8, size=2))
            if all(abs(x - o["box"][0]) > 120 or abs(y - o["box"][1]) > 120 for o in objs):
                break
        dot = str(rng.choice([c for c in COLORS if c != color]))
        box, m = [x, y, x + size, y + size], int(size * (1 - DOT) / 2)
        d.rectangle(box, fill=COLORS[str(color)])
        d.rectangle([x + m, y + m, x + size - m, y + size - m], fill=COLORS[dot])
        objs.append({"color": str(color), "dot": dot, "box": box})
    return img, objs


def target(color: str) -> str:
    return f"{color} object"


def question(obj: dict) -> tuple[str, str]:
    """(V*Bench-style question text with options, gold letter): the dot's colour, among the
    three colours other than the object's."""
    options = [c for c in COLORS if c != obj["color"]]
    opts = "\n".join(f"({'ABC'[i]}) {c}" for i, c in enumerate(options))
    text = f"{QUESTION.format(target=target(obj['color']))}\n{opts}\n{LETTER_PROMPT}"
    return text, "ABC"[options.index(obj["dot"])]


def _inside(box, crop) -> float:
    """Fraction of ``box``'s area inside ``crop``."""
    w = max(0, min(box[2], crop[2]) - max(box[0], crop[0]))
    h = max(0, min(box[3], crop[3]) - max(box[1], crop[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


def _train_records(rng, img: Image.Image, objs: list[dict], i: int, root: str) -> list[dict]:
    """One record per crop at each scale, asking about every colour (dense supervision: a
    randomly initialised LLM learns to read the image from many answers per image)."""
    out = []
    for j, scale in enumerate(SCALES):
        side = int(SIDE * scale)
        # half the crops centred on an object (positives at every scale), half anywhere
        if rng.random() < 0.5:
            o = objs[int(rng.integers(len(objs)))]["box"]
            lo = [max(0, min(SIDE - side, o[k + 2] - side + 4)) for k in (0, 1)]
            hi = [max(lo[k], min(SIDE - side, o[k] - 4)) for k in (0, 1)]
            x, y = (int(rng.integers(lo[k], hi[k] + 1)) for k in (0, 1))
        else:
            x, y = (int(v) for v in rng.integers(0, SIDE - side + 1, size=2))
        box = [x, y, x + side, y + side]
        qas = []
        for color in COLORS:
            obj = next((o for o in objs if o["color"] == color), None)
            frac = _inside(obj["box"], box) if obj else 0.0
            if frac in (0.0, 1.0):  # partly visible: neither answer is right
                qas.append((PRESENCE.format(target=target(color)), "Yes" if frac else "No"))
            if frac == 1.0 and scale <= RESOLVED:
                qas.append(question(obj))
        rng.shuffle(qas)
        # a caption first: many answer tokens that depend on the image teach a randomly
        # initialised LLM to read the visual tokens (yes/no answers alone do not)
        seen = sorted((o for o in objs if _inside(o["box"], box) == 1.0), key=lambda o: o["box"])
        caption = ", ".join(f"a {o['color']} square" + (f" with a {o['dot']} dot"
                                                        if scale <= RESOLVED else "")
                            for o in seen)
        caption = (caption[0].upper() + caption[1:] if caption else "Nothing") + "."
        rel = f"images/train_{i:05d}_{j}.png"
        img.crop(box).save(os.path.join(root, rel), compress_level=1)
        # in a record of its own: the questions cannot be answered from the caption's text
        for k, turns in enumerate(([(DESCRIBE, caption)], qas)):
            conv = []
            for t, (q, a) in enumerate(turns):
                conv += [{"from": "human", "value": ("<image>\n" if t == 0 else "") + q},
                         {"from": "gpt", "value": a}]
            out.append({"id": f"train_{i:05d}_{j}_{k}", "image": rel, "conversations": conv})
    return out


def _eval_item(rng, img: Image.Image, objs: list[dict], i: int, bench: str) -> dict:
    obj = objs[int(rng.integers(len(objs)))]
    name = f"direct_attributes/sa_{i:05d}"
    img.save(os.path.join(bench, name + ".png"), compress_level=1)
    text, letter = question(obj)
    x0, y0, x1, y1 = obj["box"]
    with open(os.path.join(bench, name + ".json"), "w") as fh:
        json.dump({"target_object": [target(obj["color"])], "bbox": [[x0, y0, x1 - x0, y1 - y0]],
                   "question": text.split("\n")[0]}, fh)
    return {"image": name + ".png", "text": text, "category": "direct_attributes",
            "question_id": i, "label": letter}


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
    with open(os.path.join(tmp, "train.json"), "w") as fh:
        json.dump(records, fh)
    rng = np.random.default_rng(_SEEDS["eval"])
    items = [_eval_item(rng, *scene(rng), i, bench) for i in range(sizes["eval"])]
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
