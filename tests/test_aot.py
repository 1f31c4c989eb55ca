"""``aot.dry_run``: what is known from shapes alone, counted by hand."""

import jax
from flax import nnx

from cambrian import aot, optim, train
from cambrian import config as C
from cambrian.data import tokenizer
from tests.conftest import small


def _config(cache_dir, **data):
    c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    c.data.update(data)
    return c


def test_shape_only_bytes_match_a_hand_count(cache_dir):
    c = _config(cache_dir)
    out = aot.dry_run(c, lower=False)
    model = train.build_model(c, tokenizer.load("synthetic"))
    _, trainable, frozen = nnx.split(model, optim.trainable_filter(c.stages.stage2.trainable), ...)
    n_tr = sum(x.size for x in jax.tree.leaves(trainable))
    n_all = n_tr + sum(x.size for x in jax.tree.leaves(frozen))
    b, t, s = c.stages.stage2.batch_size, c.model.max_len, model.specs["dinov2"].image_size
    g = len(model.host_images().sides)
    pd = out["per_device_bytes"]
    assert out["params"]["trainable"] == n_tr and pd["params"] == 4 * n_all
    assert pd["optimizer"] >= 2 * 4 * n_tr  # AdamW: two fp32 moments per trained weight
    # image uint8, letterbox 2 x i32 per grid side, has_image bool; tokens i32, loss mask bool,
    # segments i32
    assert pd["batch"] == b * (s * s * 3 + 8 * g + 1 + t * (4 + 1 + 4))


def test_packed_batches_carry_an_image_slot_per_packed_example(cache_dir):
    one = aot.dry_run(_config(cache_dir), lower=False)["per_device_bytes"]["batch"]
    packed = aot.dry_run(_config(cache_dir, pack=True, max_images_per_row=3),
                         lower=False)["per_device_bytes"]["batch"]
    c = _config(cache_dir)
    model = train.build_model(c, tokenizer.load("synthetic"))
    s, g = model.specs["dinov2"].image_size, len(model.host_images().sides)
    b = c.stages.stage2.batch_size
    assert packed - one == b * 2 * (s * s * 3 + 8 * g + 1)
