"""The trainer with data.pack on: packed batches train, the first step's loss is the loss of the
same conversations one per row, and the run log reports how full the rows are."""

import json
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian import config as C
from cambrian import sharding, train, train_data
from cambrian.data import chat_templates, loader, tokenizer
from cambrian.models.losses import loss_fn
from tests.conftest import small


def _config(cache_dir, pack):
    c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir, steps=2)
    c.model.max_len = 256  # room for ~4 synthetic conversations per row
    c.data.pack = pack
    c.data.max_images_per_row = 4
    c.stages.stage1.grad_accum = 2
    c.stages.stage2.steps = 0
    return c


def _first_batch(config, workdir):
    """The trainer's own first batch of stage 1, its model at step 0 and the logged figures."""
    tok = tokenizer.load("synthetic")
    mesh, rules = sharding.make_mesh(config.mesh), sharding.Rules.from_config(config)
    graphdef, params = train.init_params(config, tok, mesh, rules)
    model = nnx.merge(graphdef, params)
    batch = next(train_data.stage_data(config, "stage1", model, tok, mesh, workdir))
    with open(os.path.join(workdir, "stage1_data.json")) as fh:
        return batch, model, json.load(fh)


def _unpacked(config, model, n):
    """The first ``n`` conversations of stage 1's (endless) stream, one per row."""
    path, root = loader.resolve(config.stages.stage1.data, "", config.cache_dir,
                                config.data.synthetic.to_dict())
    enc = loader.Encoder(template=chat_templates.get(config.model.template),
                         tokenizer=tokenizer.load("synthetic"),
                         num_image_tokens=model.num_image_tokens, max_len=config.model.max_len,
                         images=model.host_images(), image_root=root, skip_bad=False,
                         system=config.model.system_prompt)
    stream = loader.examples(loader.load_records(path), enc, seed=config.seed * 1000)  # stage 1
    return next(iter(stream.batch(n)))


def _conversations(batch):
    """Each row's segments as token tuples, in stream order within a row."""
    out = []
    for tok, seg in zip(batch["tokens"], batch["segment_ids"]):
        out += [tuple(tok[seg == s]) for s in range(1, seg.max() + 1)]
    return out


def test_packed_training_step_loss_and_efficiency_log(cache_dir, tmp_path, caplog):
    config = _config(cache_dir, pack=True)
    with caplog.at_level(logging.INFO, logger="cambrian"):
        fit = train.fit(config, str(tmp_path / "run"))
    losses = fit.losses["stage1"]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert "stage1 data (first 2 batches, packed)" in caplog.text
    with open(tmp_path / "run" / "stage1_data.json") as fh:
        logged = json.load(fh)

    packed, model, eff = _first_batch(config, str(tmp_path / "probe"))
    assert eff == logged and eff["pack"] and eff["batches"] == 2
    assert packed["image"]["dinov2"].shape[:2] == (4, 4)
    assert packed["has_image"].sum(1).max() >= 2
    n = int(packed["segment_ids"].max(1).sum())
    assert eff["examples_per_row"] > 1 and n > 4

    # the same conversations, one per row, through the single-image path of the model
    rows = _unpacked(config, model, n)
    assert sorted(_conversations(packed)) == sorted(_conversations(rows))
    batch = jax.tree.map(jnp.asarray, rows)
    loss, count = nnx.jit(lambda m, b: loss_fn(m(b)[0], b, m(b)[1]["segment_ids"]))(
        model, batch)
    assert count > 0
    np.testing.assert_allclose(losses[0], float(loss), rtol=0, atol=1e-5)

    _, _, plain = _first_batch(_config(cache_dir, pack=False), str(tmp_path / "plain"))
    assert not plain["pack"] and plain["examples_per_row"] == 1.0
    assert eff["token_efficiency"] > plain["token_efficiency"]
    assert eff["supervised_efficiency"] > plain["supervised_efficiency"]
