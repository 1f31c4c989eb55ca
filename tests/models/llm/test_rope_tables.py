"""Rope tables: computed once per forward (XLA:CPU would recompute cos/sin inside every
layer's rotation, per head), and equal to rotating by the positions directly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import llm
from cambrian.models.llm import llama

CFG = llm.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=3,
                      num_heads=4, num_kv_heads=2, head_dim=8)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="materialize acts on CPU only")
def test_cos_and_sin_are_computed_once_per_forward():
    model = llm.Llama(CFG, rngs=nnx.Rngs(0))
    tokens = jnp.ones((2, 16), jnp.int32)
    hlo = nnx.jit(lambda m, t: m(t)).lower(model, tokens).compile().as_text()
    # one table each, not one per layer and projection (3 layers x q, k: 6 of each)
    assert hlo.count(" cosine(") == 1 and hlo.count(" sine(") == 1, (
        hlo.count(" cosine("), hlo.count(" sine("))


def test_tables_rotate_like_the_rotate_half_formula():
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 500, (3, 5)).astype(np.int32)
    x = rng.normal(size=(3, 5, 2, 8)).astype(np.float32)
    inv = llama.rope_frequencies(CFG)
    cos, sin = llama.rope_tables(jnp.asarray(pos), inv, jnp.float32)
    got = np.asarray(llama.apply_rope(jnp.asarray(x), cos, sin))
    # float64 reference: pairs (i, i + E/2) rotate by pos * inv_freq[i]
    ang = pos[..., None, None].astype(np.float64) * inv.astype(np.float64)  # [3, 5, 1, 4]
    x1, x2 = x[..., :4].astype(np.float64), x[..., 4:].astype(np.float64)
    want = np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                           x2 * np.cos(ang) + x1 * np.sin(ang)], axis=-1)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)
