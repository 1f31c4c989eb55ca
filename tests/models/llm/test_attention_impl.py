"""LlamaConfig.attention: jax.nn.dot_product_attention in the training forward equals ``attend``.

The einsum path (``attend``) is the one checked against HF transformers in
test_llama_parity.py; here the fused path must reproduce it under the masks training uses
(packed segments, padding at the end and inside a row, sliding window), in values and gradients,
and must leave the cache / batch-invariant (generation) path untouched.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import llm
from cambrian.models.llm import decode

CFG = llm.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=16)
T = 24
# row 0: two packed samples then padding; row 1: padding inside the row (letter-box visual
# tokens) and at the end; row 2: one sample filling the row.
SEGMENTS = np.array([[1] * 9 + [2] * 10 + [0] * 5,
                     [1] * 5 + [0] * 4 + [1] * 11 + [0] * 4,
                     [1] * T], np.int32)


def _pair(attention: str, **changes):
    """The default model and one with ``attention``, sharing the same (enlarged) weights."""
    cfg = dataclasses.replace(CFG, **changes)
    ref = llm.Llama(cfg, rngs=nnx.Rngs(0))
    # Larger than the N(0, 0.02) init: peaked attention, so a wrong mask changes the output.
    nnx.update(ref, jax.tree.map(lambda x: x * 4.0 if x.ndim > 1 else x,
                                 nnx.state(ref, nnx.Param)))
    new = llm.Llama(dataclasses.replace(cfg, attention=attention), rngs=nnx.Rngs(1))
    nnx.update(new, nnx.state(ref, nnx.Param))
    return ref, new


def _batch():
    tokens = np.random.default_rng(0).integers(1, CFG.vocab_size, (3, T)).astype(np.int32)
    # positions restart at every sample, as the trainer's compacted positions do
    pos = np.zeros_like(tokens)
    for b, row in enumerate(SEGMENTS):
        for i in range(1, T):
            pos[b, i] = 0 if row[i] != row[i - 1] else pos[b, i - 1] + 1
    return jnp.asarray(tokens), jnp.asarray(pos), jnp.asarray(SEGMENTS)


@pytest.fixture(autouse=True)
def _fp32_matmuls():
    """Exact fp32 matmuls on GPUs too (TF32 by default there), so 1e-5 comparisons hold."""
    with jax.default_matmul_precision("float32"):
        yield


@nnx.jit
def _logits(model, tokens, pos, seg):
    return model(tokens, positions=pos, segment_ids=seg)


def _loss_grads(model, tokens, pos, seg):
    def loss(m):
        lg = m(tokens, positions=pos, segment_ids=seg)
        lse = jax.nn.logsumexp(lg, axis=-1)
        return jnp.sum(jnp.where(seg != 0, lse - lg[..., 0], 0.0))

    return nnx.jit(nnx.grad(loss))(model)


@pytest.mark.parametrize("changes", [{}, {"sliding_window": 6, "model_type": "mistral"}],
                         ids=["causal", "sliding_window"])
def test_xla_dot_product_attention_equals_einsum(changes):
    ref, new = _pair("xla", **changes)
    tokens, pos, seg = _batch()
    real = np.asarray(seg) != 0
    a = np.asarray(_logits(ref, tokens, pos, seg))
    b = np.asarray(_logits(new, tokens, pos, seg))
    assert np.abs(a[real]).max() > 1.0  # the check is not vacuous
    np.testing.assert_allclose(b[real], a[real], rtol=1e-5, atol=1e-5)

    ga = jax.tree.leaves(nnx.to_pure_dict(_loss_grads(ref, tokens, pos, seg)))
    gb = jax.tree.leaves(nnx.to_pure_dict(_loss_grads(new, tokens, pos, seg)))
    assert len(ga) == len(gb) and max(float(jnp.abs(g).max()) for g in ga) > 1e-3
    for x, y in zip(ga, gb, strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-5, atol=1e-5)


def test_generation_paths_ignore_the_setting():
    ref, new = _pair("xla")
    tokens, pos, seg = _batch()
    @nnx.jit(static_argnums=4)
    def prefill(m, t, p, s, invariant):
        cache = llm.init_cache(m, t.shape[0], 32)
        hidden, _ = decode.forward(m, m.embed(t), cache, positions=p, segment_ids=s,
                                   batch_invariant=invariant)
        return decode.project(m, hidden, invariant)

    for invariant in (True, False):
        np.testing.assert_array_equal(np.asarray(prefill(new, tokens, pos, seg, invariant)),
                                      np.asarray(prefill(ref, tokens, pos, seg, invariant)))


def test_unknown_attention_is_named():
    with pytest.raises(ValueError, match="LlamaConfig.attention='flash'"):
        dataclasses.replace(CFG, attention="flash")


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN flash attention needs a GPU")
def test_cudnn_in_bf16_is_as_close_to_fp32_as_einsum_in_bf16():
    ref32, _ = _pair("xla")  # the fp32 einsum model, enlarged weights
    ein16 = llm.Llama(dataclasses.replace(CFG, dtype="bfloat16"), rngs=nnx.Rngs(1))
    cud16 = llm.Llama(dataclasses.replace(CFG, dtype="bfloat16", attention="cudnn"),
                      rngs=nnx.Rngs(2))
    for m in (ein16, cud16):
        nnx.update(m, nnx.state(ref32, nnx.Param))
    tokens, pos, seg = _batch()
    real = np.asarray(seg) != 0
    want = np.asarray(_logits(ref32, tokens, pos, seg))[real]
    err_einsum = np.abs(np.asarray(_logits(ein16, tokens, pos, seg))[real] - want).max()
    err_cudnn = np.abs(np.asarray(_logits(cud16, tokens, pos, seg))[real] - want).max()
    assert err_cudnn <= 2 * err_einsum + 1e-3, (err_cudnn, err_einsum)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN flash attention needs a GPU")
def test_cudnn_gradients_without_the_bias_gradient_match_einsum_in_bf16():
    """cuDNN's backward with the mask's bias gradient switched off (the default) gives the
    weight gradients of the einsum model in bf16, as close to fp32 as einsum's own."""
    ref32, _ = _pair("xla")
    models = {}
    for name, attention in (("einsum", "einsum"), ("cudnn", "cudnn")):
        m = llm.Llama(dataclasses.replace(CFG, dtype="bfloat16", attention=attention),
                      rngs=nnx.Rngs(3))
        nnx.update(m, nnx.state(ref32, nnx.Param))
        models[name] = m
    tokens, pos, seg = _batch()
    want = jax.tree.leaves(nnx.to_pure_dict(_loss_grads(ref32, tokens, pos, seg)))
    for name in ("einsum", "cudnn"):
        got = jax.tree.leaves(nnx.to_pure_dict(_loss_grads(models[name], tokens, pos, seg)))
        models[name] = max(float(np.abs(np.asarray(g, np.float32) - np.asarray(w)).max()
                                 / (np.abs(np.asarray(w)).max() + 1e-12))
                           for g, w in zip(got, want))
    assert models["cudnn"] <= 2 * models["einsum"] + 1e-3, models


ONE_SEGMENT = np.array([[1] * 15 + [0] * 9,  # padding at the end
                        [1] * 5 + [0] * 4 + [1] * 11 + [0] * 4,  # letter-box gap + end padding
                        [0] * 3 + [1] * 21],  # left padding
                       np.int32)


def _one_segment_batch():
    tokens, _, _ = _batch()
    seg = ONE_SEGMENT
    pos = np.where(seg != 0, np.cumsum(seg != 0, axis=1) - 1, 0).astype(np.int32)
    return tokens, jnp.asarray(pos), jnp.asarray(seg)


def _forward(model, tokens, pos, seg, one_segment):
    return model.forward(tokens, positions=pos, segment_ids=seg, one_segment=one_segment)[0]


def test_one_segment_rows_run_on_lengths_and_equal_the_masked_einsum():
    """``one_segment``: padding sorted to the row ends, attention on lengths (no mask), the
    order restored; logits and weight gradients equal the einsum model with its mask."""
    ref, new = _pair("xla")
    tokens, pos, seg = _one_segment_batch()
    real = np.asarray(seg) != 0
    fwd = nnx.jit(_forward, static_argnums=4)
    want = np.asarray(fwd(ref, tokens, pos, seg, False))
    got = np.asarray(fwd(new, tokens, pos, seg, True))
    np.testing.assert_allclose(got[real], want[real], rtol=1e-5, atol=1e-5)

    def grads(m, one):
        def loss(m):
            lg = _forward(m, tokens, pos, seg, one)
            lse = jax.nn.logsumexp(lg, axis=-1)
            return jnp.sum(jnp.where(seg != 0, lse - lg[..., 0], 0.0))
        return jax.tree.leaves(nnx.to_pure_dict(nnx.grad(loss)(m)))

    for a, b in zip(grads(ref, False), grads(new, True), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-5)

    # the lengths path really runs: two segments in a row break its promise and its result
    two = jnp.asarray(SEGMENTS[:1].repeat(3, axis=0))
    bad = np.asarray(fwd(new, tokens, pos, two, True))
    good = np.asarray(fwd(new, tokens, pos, two, False))
    assert np.abs(bad - good)[np.asarray(two) == 2].max() > 1e-3


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN flash attention needs a GPU")
def test_cudnn_on_lengths_is_as_close_to_fp32_as_einsum_in_bf16():
    ref32, _ = _pair("xla")
    tokens, pos, seg = _one_segment_batch()
    real = np.asarray(seg) != 0
    want = np.asarray(_forward(ref32, tokens, pos, seg, False))[real]
    err = {}
    for attention in ("einsum", "cudnn"):
        m = llm.Llama(dataclasses.replace(CFG, dtype="bfloat16", attention=attention),
                      rngs=nnx.Rngs(4))
        nnx.update(m, nnx.state(ref32, nnx.Param))
        got = np.asarray(_forward(m, tokens, pos, seg, True), np.float32)[real]
        err[attention] = float(np.abs(got - want).max())
    assert err["cudnn"] <= 2 * err["einsum"] + 1e-3, err
