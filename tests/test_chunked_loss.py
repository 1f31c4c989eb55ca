"""The losses: the whole-logits cross-entropy against a hand-derived value; the chunked one
(``config.loss_chunk``) against a float64 NumPy reference and against the whole-logits loss, in
value and gradient, and inside the train step."""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian import train
from cambrian.models import losses
from cambrian.models.llm import decode, llama
from tests.test_train import one_step


def _batch(rng, b, t, vocab):
    tokens = rng.integers(0, vocab, (b, t)).astype(np.int32)
    tokens[0, 3] = -1  # an ignored target
    seg = np.ones((b, t), np.int32)
    seg[1, t // 2:] = 2  # row 1 packs two samples
    seg[0, -2:] = 0  # padding
    loss_mask = rng.random((b, t)) < 0.7
    return {"tokens": jnp.asarray(tokens), "segment_ids": jnp.asarray(seg),
            "loss_mask": jnp.asarray(loss_mask)}


def _reference(hidden, w_dv, batch):
    """float64 mean CE over the positions the loss counts, written out by hand."""
    tokens = np.asarray(batch["tokens"])
    seg = np.asarray(batch["segment_ids"])
    mask = np.asarray(batch["loss_mask"])
    logits = np.asarray(hidden, np.float64) @ np.asarray(w_dv, np.float64)
    total, n = 0.0, 0
    for r in range(tokens.shape[0]):
        for i in range(tokens.shape[1] - 1):
            tgt = tokens[r, i + 1]
            if not (mask[r, i + 1] and seg[r, i + 1] != 0 and tgt >= 0
                    and seg[r, i + 1] == seg[r, i]):
                continue
            row = logits[r, i]
            lse = row.max() + np.log(np.exp(row - row.max()).sum())
            total += lse - row[tgt]
            n += 1
    return total / n, n


def test_loss_is_mean_ce_over_assistant_tokens_hand_derived():
    logits = jnp.log(jnp.array([[[0.5, 0.5, 0.0 + 1e-9], [0.1, 0.7, 0.2], [1 / 3] * 3]]))
    batch = {"tokens": jnp.array([[0, 1, 2]]), "loss_mask": jnp.array([[False, True, False]]),
             "segment_ids": jnp.array([[1, 1, 1]])}
    loss, n = losses.loss_fn(logits, batch, jnp.array([[1, 1, 1]]))
    assert int(n) == 1
    np.testing.assert_allclose(loss, -np.log(0.5), rtol=1e-5)  # token 1 predicted at position 0


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 7, 16, 64])
def test_chunked_loss_and_grads_match_whole_logits(tied, chunk):
    b, t, d, v = 2, 16, 8, 11
    rng = np.random.default_rng(chunk)
    cfg = llama.LlamaConfig(vocab_size=v, hidden_size=d, intermediate_size=16, num_layers=1,
                            num_heads=2, num_kv_heads=1, head_dim=4, tie_word_embeddings=tied)
    lm = llama.Llama(cfg, rngs=nnx.Rngs(0))
    hidden = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(v, d) if tied else (d, v)), jnp.float32)
    batch = _batch(rng, b, t, v)
    seg = batch["segment_ids"]

    def whole(h, w):
        logits = lm.logits(h, w)
        return losses.loss_fn(logits, batch, seg)

    def chunked(h, w):
        return losses.chunked_loss_fn(lm.logits, h, w, batch, seg, chunk)

    ref, n_ref = _reference(hidden, w.T if tied else w, batch)
    (l0, n0), g0 = jax.value_and_grad(whole, argnums=(0, 1), has_aux=True)(hidden, w)
    (l1, n1), g1 = jax.value_and_grad(chunked, argnums=(0, 1), has_aux=True)(hidden, w)
    assert int(n0) == int(n1) == n_ref
    np.testing.assert_allclose(float(l0), ref, rtol=1e-6)
    np.testing.assert_allclose(float(l1), ref, rtol=1e-6)
    for a, c in zip(g0, g1):
        np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(g1[1]).max()) > 1e-3  # the weight really receives a gradient


def test_untrained_weight_gets_no_gradient_and_the_same_hidden_gradient():
    b, t, d, v = 2, 16, 8, 11
    rng = np.random.default_rng(0)
    cfg = llama.LlamaConfig(vocab_size=v, hidden_size=d, intermediate_size=16, num_layers=1,
                            num_heads=2, num_kv_heads=1, head_dim=4, tie_word_embeddings=True)
    lm = llama.Llama(cfg, rngs=nnx.Rngs(0))
    hidden = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(v, d)), jnp.float32)
    batch = _batch(rng, b, t, v)

    def loss(h, w, trained):
        return losses.chunked_loss_fn(lm.logits, h, w, batch, batch["segment_ids"], 5,
                                      weight_grad=trained)[0]

    l1, (gh1, gw1) = jax.value_and_grad(loss, argnums=(0, 1))(hidden, w, True)
    l0, (gh0, gw0) = jax.value_and_grad(loss, argnums=(0, 1))(hidden, w, False)
    assert float(l0) == float(l1)
    np.testing.assert_array_equal(np.asarray(gh0), np.asarray(gh1))
    assert float(jnp.abs(gw1).max()) > 1e-3 and float(jnp.abs(gw0).max()) == 0.0


def test_logits_is_project():
    cfg = llama.LlamaConfig(vocab_size=13, hidden_size=8, intermediate_size=16, num_layers=1,
                            num_heads=2, num_kv_heads=1, head_dim=4)
    lm = llama.Llama(cfg, rngs=nnx.Rngs(1))
    h = jax.random.normal(jax.random.key(0), (2, 5, 8))
    np.testing.assert_allclose(lm.logits(h, lm.output_weight()),
                               decode.project(lm, h, batch_invariant=True), atol=1e-6)


@pytest.mark.parametrize("stage,grad_accum", [("stage2", 1), ("stage2", 2), ("stage1", 1)],
                         ids=["stage2", "stage2_accum2", "stage1_llm_frozen"])
def test_train_step_with_loss_chunk_equals_whole_logits(tiny_config, stage, grad_accum):
    """One step of the runlocal model (whole logits, one batch) against the chunked loss
    (also over 2 microbatches; and with the LLM frozen, when no weight gradient is taken):
    loss and updated params agree."""
    out = {}
    for chunk in (0, 24):
        with tiny_config.unlocked():
            tiny_config.loss_chunk = chunk
        with mock.patch.object(train, "make_train_step", wraps=train.make_train_step) as spy:
            out[chunk] = one_step(tiny_config, stage, grad_accum if chunk else 1)
        assert spy.call_args.kwargs["loss_chunk"] == chunk
    (l0, (b0, _), (p0, _)), (l1, _, (p1, _)) = out[0], out[24]
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for b, a, c in zip(jax.tree.leaves(b0), jax.tree.leaves(p0), jax.tree.leaves(p1)):
        # Adam's first step moves a weight by lr * g / (|g| + eps): a full step wherever |g| >> eps,
        # where the two losses must agree up to fp32 summation order. Where |g| is near eps the
        # step is ill-conditioned (a 1e-9 change in g moves it by percent), so those few are only
        # counted.
        u0, u1 = a - b, c - b
        full = (np.abs(u0) > 0.5 * np.abs(u0).max()) | (u0 == 0)  # 0: no gradient at all
        np.testing.assert_allclose(u1[full], u0[full], atol=1e-5)
        assert (~full).mean() < 0.01


def test_negative_loss_chunk_is_a_config_error(tiny_config):
    from cambrian import config as C

    with tiny_config.unlocked():
        tiny_config.loss_chunk = -1
    with pytest.raises(C.ConfigError, match="loss_chunk"):
        C.validate(tiny_config)
