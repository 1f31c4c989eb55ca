"""Packed batches (several samples per row, segment ids, positions restarting) give every sample
the same loss as when it has a row to itself."""

import jax.numpy as jnp
import numpy as np
import optax

from cambrian.data import chat_templates, conversation, packing, tokenizer
from cambrian.data.loader import pad_example
from cambrian.train import build_model


def _per_sample_ce(model, batch):
    logits, out = model({k: jnp.asarray(v) for k, v in batch.items()})
    tok, seg = batch["tokens"], batch["segment_ids"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1],
                                                         jnp.maximum(tok[:, 1:], 0))
    keep = batch["loss_mask"][:, 1:] & (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    return np.asarray(ce), np.asarray(keep), seg[:, 1:]


def test_packed_rows_give_the_same_per_sample_loss(tiny_config):
    tok = tokenizer.load("synthetic")
    model = build_model(tiny_config, tok)
    tpl = chat_templates.get("vicuna_v1")
    n_img = model.num_image_tokens
    rng = np.random.default_rng(0)
    convs = [("What colour is the shape?", "red"), ("How many shapes are there?", "B"),
             ("Tell me a word.", "CAT"), ("Which bar is the tallest?", "A"), ("Hi", "Hello")]
    examples, images = [], []
    for i, (q, a) in enumerate(convs):
        with_image = i % 2 == 0
        rec = {"id": str(i), "image": "x.png" if with_image else None, "conversations": [
            {"from": "human", "value": ("<image>\n" if with_image else "") + q},
            {"from": "gpt", "value": a}]}
        enc = conversation.encode_record(rec, "t", tpl, tok, n_img, 512, system="")
        img = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
        examples.append({**enc, "images": [i] if with_image else []})
        images.append(img if with_image else None)
    seq = max(len(e["tokens"]) for e in examples) * 2 + n_img
    size = model.host_image_size()

    def row_images(idx_lists):
        out = np.zeros((len(idx_lists), size, size, 3), np.uint8)
        for r, idx in enumerate(idx_lists):
            if idx:
                out[r] = images[idx[0]]
        return out

    box = lambda b: np.tile(np.asarray([0, 0, 1, 1], np.float32), (b, 1))  # noqa: E731
    single = [pad_example(e, seq) for e in examples]
    unpacked = {k: np.stack([s[k] for s in single]) for k in single[0]}
    unpacked["image"] = row_images([e["images"] for e in examples])
    unpacked["image_box"] = box(len(examples))
    packed = packing.pack(examples, seq, max_images=1)
    assert len(packed["examples"]) < len(examples)  # something was actually packed
    pb = {k: packed[k] for k in ("tokens", "loss_mask", "segment_ids")}
    pb["image"] = row_images(packed["images"])
    pb["image_box"] = box(len(packed["examples"]))

    ce_u, keep_u, _ = _per_sample_ce(model, unpacked)
    ce_p, keep_p, seg_p = _per_sample_ce(model, pb)
    for r, members in enumerate(packed["examples"]):
        for s, i in enumerate(members, 1):
            want = ce_u[i][keep_u[i]]
            got = ce_p[r][keep_p[r] & (np.asarray(seg_p[r]) == s)]
            assert len(want) == len(got) > 0
            np.testing.assert_allclose(got.sum(), want.sum(), rtol=1e-5, atol=1e-5)
