"""Optimizer construction (freezing, per-module LR) and gradient accumulation."""

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
import pytest
from flax import nnx

from cambrian import optim, train
from cambrian.data import chat_templates, loader, tokenizer
from tests.conftest import small


def _stage(**kw):
    from cambrian import config as C

    st = C.base_config().stages.stage1
    st.update(dict(steps=10, lr=1e-2, warmup_ratio=0.0, grad_clip=1.0, **kw))
    return st


class Two(nnx.Module):
    def __init__(self):
        self.a = nnx.Param(jnp.zeros(3))
        self.b = nnx.Param(jnp.zeros(3))


def test_lr_multiplier_scales_updates():
    """Constant gradient: every Adam update is -lr_t * g / (|g| + eps) (bias-corrected moments
    equal g and g^2); a 0.1 multiplier on ``b`` scales its updates by 0.1."""
    st = _stage(lr_multipliers=mlc.ConfigDict({"^b$": 0.1}))
    params = nnx.state(Two(), nnx.Param)
    tx = optim.make(st, params)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    p = params
    for _ in range(2):
        upd, state = tx.update(grads, state, p)
        p = jax.tree.map(jnp.add, p, upd)
    g = 1 / np.sqrt(6)  # clipped to global norm 1
    sched = optax.cosine_decay_schedule(st.lr, st.steps)  # warmup_ratio 0: no warmup
    want = -(sched(0) + sched(1)) * g / (g + 1e-8)
    # float32 bias corrections (1 - 0.999**t) put the update ~1e-5 off the exact formula
    np.testing.assert_allclose(np.asarray(p["a"][...]), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p["b"][...]), 0.1 * np.asarray(p["a"][...]), rtol=1e-6)


class Three(nnx.Module):
    def __init__(self):
        self.a = nnx.Param(jnp.zeros(2))
        self.b = nnx.Param(jnp.zeros(2))
        self.c = nnx.Param(jnp.zeros(2))


def test_recorded_learning_rates_are_the_applied_ones():
    """``learning_rates(stage, groups, k)`` is the LR of the k-th update: with a constant
    gradient Adam's update is -lr_k * g / (|g| + eps), read back per group. The schedule's
    values are also checked by hand: warmup 0 -> 1e-2 over 2 steps, then cosine to 0 at 10."""
    st = _stage(lr_multipliers=mlc.ConfigDict({"^b$": 0.5, "^z$": 3.0}))
    st.update(dict(warmup_ratio=0.2, grad_clip=0.0))
    params = nnx.state(Three(), nnx.Param)
    groups = optim.lr_groups(params, st)
    assert groups == {"base": 1.0, "^b$": 0.5}  # "^z$" holds no parameter
    tx = optim.make(st, params)
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    by_hand = {1: 0.0, 2: 5e-3, 3: 1e-2, 10: 0.5e-2 * (1 + np.cos(np.pi * 7 / 8))}
    for k in range(1, 11):
        upd, state = tx.update(grads, state, params)
        lrs = optim.learning_rates(st, groups, k)
        assert set(lrs) == {"base", "^b$"}
        applied = {"base": -float(upd["a"][...][0]), "^b$": -float(upd["b"][...][0])}
        assert -float(upd["c"][...][0]) == pytest.approx(applied["base"], rel=1e-6)
        for name in lrs:
            # float32 bias corrections put the update ~1e-5 off the exact formula
            assert applied[name] == pytest.approx(lrs[name] / (1 + 1e-8), rel=2e-5, abs=1e-12)
        if k in by_hand:  # optax evaluates the schedule in float32
            assert lrs["base"] == pytest.approx(by_hand[k], rel=1e-5, abs=1e-12)


def test_frozen_params_get_no_optimizer_state(tiny_config):
    tok = tokenizer.load(tiny_config.model.tokenizer)
    model = train.build_model(tiny_config, tok)
    _, trainable, frozen = nnx.split(model, optim.trainable_filter("connector"), ...)
    tx = optim.make(tiny_config.stages.stage1, trainable)
    n_opt = sum(x.size for x in jax.tree.leaves(tx.init(trainable)) if x.ndim)
    n_tr = sum(x.size for x in jax.tree.leaves(trainable))
    assert 0 < n_tr < sum(x.size for x in jax.tree.leaves(frozen))
    assert n_opt == 2 * n_tr  # Adam's mu and nu over the trainable params only


def _batch(config, model, tok, rows):
    stage = config.stages.stage2
    path, root = loader.resolve(stage.data, stage.image_root, config.cache_dir,
                                config.data.synthetic.to_dict())
    enc = loader.Encoder(template=chat_templates.get(config.model.template), tokenizer=tok,
                         num_image_tokens=model.num_image_tokens, max_len=config.model.max_len,
                         images=model.host_images(), image_root=root, skip_bad=False,
                         system=config.model.system_prompt)
    return next(iter(loader.dataset(loader.load_records(path), enc, batch_size=rows,
                                    num_batches=1, seed=3)))


# An "optimizer" whose state is the last gradient and whose updates are zero.
RECORD = optax.GradientTransformation(
    lambda p: jax.tree.map(jnp.zeros_like, p),
    lambda g, s, p=None: (jax.tree.map(jnp.zeros_like, g), g))


def test_grad_accumulation_equals_one_big_batch(cache_dir):
    """4 microbatches of 2 rows == one step on the 8 rows: loss, token count and gradients (kept
    as the state of an optimizer that only records them)."""
    from cambrian import config as C

    config = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    tok = tokenizer.load(config.model.tokenizer)
    model = train.build_model(config, tok)
    stage = config.stages.stage2
    gd, trainable, frozen = nnx.split(model, optim.trainable_filter(stage.trainable), ...)
    batch = _batch(config, model, tok, 8)
    # rows of different lengths: the token-weighted mean must not average microbatch means
    assert len(set(batch["loss_mask"].sum(1).tolist())) > 1
    outs = {}
    for k in (1, 4):
        step = train.make_train_step(gd, RECORD, grad_accum=k)
        _, grads, m = step(jax.tree.map(jnp.copy, trainable), frozen, RECORD.init(trainable),
                           batch)
        outs[k] = (jax.device_get(m), jax.tree.map(np.asarray, grads))
    (m1, g1), (m4, g4) = outs[1], outs[4]
    np.testing.assert_allclose(m4["loss"], m1["loss"], rtol=1e-5)
    assert int(m4["tokens"]) == int(m1["tokens"]) == int(batch["loss_mask"][:, 1:].sum())
    np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


@pytest.mark.slow  # two more train-step compiles
def test_remat_same_gradients_and_bf16_keeps_fp32_masters(cache_dir):
    """config.remat recomputes activations (same gradients); model.dtype=bfloat16 computes the
    LLM in bf16 while its weights stay fp32, and frozen encoders are stored in bf16."""
    from cambrian import config as C

    outs = {}
    for remat in ("none", "full"):
        config = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
        config.remat = remat
        tok = tokenizer.load(config.model.tokenizer)
        model = train.build_model(config, tok)
        gd, trainable, frozen = nnx.split(model, optim.trainable_filter("connector|llm"), ...)
        batch = _batch(config, model, tok, 2)
        step = train.make_train_step(gd, RECORD)
        _, grads, m = step(trainable, frozen, RECORD.init(trainable), batch)
        outs[remat] = (float(m["loss"]), jax.tree.map(np.asarray, grads))
        llm_jaxpr = jax.make_jaxpr(lambda m: m(jnp.zeros((1, 4), jnp.int32)))
        assert ("remat" in str(llm_jaxpr(model.llm))) == (remat == "full")
    np.testing.assert_allclose(outs["full"][0], outs["none"][0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(outs["full"][1]), jax.tree.leaves(outs["none"][1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())

    config = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    config.model.dtype = config.model.encoder_dtype = "bfloat16"
    model = train.build_model(config, tokenizer.load("synthetic"))
    assert model.llm.config.dtype == "bfloat16"
    dts = {path[0]: v.dtype for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert dts["llm"] == jnp.float32 and dts["connector"] == jnp.float32
    assert dts["encoders"] == jnp.bfloat16


def test_remat_traces_with_a_frozen_llm(tiny_config):
    """Stage 1 freezes the LLM: its rematerialised layers must not write to the frozen params
    (flax raised TraceContextError when the merged model shared them across trace levels)."""
    from cambrian import aot

    tiny_config.remat = "full"
    assert aot.dry_run(tiny_config, stage="stage1", compile=False)
