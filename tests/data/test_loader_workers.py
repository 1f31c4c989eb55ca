"""grain worker processes (data.num_workers) change neither the example order nor exact resume,
with and without packing."""

import json

import numpy as np
import pytest
from PIL import Image

from cambrian.data import chat_templates, loader, tokenizer
from tests.data.test_loader import IMAGES


def _records(tmp_path, n=14, bad=(5,)):
    recs = []
    for i in range(n):
        Image.fromarray(np.full((20, 40, 3), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
        recs.append({"id": str(i), "image": "missing.png" if i in bad else f"{i}.png",
                     "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                       {"from": "gpt", "value": f"n{i}" + "!" * (i % 4)}]})
    (tmp_path / "d.json").write_text(json.dumps(recs))
    return loader.load_records(str(tmp_path / "d.json"))


def _batches(recs, root, workers, pack, n, state=None):
    enc = loader.Encoder(template=chat_templates.get("vicuna_v1"),
                         tokenizer=tokenizer.load("synthetic"), num_image_tokens=4, max_len=64,
                         images=IMAGES, image_root=root, skip_bad=True, system="")
    it = iter(loader.dataset(recs, enc, batch_size=3, num_batches=8, seed=3, num_workers=workers,
                             pack=pack, max_images_per_row=2))
    try:
        if state is not None:
            it.set_state(json.loads(state))  # as a checkpoint stores it
        out = [next(it) for _ in range(n)]
        return out, json.dumps(it.get_state())
    finally:
        it.close()


def _ids(batch):
    """Which records a batch holds, in order: each image slot's colour, -1 on empty slots."""
    img = batch["image"]["a"].reshape(-1, 32, 32, 3)[:, 16, 16, 0].astype(int)
    return np.where(batch["has_image"].reshape(-1), img // 10, -1).tolist()


def _check_images_follow_their_conversations(batches, recs):
    """Every packed segment's image slot holds the image of that segment's own record."""
    tok = tokenizer.load("synthetic")
    for b in batches:
        for r, seg in enumerate(b["segment_ids"]):
            for s in range(1, seg.max() + 1):
                text = tok.decode([t for t in b["tokens"][r][seg == s] if t >= 0])
                i = int(text.split("ASSISTANT: n")[1].split("!")[0].split("<")[0].strip())
                assert b["has_image"][r, s - 1] and _ids(b)[r * 2 + s - 1] == i


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], dict):
                _same([x[k]], [y[k]])
            else:
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize("pack", [False, True])
def test_two_workers_give_the_same_batches_and_resume_exactly(tmp_path, pack):
    recs, root = _records(tmp_path), str(tmp_path)
    ref, _ = _batches(recs, root, 0, pack, 6)
    assert 5 not in sum((_ids(b) for b in ref), [])  # the bad record is skipped
    if pack:
        assert ref[0]["segment_ids"].max() > 1  # rows do hold several examples
        _check_images_follow_their_conversations(ref, recs)
    head, state = _batches(recs, root, 2, pack, 2)
    _same(head, ref[:2])
    rest, _ = _batches(recs, root, 2, pack, 4, state=state)
    _same(rest, ref[2:])


def test_peek_serves_its_head_first_and_resumes_inside_it(tmp_path):
    recs, root = _records(tmp_path, bad=()), str(tmp_path)
    enc = loader.Encoder(template=chat_templates.get("vicuna_v1"),
                         tokenizer=tokenizer.load("synthetic"), num_image_tokens=4, max_len=64,
                         images=IMAGES, image_root=root, skip_bad=False, system="")
    ds = loader.dataset(recs, enc, batch_size=2, num_batches=6, seed=1)
    ref = [next(it) for it in [iter(ds)] for _ in range(5)]
    peeked = loader.Peek(iter(ds), 3)
    _same(peeked.head(), ref[:3])
    _same([next(peeked)], ref[:1])
    state = json.dumps(peeked.get_state())
    _same([next(peeked) for _ in range(4)], ref[1:])
    again = loader.Peek(iter(ds), 3)
    again.set_state(json.loads(state))
    _same([next(again) for _ in range(4)], ref[1:])
