import hashlib
import json
import os

import numpy as np
from PIL import Image

from cambrian.data import synthetic, tokenizer

SIZES = {"align": 10, "train": 20, "eval": 5}


def _digest(root):
    h = hashlib.sha256()
    for name in sorted(os.listdir(root)):
        if name.endswith(".json"):
            h.update(open(os.path.join(root, name), "rb").read())
    for name in sorted(os.listdir(os.path.join(root, "images"))):
        h.update(open(os.path.join(root, "images", name), "rb").read())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path):
    a = synthetic.ensure(str(tmp_path / "a"), SIZES)
    b = synthetic.ensure(str(tmp_path / "b"), SIZES)
    assert _digest(a) == _digest(b)


def test_eval_images_never_appear_in_training(cache_dir):
    from tests.conftest import SMALL

    root = synthetic.ensure(cache_dir, SMALL)

    def pixels(rel):
        return hashlib.sha1(np.asarray(Image.open(os.path.join(root, rel))).tobytes()).hexdigest()

    train = {pixels(r["image"]) for s in ("align", "train")
             for r in json.load(open(os.path.join(root, f"{s}.json")))}
    for g in synthetic.GROUPS:
        items = json.load(open(os.path.join(root, f"eval_{g}.json")))
        assert len(items) == SMALL["eval"]
        assert not {pixels(it["image"]) for it in items} & train


def test_records_are_llava_format_and_answers_consistent(cache_dir):
    from tests.conftest import SMALL

    root = synthetic.ensure(cache_dir, SMALL)
    recs = json.load(open(os.path.join(root, "train.json")))
    for r in recs:
        conv = r["conversations"]
        assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<image>\n")
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
    for g in synthetic.GROUPS:
        for it in json.load(open(os.path.join(root, f"eval_{g}.json"))):
            if it["format"] == "mc":
                assert f"({it['answer']})" in it["prompt"]
                assert it["chance"] == 1 / len(it["choices"])


def test_bar_answers_follow_drawn_heights():
    rng = np.random.default_rng(0)
    scene = synthetic.scene_bars(rng)
    img = np.asarray(scene.image).astype(int)
    heights = {}
    for c in scene.facts["colors"]:
        col = np.array(synthetic.COLORS[c])
        rows = np.where((np.abs(img - col).sum(-1) < 10).any(1))[0]
        heights[c] = rows.max() - rows.min()
    top = max(heights, key=heights.get)
    qs = synthetic.questions(scene, "ocr_chart", np.random.default_rng(1))
    mc = next(q for q in qs if q["format"] == "mc")
    letter_line = next(l for l in mc["prompt"].split("\n") if l.startswith(f"({mc['answer']})"))
    assert letter_line.endswith(top)


def test_shipped_tokenizer_covers_the_corpus(cache_dir):
    from tests.conftest import SMALL

    tok = tokenizer.load("synthetic")
    root = synthetic.ensure(cache_dir, SMALL)
    for text in synthetic.corpus(root):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text
