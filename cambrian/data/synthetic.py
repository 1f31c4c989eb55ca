"""The embedded synthetic dataset: procedurally drawn images with questions in Cambrian's 4 groups.

Everything is generated with PIL from fixed seeds, written in the LLaVA conversation JSON format
with PNG files, and read back through the same loader as real data. Splits:

* ``align``  -- captions (stage-1 alignment data),
* ``train``  -- multi-turn instruction data covering every question kind,
* ``mix``    -- ``align`` + ``train`` (stage 2 of ``:runlocal``: with a randomly initialised LLM the
  dense caption supervision is what teaches it to read the visual tokens),
* ``eval``   -- one benchmark per group (``general``, ``knowledge``, ``ocr_chart``,
  ``vision_centric``), multiple-choice and short-answer items.

Each split draws from its own seed stream, and eval images are rejected if their content hash
occurs in a training split, so train and eval never overlap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

VERSION = "v4"
SIZE = 128
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
SIDES = {"circle": "0", "square": "4", "triangle": "3"}
WARM = {"red": "warm", "yellow": "warm", "green": "cool", "blue": "cool"}
WORDS = ("CAT", "DOG", "SUN", "BOX", "CAR", "HAT", "PEN", "MAP")
_CANONICAL = [*COLORS, *SHAPES, *WORDS, "0", "1", "2", "3", "4", "5", "left", "right", "warm",
              "cool"]
LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
SHORT_PROMPT = "Answer the question using a single word or phrase."
GROUPS = ("general", "knowledge", "ocr_chart", "vision_centric")
SPLIT_SIZES = {"align": 3000, "train": 6000, "eval": 120}  # eval: per group
_SEEDS = {"align": 1, "train": 2, "eval": 3}


@dataclasses.dataclass
class Scene:
    image: Image.Image
    facts: dict


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw_shape(d: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], color) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    else:
        d.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=color)


def _background(rng: np.random.Generator, w: int = SIZE, h: int = SIZE) -> Image.Image:
    base = rng.integers(225, 256, size=3)
    noise = rng.integers(-8, 9, size=(h, w, 1))
    return Image.fromarray(np.clip(base[None, None] + noise, 0, 255).astype(np.uint8))


def scene_shapes(rng: np.random.Generator, n: int) -> Scene:
    """n shapes of distinct colours at distinct horizontal slots."""
    img = _background(rng)
    d = ImageDraw.Draw(img)
    colors = list(rng.choice(list(COLORS), size=n, replace=False))
    slots = sorted(rng.choice(4, size=n, replace=False))
    rng.shuffle(slots)
    objs = []
    for color, slot in zip(colors, slots):
        size = int(rng.integers(18, 34))
        cx = 16 + slot * 32
        cy = int(rng.integers(size // 2 + 4, SIZE - size // 2 - 4))
        shape = str(rng.choice(SHAPES))
        box = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
        _draw_shape(d, shape, box, COLORS[color])
        objs.append({"color": color, "shape": shape, "x": cx, "y": cy, "size": size})
    return Scene(img, {"kind": "shapes", "objects": objs})


def scene_word(rng: np.random.Generator) -> Scene:
    img = _background(rng)
    d = ImageDraw.Draw(img)
    word = str(rng.choice(WORDS))
    font = _font(int(rng.integers(34, 42)))
    l, t, r, b = d.textbbox((0, 0), word, font=font)
    x = int(rng.integers(2, max(3, SIZE - (r - l) - 2)))
    y = int(rng.integers(2, max(3, SIZE - (b - t) - 2))) - t
    d.text((x, y), word, fill=(20, 20, 20), font=font)
    return Scene(img, {"kind": "word", "word": word})


def scene_bars(rng: np.random.Generator) -> Scene:
    """A bar chart on a non-square canvas (exercises pad-to-square)."""
    h = 96
    img = _background(rng, SIZE, h)
    d = ImageDraw.Draw(img)
    colors = list(rng.choice(list(COLORS), size=3, replace=False))
    heights = rng.choice(np.arange(15, 86, 10), size=3, replace=False)
    for i, (c, bh) in enumerate(zip(colors, heights)):
        x0 = 14 + i * 38
        d.rectangle((x0, h - 4 - int(bh), x0 + 26, h - 4), fill=COLORS[c])
    return Scene(img, {"kind": "bars", "colors": colors, "heights": [int(x) for x in heights]})


# ------------------------------------------------------------------------------- questions


def _mc(rng, question: str, options: list[str], answer: str) -> dict:
    # Options keep one canonical order (colours as in COLORS, counts ascending, ...), so the letter
    # is a function of the answer: the suite checks the pipeline end to end, not option reading.
    options = sorted(options, key=_CANONICAL.index)
    letters = "ABCDEFGH"[: len(options)]
    text = question + "\n" + "\n".join(f"({l}) {o}" for l, o in zip(letters, options))
    letter = letters[options.index(answer)]
    return {"prompt": f"{text}\n{LETTER_PROMPT}", "answer": letter, "format": "mc",
            "choices": letters, "chance": 1.0 / len(options)}


def _sa(question: str, answer: str, vocab: tuple[str, ...]) -> dict:
    return {"prompt": f"{question}\n{SHORT_PROMPT}", "answer": answer, "format": "short",
            "chance": 1.0 / len(vocab)}


def _both(rng, question: str, options, answer: str) -> list[dict]:
    """The question in both forms: multiple choice over ``options`` and short answer."""
    return [_mc(rng, question, list(options), answer), _sa(question, answer, tuple(options))]


def questions(scene: Scene, group: str, rng: np.random.Generator) -> list[dict]:
    """All questions of ``group`` that the scene supports (possibly none), each kind in both
    the multiple-choice and the short-answer form."""
    f, out = scene.facts, []
    if f["kind"] == "shapes":
        objs = f["objects"]
        one = objs[0]
        if group == "general" and len(objs) == 1:
            out += _both(rng, "What colour is the shape?", COLORS, one["color"])
            out += _both(rng, "What shape is shown?", SHAPES, one["shape"])
        if group == "knowledge" and len(objs) == 1:
            out += _both(rng, "How many sides does the shape have?", ["0", "3", "4", "5"],
                         SIDES[one["shape"]])
            out += _both(rng, "Is the colour of the shape warm or cool?", ["warm", "cool"],
                         WARM[one["color"]])
        if group == "vision_centric":
            out += _both(rng, "How many shapes are there?", ["1", "2", "3", "4"], str(len(objs)))
            if len(objs) >= 2:
                a, b = objs[0], objs[1]
                out += _both(rng, f"Is the {a['color']} shape to the left or to the right of the "
                             f"{b['color']} shape?", ["left", "right"],
                             "left" if a["x"] < b["x"] else "right")
                if a["size"] != b["size"]:
                    out += _both(rng, f"Which is bigger, the {a['color']} shape or the "
                                 f"{b['color']} shape?", [a["color"], b["color"]],
                                 a["color"] if a["size"] > b["size"] else b["color"])
    elif f["kind"] == "word" and group == "ocr_chart":
        opts = [f["word"]] + [w for w in WORDS if w != f["word"]][:3]
        out.append(_mc(rng, "Which word is written in the image?", opts, f["word"]))
        out.append(_sa("Which word is written in the image?", f["word"], WORDS))
    elif f["kind"] == "bars" and group == "ocr_chart":
        top = f["colors"][int(np.argmax(f["heights"]))]
        low = f["colors"][int(np.argmin(f["heights"]))]
        out += _both(rng, "What is the colour of the tallest bar?", f["colors"], top)
        out += _both(rng, "What is the colour of the shortest bar?", f["colors"], low)
    return out


def caption(scene: Scene) -> str:
    f = scene.facts
    if f["kind"] == "shapes":
        parts = [f"a {o['color']} {o['shape']}" for o in sorted(f["objects"], key=lambda o: o["x"])]
        return "From left to right: " + ", ".join(parts) + "."
    if f["kind"] == "word":
        return f"The word {f['word']} written in dark letters."
    cols = ", ".join(f"{c} ({h})" for c, h in zip(f["colors"], f["heights"]))
    return f"A bar chart with three bars: {cols}."


def random_scene(rng: np.random.Generator, group: str | None = None) -> Scene:
    kinds = {"general": ["one"], "knowledge": ["one"], "vision_centric": ["many"],
             "ocr_chart": ["word", "bars"], None: ["one", "many", "word", "bars"]}[group]
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "one":
        return scene_shapes(rng, 1)
    if kind == "many":
        return scene_shapes(rng, int(rng.integers(1, 5)))
    return scene_word(rng) if kind == "word" else scene_bars(rng)


# ------------------------------------------------------------------------------- writing


def _image_hash(img: Image.Image) -> str:
    return hashlib.sha1(np.asarray(img).tobytes()).hexdigest()


def _save(img: Image.Image, root: str, name: str) -> str:
    rel = f"images/{name}.png"
    img.save(os.path.join(root, rel), compress_level=1)  # fast; the files are regenerated anyway
    return rel


def generate_split(split: str, root: str, n: int | None = None, seen: set[str] | None = None):
    """Writes ``root/<split>.json`` (LLaVA format) and its images; returns (records, hashes)."""
    rng = np.random.default_rng(_SEEDS[split])
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    n = n or SPLIT_SIZES[split]
    records, hashes = [], set()
    if split == "eval":
        by_group = {}
        for group in GROUPS:
            items = []
            while len(items) < n:
                scene = random_scene(rng, group)
                h = _image_hash(scene.image)
                qs = questions(scene, group, rng)
                if not qs or h in (seen or set()) or h in hashes:
                    continue
                hashes.add(h)
                q = qs[int(rng.integers(len(qs)))]
                rel = _save(scene.image, root, f"eval_{group}_{len(items):05d}")
                items.append({"id": f"{group}_{len(items):05d}", "image": rel, **q})
            by_group[group] = items
            with open(os.path.join(root, f"eval_{group}.json"), "w") as fh:
                json.dump(items, fh)
        return by_group, hashes
    for i in range(n):
        scene = random_scene(rng)
        hashes.add(_image_hash(scene.image))
        rel = _save(scene.image, root, f"{split}_{i:06d}")
        if split == "align":
            conv = [{"from": "human", "value": "<image>\nDescribe the image briefly."},
                    {"from": "gpt", "value": caption(scene)}]
        else:
            qs = [q for g in GROUPS for q in questions(scene, g, rng)]
            rng.shuffle(qs)
            conv = []
            for j, q in enumerate(qs[:3]):
                prompt = ("<image>\n" if j == 0 else "") + q["prompt"]
                conv += [{"from": "human", "value": prompt}, {"from": "gpt", "value": q["answer"]}]
        records.append({"id": f"{split}_{i:06d}", "image": rel, "conversations": conv})
    with open(os.path.join(root, f"{split}.json"), "w") as fh:
        json.dump(records, fh)
    return records, hashes


def ensure(cache_dir: str, sizes: dict[str, int] | None = None) -> str:
    """Generates the dataset under ``cache_dir/synthetic/<version>`` once; returns that root."""
    sizes = {**SPLIT_SIZES, **(sizes or {})}
    tag = "-".join(f"{k}{sizes[k]}" for k in sorted(sizes))
    root = os.path.join(cache_dir, "synthetic", f"{VERSION}-{tag}")
    done = os.path.join(root, "DONE")
    if os.path.exists(done):
        return root
    tmp = root + f".tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    seen: set[str] = set()
    mix = []
    for split in ("align", "train"):
        recs, h = generate_split(split, tmp, sizes[split])
        seen |= h
        mix += recs
    with open(os.path.join(tmp, "mix.json"), "w") as fh:
        json.dump(mix, fh)
    generate_split("eval", tmp, sizes["eval"], seen=seen)
    with open(os.path.join(tmp, "DONE"), "w") as fh:
        fh.write(VERSION)
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished first
        pass
    return root


def corpus(root: str) -> list[str]:
    """Every text string of every split (used to train the embedded tokenizer)."""
    texts = []
    for name in sorted(os.listdir(root)):
        if name.endswith(".json"):
            with open(os.path.join(root, name)) as fh:
                for rec in json.load(fh):
                    if "conversations" in rec:
                        texts += [t["value"] for t in rec["conversations"]]
                    else:
                        texts += [rec["prompt"], rec["answer"]]
    return texts
