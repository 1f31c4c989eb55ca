"""The embedded synthetic dataset: procedurally drawn images with questions in Cambrian's 4 groups.

Everything is generated with PIL from fixed seeds, written in the LLaVA conversation JSON format
with PNG files, and read back through the same loader as real data. Splits:

* ``align``  -- captions (stage-1 alignment data),
* ``train``  -- multi-turn instruction data covering every question kind,
* ``mix``    -- ``align`` + ``train`` (stage 2 of ``:runlocal``: with a randomly initialised LLM the
  dense caption supervision is what teaches it to read the visual tokens),
* ``eval``   -- one benchmark per group (``general``, ``knowledge``, ``ocr_chart``,
  ``vision_centric``), multiple-choice and short-answer items.

Question kinds (:data:`KINDS`), by group: General -- the colour and the shape of one shape;
Knowledge -- its number of sides and whether its colour is warm or cool (a fact about what is
seen); OCR & Chart -- the word written in the image, the colour of the tallest / shortest bar of a
bar chart; Vision-Centric -- counting, and the colour of the leftmost / rightmost and of the
largest of several shapes in a row.

Every answer can only be known from the image: each kind draws its answer uniformly from a fixed
answer set that the question does not narrow down, so answering without the image scores the
computed chance level (1 / number of possible answers). Multiple-choice options are a fixed list
per kind in a fixed order, so the letter is a function of the answer: the suite checks that
vision, connector, LLM, loss, decoding and scoring fit together, not option reading.

Each split draws from its own seed stream, and eval images are rejected if their content hash
occurs in a training split, so train and eval never overlap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

VERSION = "v5"
SIZE = 128
# Shapes, letters and bars stand in the cells / columns of a 4 x 4 grid: the token grid of the
# runlocal encoders, so a tiny frozen random encoder sees one object per visual token.
COLUMNS = 4
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
          "yellow": (230, 200, 30)}
SHAPES = ("circle", "triangle", "square")
SIDES = {"circle": "0", "triangle": "3", "square": "4"}
WARM = {"red": "warm", "yellow": "warm", "green": "cool", "blue": "cool"}
# Two sets of four: a word's multiple-choice options are its own set, so the options do not
# reveal the word and the letter is a function of it.
WORD_SETS = (("CAT", "DOG", "SUN", "BOX"), ("CAR", "HAT", "PEN", "MAP"))
WORDS = WORD_SETS[0] + WORD_SETS[1]
LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
SHORT_PROMPT = "Answer the question using a single word or phrase."
GROUPS = ("general", "knowledge", "ocr_chart", "vision_centric")
SPLIT_SIZES = {"align": 3000, "train": 6000, "eval": 120}  # eval: per group
_SEEDS = {"align": 1, "train": 2, "eval": 3}
# sizes of the shapes of multi-shape scenes: any large shape covers more pixels than any small one
SMALL, LARGE = (15, 18), (28, 31)
# Bar heights before +-3 px of jitter. The bars stand on the line between the second and third
# grid row of the padded square image: the shortest bar fills a third of its cell, the next one
# all of it, the third reaches into the row above and only the tallest into the top row.
BAR_LEVELS = (12, 30, 50, 74)


@dataclasses.dataclass
class Scene:
    image: Image.Image
    facts: dict


# ------------------------------------------------------------------------------- scenes


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


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def scene_one(rng: np.random.Generator) -> Scene:
    """One large shape of a uniformly drawn colour and kind filling a 2 x 2 block of grid cells
    (each of its four visual tokens sees one quarter of it)."""
    img = _background(rng)
    color, shape = _pick(rng, list(COLORS)), _pick(rng, SHAPES)
    size = int(rng.integers(54, 63))
    cell = SIZE // COLUMNS
    cx, cy = (cell * int(rng.integers(1, COLUMNS)) for _ in range(2))
    box = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
    _draw_shape(ImageDraw.Draw(img), shape, box, COLORS[color])
    return Scene(img, {"kind": "one", "objects": [{"color": color, "shape": shape, "x": cx,
                                                   "y": cy, "size": size}]})


def scene_shapes(rng: np.random.Generator, n: int, big: list[bool] | None = None) -> Scene:
    """n shapes of distinct colours side by side in one row of the grid, each centred in a cell
    of its own (one object per visual token), small or large (``big``)."""
    img = _background(rng)
    d = ImageDraw.Draw(img)
    colors = list(rng.permutation(list(COLORS))[:n])
    columns = rng.permutation(COLUMNS)[:n]
    big = [bool(b) for b in rng.integers(0, 2, size=n)] if big is None else big
    cell = SIZE // COLUMNS
    cy = cell * int(rng.integers(COLUMNS)) + cell // 2
    objs = []
    for color, col, large in zip(colors, columns, big):
        size = int(rng.integers(*(LARGE if large else SMALL), endpoint=True))
        cx = cell * int(col) + cell // 2
        shape = _pick(rng, SHAPES)
        box = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
        _draw_shape(d, shape, box, COLORS[str(color)])
        objs.append({"color": str(color), "shape": shape, "x": cx, "y": cy, "size": size})
    return Scene(img, {"kind": "shapes", "objects": objs})


def scene_word(rng: np.random.Generator) -> Scene:
    """A three-letter word in dark capitals, one letter per cell of a row of the 4 x 4 grid,
    starting in the first or the second column."""
    img = _background(rng)
    d = ImageDraw.Draw(img)
    word = _pick(rng, WORDS)
    font = _font(int(rng.integers(40, 47)))
    col, row = int(rng.integers(COLUMNS - len(word) + 1)), int(rng.integers(COLUMNS))
    cell = SIZE // COLUMNS
    for i, ch in enumerate(word):
        l, t, r, b = d.textbbox((0, 0), ch, font=font)
        x = cell * (col + i) + cell // 2 - (r - l) // 2 - l + int(rng.integers(-2, 3))
        y = cell * row + cell // 2 - (b - t) // 2 - t + int(rng.integers(-2, 3))
        d.text((x, y), ch, fill=(20, 20, 20), font=font)
    return Scene(img, {"kind": "word", "word": word})


def scene_bars(rng: np.random.Generator) -> Scene:
    """A bar chart of the four colours, one bar per column, on a non-square canvas (exercises
    pad-to-square); heights are distinct levels, so tallest and shortest are never ties."""
    h = 96
    img = _background(rng, SIZE, h)
    d = ImageDraw.Draw(img)
    colors = [str(c) for c in rng.permutation(list(COLORS))]
    heights = [BAR_LEVELS[int(i)] + int(rng.integers(-3, 4)) for i in rng.permutation(4)]
    w = SIZE // COLUMNS
    base = SIZE * 3 // 4 - (SIZE - h) // 2  # that row line, once padded to SIZE x SIZE
    for i, (c, bh) in enumerate(zip(colors, heights)):
        d.rectangle((i * w + 5, base - bh, i * w + w - 6, base - 1), fill=COLORS[c])
    return Scene(img, {"kind": "bars", "colors": colors, "heights": heights})


# ------------------------------------------------------------------------------- question kinds


@dataclasses.dataclass(frozen=True)
class Kind:
    """One question kind: ``ask(rng) -> (scene, question, answer)`` with the answer drawn
    uniformly from ``answers``; ``options`` are the multiple-choice options (a fixed list, default
    ``answers``)."""

    name: str
    group: str
    answers: tuple[str, ...]
    ask: Callable[[np.random.Generator], tuple[Scene, str, str]]
    options: Callable[[str], tuple[str, ...]] | None = None

    def choices(self, answer: str) -> tuple[str, ...]:
        return self.options(answer) if self.options else self.answers


def _one(question: str, fact: Callable[[dict], str]):
    def ask(rng):
        scene = scene_one(rng)
        return scene, question, fact(scene.facts["objects"][0])
    return ask


def _count(rng):
    n = int(rng.integers(1, COLUMNS + 1))
    return scene_shapes(rng, n), "How many shapes are there?", str(n)


def _leftmost(rng):
    n = int(rng.integers(2, COLUMNS + 1))
    scene = scene_shapes(rng, n)
    which, pick = (("leftmost", min), ("rightmost", max))[int(rng.integers(2))]
    return scene, f"What colour is the {which} shape?", pick(
        scene.facts["objects"], key=lambda o: o["x"])["color"]


def _largest(rng):
    n = int(rng.integers(2, COLUMNS + 1))
    big = [False] * n
    big[int(rng.integers(n))] = True
    scene = scene_shapes(rng, n, big)
    return scene, "What colour is the largest shape?", next(
        o["color"] for o, b in zip(scene.facts["objects"], big) if b)


def _word(rng):
    scene = scene_word(rng)
    return scene, "Which word is written in the image?", scene.facts["word"]


def _bar(which: str, pick):
    def ask(rng):
        scene = scene_bars(rng)
        f = scene.facts
        return scene, f"What is the colour of the {which} bar?", f["colors"][pick(f["heights"])]
    return ask


KINDS = {k.name: k for k in (
    Kind("colour", "general", tuple(COLORS), _one("What colour is the shape?",
                                                  lambda o: o["color"])),
    Kind("shape", "general", SHAPES, _one("What shape is shown?", lambda o: o["shape"])),
    Kind("sides", "knowledge", ("0", "3", "4"),
         _one("How many sides does the shape have?", lambda o: SIDES[o["shape"]])),
    Kind("warmth", "knowledge", ("warm", "cool"),
         _one("Is the colour of the shape warm or cool?", lambda o: WARM[o["color"]])),
    Kind("word", "ocr_chart", WORDS, _word,
         options=lambda w: next(s for s in WORD_SETS if w in s)),
    Kind("tallest", "ocr_chart", tuple(COLORS), _bar("tallest", np.argmax)),
    Kind("shortest", "ocr_chart", tuple(COLORS), _bar("shortest", np.argmin)),
    Kind("count", "vision_centric", ("1", "2", "3", "4"), _count),
    Kind("leftmost", "vision_centric", tuple(COLORS), _leftmost),
    Kind("largest", "vision_centric", tuple(COLORS), _largest),
)}
# The eval items of a group cycle through this list (OCR & Chart: half reading, half charts),
# each kind in both forms.
EVAL_CYCLE = {"general": ("colour", "shape"), "knowledge": ("sides", "warmth"),
              "ocr_chart": ("word", "tallest", "word", "shortest"),
              "vision_centric": ("count", "leftmost", "largest")}


def mc(question: str, options: tuple[str, ...], answer: str) -> dict:
    letters = "ABCDEFGH"[: len(options)]
    text = question + "\n" + "\n".join(f"({l}) {o}" for l, o in zip(letters, options))
    return {"prompt": f"{text}\n{LETTER_PROMPT}", "answer": letters[options.index(answer)],
            "format": "mc", "choices": letters, "chance": 1.0 / len(options)}


def short(question: str, answers: tuple[str, ...], answer: str) -> dict:
    return {"prompt": f"{question}\n{SHORT_PROMPT}", "answer": answer, "format": "short",
            "chance": 1.0 / len(answers)}


def item(kind: Kind, fmt: str, rng: np.random.Generator, answer: str | None = None
         ) -> tuple[Scene, dict]:
    """A fresh scene for ``kind`` and its question in ``fmt`` ("mc" or "short"); with
    ``answer``, scenes are drawn until one has that answer."""
    while True:
        scene, question, got = kind.ask(rng)
        if answer is None or got == answer:
            break
    q = (mc(question, kind.choices(got), got) if fmt == "mc"
         else short(question, kind.answers, got))
    return scene, {**q, "kind": kind.name}


def questions(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """One question of every kind the scene answers, each in a random form (training
    conversations: a kind asked twice would let the second answer be copied from the first)."""
    f = scene.facts
    qs: list[tuple[str, str, str]] = []  # (kind, question, answer)
    if f["kind"] == "one":
        o = f["objects"][0]
        qs += [("colour", "What colour is the shape?", o["color"]),
               ("shape", "What shape is shown?", o["shape"]),
               ("sides", "How many sides does the shape have?", SIDES[o["shape"]]),
               ("warmth", "Is the colour of the shape warm or cool?", WARM[o["color"]])]
    elif f["kind"] == "shapes":
        objs = f["objects"]
        qs.append(("count", "How many shapes are there?", str(len(objs))))
        if len(objs) >= 2:
            which, pick = (("leftmost", min), ("rightmost", max))[int(rng.integers(2))]
            qs.append(("leftmost", f"What colour is the {which} shape?",
                       pick(objs, key=lambda o: o["x"])["color"]))
            large = [o for o in objs if o["size"] >= LARGE[0]]
            if len(large) == 1:
                qs.append(("largest", "What colour is the largest shape?", large[0]["color"]))
    elif f["kind"] == "word":
        qs.append(("word", "Which word is written in the image?", f["word"]))
    else:
        for which, pick in (("tallest", np.argmax), ("shortest", np.argmin)):
            qs.append((which, f"What is the colour of the {which} bar?",
                       f["colors"][int(pick(f["heights"]))]))
    out = []
    for name, question, answer in qs:
        k = KINDS[name]
        out.append(mc(question, k.choices(answer), answer) if rng.integers(2)
                   else short(question, k.answers, answer))
    return out


def caption(scene: Scene) -> str:
    f = scene.facts
    if f["kind"] == "one":
        o = f["objects"][0]
        return f"A {o['color']} {o['shape']}."
    if f["kind"] == "shapes":
        parts = [f"a {'large' if o['size'] >= LARGE[0] else 'small'} {o['color']} {o['shape']}"
                 for o in sorted(f["objects"], key=lambda o: o["x"])]
        return "From left to right: " + ", ".join(parts) + "."
    if f["kind"] == "word":
        return f"The word {f['word']} written in dark letters."
    cols = ", ".join(f"{c} {h}" for c, h in zip(f["colors"], f["heights"]))
    return f"A bar chart, from left to right: {cols}."


# Training scenes by type: the several-shape scenes (counting, leftmost, largest) and
# words are the hardest to learn, one-shape scenes answer four kinds at once.
SCENE_WEIGHTS = {"one": 0.2, "many": 0.35, "word": 0.2, "bars": 0.25}


def random_scene(rng: np.random.Generator) -> Scene:
    """A training scene: one shape, several shapes, a word or a bar chart."""
    kind = str(rng.choice(list(SCENE_WEIGHTS), p=list(SCENE_WEIGHTS.values())))
    if kind == "one":
        return scene_one(rng)
    if kind == "many":
        n = int(rng.integers(1, COLUMNS + 1))
        big = None
        if rng.integers(2):  # half of them with one large shape: the "largest" question
            big = [False] * n
            big[int(rng.integers(n))] = True
        return scene_shapes(rng, n, big)
    return scene_word(rng) if kind == "word" else scene_bars(rng)


# ------------------------------------------------------------------------------- writing


def _image_hash(img: Image.Image) -> str:
    return hashlib.sha1(np.asarray(img).tobytes()).hexdigest()


def _save(img: Image.Image, root: str, name: str) -> str:
    rel = f"images/{name}.png"
    img.save(os.path.join(root, rel), compress_level=1)  # fast; the files are regenerated anyway
    return rel


def eval_items(group: str, n: int, rng: np.random.Generator, seen: set[str] = frozenset()):
    """n (scene, question) pairs of ``group``. Item i asks ``EVAL_CYCLE[group]``'s kinds in
    turn, multiple-choice on even passes through the cycle and short-answer on odd ones, and
    each (kind, form) takes its possible answers in turn: kinds, forms and answers are balanced,
    so no answer prior beats the chance level. Scenes whose image is in ``seen`` are redrawn."""
    cycle, out, hashes = EVAL_CYCLE[group], [], set()
    asked: dict[tuple[str, str], int] = {}
    while len(out) < n:
        i = len(out)
        kind = KINDS[cycle[i % len(cycle)]]
        fmt = "mc" if (i // len(cycle)) % 2 == 0 else "short"
        j = asked.get((kind.name, fmt), 0)
        scene, q = item(kind, fmt, rng, answer=kind.answers[j % len(kind.answers)])
        h = _image_hash(scene.image)
        if h in seen or h in hashes:
            continue
        hashes.add(h)
        asked[kind.name, fmt] = j + 1
        out.append((scene, q))
    return out, hashes


def generate_split(split: str, root: str, n: int | None = None, seen: set[str] | None = None):
    """Writes ``root/<split>.json`` (LLaVA format) and its images; returns (records, hashes)."""
    rng = np.random.default_rng(_SEEDS[split])
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    n = n or SPLIT_SIZES[split]
    records, hashes = [], set()
    if split == "eval":
        by_group = {}
        for group in GROUPS:
            pairs, h = eval_items(group, n, rng, seen or set())
            hashes |= h
            items = []
            for i, (scene, q) in enumerate(pairs):
                rel = _save(scene.image, root, f"eval_{group}_{i:05d}")
                items.append({"id": f"{group}_{i:05d}", "image": rel, **q})
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
            qs = questions(scene, rng)
            rng.shuffle(qs)
            conv = []
            for j, q in enumerate(qs):
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
    except OSError:  # another process finished first: its copy is the same
        shutil.rmtree(tmp, ignore_errors=True)
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
