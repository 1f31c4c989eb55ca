"""Packed batches (several samples per row, segment ids, positions restarting, up to K images per
row) give every sample the same loss as when it has a row to itself."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from cambrian import config as config_lib
from cambrian.data import chat_templates, conversation, packing, tokenizer
from cambrian.data.loader import pad_example
from cambrian.models.encoders.preprocess import stack
from cambrian.train import build_model
from tests.conftest import small


@nnx.jit
def _logits(model, batch):
    return model(batch)[0]


def _per_sample_ce(model, batch):
    logits = _logits(model, jax.tree.map(jnp.asarray, batch))
    tok, seg = batch["tokens"], batch["segment_ids"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1],
                                                         jnp.maximum(tok[:, 1:], 0))
    keep = batch["loss_mask"][:, 1:] & (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    return np.asarray(ce), np.asarray(keep), seg[:, 1:]


# mlp connector; SVA with in-LLM aggregation (re-reads each image's windows inside the LLM)
@pytest.mark.parametrize("name,max_images", [("encoders/dinov2.py", 1),
                                             ("encoders/dinov2.py", 3),
                                             ("connectors/sva.py", 3)])
def test_packed_rows_give_the_same_per_sample_loss(name, max_images, cache_dir):
    config = small(config_lib.load(name + ":runlocal"), cache_dir)
    tok = tokenizer.load("synthetic")
    model = build_model(config, tok)
    tpl = chat_templates.get("vicuna_v1")
    n_img = model.num_image_tokens
    host = model.host_images()
    rng = np.random.default_rng(0)
    convs = [("What colour is the shape?", "red"), ("How many shapes are there?", "B"),
             ("Tell me a word.", "CAT"), ("Which bar is the tallest?", "A"), ("Hi", "Hello"),
             ("Where is the circle?", "left")]
    examples, images = [], []
    for i, (q, a) in enumerate(convs):
        with_image = i % 2 == 0 or i == 5
        rec = {"id": str(i), "image": "x.png" if with_image else None, "conversations": [
            {"from": "human", "value": ("<image>\n" if with_image else "") + q},
            {"from": "gpt", "value": a}]}
        enc = conversation.encode_record(rec, "t", tpl, tok, n_img, 512, system="")
        examples.append({**enc, "images": [i] if with_image else []})
        # letter-boxed differently: wide and tall images of several shapes
        h, w = (40, 40 - 6 * i) if i % 2 else (40 - 6 * i, 40)
        images.append(host(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
    seq = max(len(e["tokens"]) for e in examples) * 2 + n_img

    def row_images(idx_lists, k):
        rows = [stack([images[i] for i in idx] + [host.empty()] * (k - len(idx)))
                for idx in idx_lists]
        out = stack(rows)
        if k == 1:  # the unpacked layout
            out = jax.tree.map(lambda x: x[:, 0], out)
        return {"image": out["image"], "letterbox": out["letterbox"]}

    single = [pad_example(e, seq) for e in examples]
    unpacked = {k: np.stack([s[k] for s in single]) for k in single[0]}
    unpacked.update(row_images([e["images"] or [i] for i, e in enumerate(examples)], 1))
    packed = packing.pack(examples, seq, max_images=max_images)
    assert len(packed["examples"]) < len(examples)  # something was actually packed
    assert max(len(x) for x in packed["images"]) == min(max_images, 2)
    pb = {k: packed[k] for k in ("tokens", "loss_mask", "segment_ids")}
    pb.update(row_images(packed["images"], max_images))

    ce_u, keep_u, _ = _per_sample_ce(model, unpacked)
    ce_p, keep_p, seg_p = _per_sample_ce(model, pb)
    for r, members in enumerate(packed["examples"]):
        for s, i in enumerate(members, 1):
            want = ce_u[i][keep_u[i]]
            got = ce_p[r][keep_p[r] & (np.asarray(seg_p[r]) == s)]
            assert len(want) == len(got) > 0
            np.testing.assert_allclose(got.sum(), want.sum(), rtol=1e-5, atol=1e-5)
