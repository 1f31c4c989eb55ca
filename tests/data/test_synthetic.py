import collections
import hashlib
import json
import os

import numpy as np
from PIL import Image

from cambrian.data import chat_templates, conversation, synthetic, tokenizer

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
        # each kind at most once per conversation: no answer can be copied from an earlier turn
        questions = [t["value"].removeprefix("<image>\n").split("\n")[0] for t in conv[::2]]
        assert len(set(questions)) == len(questions)
    for g in synthetic.GROUPS:
        for it in json.load(open(os.path.join(root, f"eval_{g}.json"))):
            kind = synthetic.KINDS[it["kind"]]
            assert kind.group == g
            if it["format"] == "mc":
                assert f"({it['answer']})" in it["prompt"]
                assert it["chance"] == 1 / len(it["choices"])
            else:
                assert it["answer"] in kind.answers
                assert it["chance"] == 1 / len(kind.answers)


def _mc_answer(q: dict) -> str:
    line = next(l for l in q["prompt"].split("\n") if l.startswith(f"({q['answer']})"))
    return line.split(") ", 1)[1]


def test_bar_answers_follow_drawn_heights():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        scene = synthetic.scene_bars(rng)
        img = np.asarray(scene.image).astype(int)
        heights = {}
        for c in scene.facts["colors"]:
            rows = np.where((np.abs(img - np.array(synthetic.COLORS[c])).sum(-1) < 10).any(1))[0]
            heights[c] = rows.max() - rows.min()
        for q in synthetic.questions(scene, rng):
            which = "tallest" if "tallest" in q["prompt"] else "shortest"
            drawn = (max if which == "tallest" else min)(heights, key=heights.get)
            assert (_mc_answer(q) if q["format"] == "mc" else q["answer"]) == drawn


def test_shape_answers_follow_drawn_pixels():
    """Leftmost / rightmost and largest answers agree with the pixels of each colour."""
    rng = np.random.default_rng(0)
    for name in ("leftmost", "largest"):
        for _ in range(8):
            scene, question, answer = synthetic.KINDS[name].ask(rng)
            img = np.asarray(scene.image).astype(int)
            where = {}
            for c, rgb in synthetic.COLORS.items():
                mask = np.abs(img - np.array(rgb)).sum(-1) < 10
                if mask.any():
                    where[c] = (np.where(mask.any(0))[0].mean(), mask.sum())
            assert len(where) == len(scene.facts["objects"]) >= 2
            if "leftmost" in question:
                assert answer == min(where, key=lambda c: where[c][0])
            elif "rightmost" in question:
                assert answer == max(where, key=lambda c: where[c][0])
            else:
                areas = sorted((a for _, a in where.values()), reverse=True)
                assert answer == max(where, key=lambda c: where[c][1]) and areas[0] > areas[1]


def test_eval_answers_are_balanced_and_the_text_alone_does_not_beat_chance():
    """Within each (kind, form) every possible answer occurs equally often (+-1), and a
    predictor that sees only the prompt -- the answer most often given to that prompt in another
    draw of the suite -- scores about the computed chance level."""
    for g in synthetic.GROUPS:
        cycle = 2 * len(synthetic.EVAL_CYCLE[g]) * 12
        fit, _ = synthetic.eval_items(g, cycle, np.random.default_rng(10))
        test, _ = synthetic.eval_items(g, cycle, np.random.default_rng(11))
        counts, sizes = collections.defaultdict(collections.Counter), {}
        for _, q in test:
            counts[q["kind"], q["format"]][q["answer"]] += 1
            sizes[q["kind"], q["format"]] = (len(q["choices"]) if q["format"] == "mc"
                                             else len(synthetic.KINDS[q["kind"]].answers))
        for key, c in counts.items():
            assert len(c) == sizes[key] and max(c.values()) - min(c.values()) <= 1, (g, key, c)
        seen = collections.defaultdict(collections.Counter)
        for _, q in fit:
            seen[q["prompt"]][q["answer"]] += 1
        hits = [seen[q["prompt"]].most_common(1)[0][0] == q["answer"] if seen[q["prompt"]]
                else False for _, q in test]
        chance = np.mean([q["chance"] for _, q in test])
        assert np.mean(hits) < chance + 0.1, (g, np.mean(hits), chance)


def test_shipped_tokenizer_covers_the_corpus(cache_dir):
    from tests.conftest import SMALL

    tok = tokenizer.load("synthetic")
    root = synthetic.ensure(cache_dir, SMALL)
    for text in synthetic.corpus(root):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == text


def test_replies_tokenize_alike_in_training_and_after_an_eval_prompt(cache_dir):
    """Greedy decoding continues the eval prompt's ids: a reply must be the same tokens there as
    in a training conversation, and the recurring lines must be single tokens."""
    from tests.conftest import SMALL

    tok, t = tokenizer.load("synthetic"), chat_templates.get("vicuna_v1")
    root = synthetic.ensure(cache_dir, SMALL)
    for g in synthetic.GROUPS:
        for it in json.load(open(os.path.join(root, f"eval_{g}.json"))):
            prompt = conversation.encode_prompt(it["prompt"], t, tok, 3, system="")
            rec = {"image": "x.png", "conversations": [
                {"from": "human", "value": "<image>\n" + it["prompt"]},
                {"from": "gpt", "value": it["answer"]}]}
            full = conversation.encode_record(rec, "x", t, tok, 3, 512, system="")
            assert list(full["tokens"][: len(prompt)]) == list(prompt)
            reply = full["tokens"][len(prompt):]
            assert full["loss_mask"][len(prompt):].all() and len(reply) == 2  # answer, </s>
            # the answer-format line, as it ends a user turn, is one token
            line = synthetic.LETTER_PROMPT if it["format"] == "mc" else synthetic.SHORT_PROMPT
            assert line + " " in [tok.decode([i]) for i in prompt if i >= 0]
