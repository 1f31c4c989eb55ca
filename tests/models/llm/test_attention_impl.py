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
    inv = nnx.jit(lambda m, t, p, s: m(t, positions=p, segment_ids=s, batch_invariant=True))
    np.testing.assert_array_equal(np.asarray(inv(new, tokens, pos, seg)),
                                  np.asarray(inv(ref, tokens, pos, seg)))

    @nnx.jit
    def prefill(m, t):
        cache = llm.init_cache(m, t.shape[0], 32)
        return m.forward(t, cache=cache)[0]

    np.testing.assert_array_equal(np.asarray(prefill(new, tokens)),
                                  np.asarray(prefill(ref, tokens)))


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
