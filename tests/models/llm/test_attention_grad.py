"""``attend``'s closed-form backward pass against torch autograd of textbook attention (float64).

The whole-array path of ``blocks.attend`` has a hand-written VJP (dS = P * (dP - sum_s P * dP)
on the saved probabilities). The reference differentiates the plain formula: masked scores
replaced through a select (so they get no gradient, and a fully masked query averages all
keys with no gradient reaching its scores), softmax, weighted sum; grouped kv heads repeated.
The upstream gradient is random everywhere, padding queries included.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from cambrian.models.llm import blocks

B, T, H, K, E = 3, 12, 4, 2, 8


def _mask(s_len: int) -> np.ndarray:
    """bool[B, T, S]: row 0 causal over a prefix cache of S - T slots; row 1 two packed
    segments then padding (fully masked queries); row 2 padding inside the row."""
    off = s_len - T
    q_pos, k_pos = np.arange(T)[:, None] + off, np.arange(s_len)[None]
    causal = k_pos <= q_pos
    seg = np.zeros((B, s_len), np.int32)
    seg[0] = 1
    seg[1, :off + 5], seg[1, off + 5:off + 9] = 1, 2  # the rest of row 1 is padding
    seg[2] = 1
    seg[2, off + 3:off + 6] = 0
    qseg = seg[:, off:]
    return causal[None] & (qseg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] != 0)


def _inputs(s_len: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, T, H, E)) * 2.0  # peaked attention: a wrong mask shows
    k, v = rng.normal(size=(B, s_len, K, E)) * 2.0, rng.normal(size=(B, s_len, K, E))
    do = rng.normal(size=(B, T, H, E))
    return q, k, v, do, _mask(s_len)


def _reference(q, k, v, do, mask):
    """Outputs and (dq, dk, dv) by torch autograd in float64."""
    q, k, v = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (q, k, v))
    kr, vr = (a.repeat_interleave(H // K, dim=2) for a in (k, v))  # head h reads kv h // G
    s = torch.einsum("bthe,bshe->bhts", q, kr) * E**-0.5
    s = torch.where(torch.tensor(mask)[:, None], s, torch.tensor(-1e30, dtype=torch.float64))
    o = torch.einsum("bhts,bshe->bthe", torch.softmax(s, dim=-1), vr)
    o.backward(torch.tensor(do, dtype=torch.float64))
    return o.detach().numpy(), tuple(a.grad.numpy() for a in (q, k, v))


def _ours(q, k, v, do, mask, dtype):
    f = jax.jit(lambda q, k, v, do: jax.vjp(
        lambda q, k, v: blocks.attend(q, k, v, jnp.asarray(mask)), q, k, v))
    o, vjp = f(*(jnp.asarray(a, dtype) for a in (q, k, v, do)))
    grads = jax.jit(vjp)(jnp.asarray(do, dtype))
    return np.asarray(o, np.float64), tuple(np.asarray(g, np.float64) for g in grads)


@pytest.fixture(autouse=True)
def _fp32_matmuls():
    with jax.default_matmul_precision("float32"):
        yield


@pytest.mark.parametrize("s_len", [T, T + 5], ids=["self", "prefix_cache"])
def test_values_and_gradients_equal_autograd_float64(s_len):
    q, k, v, do, mask = _inputs(s_len)
    assert not mask[1].any(-1).all()  # fully masked queries are part of the check
    o_ref, g_ref = _reference(q, k, v, do, mask)
    o, g = _ours(q, k, v, do, mask, jnp.float32)
    np.testing.assert_allclose(o, o_ref, rtol=1e-5, atol=1e-5)
    for name, a, r in zip("qkv", g, g_ref, strict=True):
        assert np.abs(r).max() > 0.1, name  # not vacuous
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=2e-5, err_msg=f"d{name}")


def test_fully_masked_queries_send_no_gradient_to_q_or_k():
    q, k, v, do, mask = _inputs(T)
    pad = ~mask.any(-1)  # [B, T] queries that see no key
    do_pad = np.where(pad[..., None, None], do, 0.0)  # gradient on padding queries only
    _, (dq, dk, dv) = _ours(q, k, v, do_pad, mask, jnp.float32)
    assert np.abs(dq).max() == 0.0 and np.abs(dk).max() == 0.0
    assert np.abs(dv).max() > 0.1  # their output (the mean of v) does depend on v


def test_bfloat16_gradients_are_as_close_as_autodiff_of_the_forward_pass():
    """Against float64, the closed form in bf16 errs no more than jax autodiff of the same
    bf16 forward pass (the formula before the hand-written backward)."""
    q, k, v, do, mask = _inputs(T, seed=1)
    _, g_ref = _reference(q, k, v, do, mask)
    _, g_new = _ours(q, k, v, do, mask, jnp.bfloat16)

    def plain(q, k, v):
        s = jnp.einsum("btkge,bske->bkgts", q.reshape(B, T, K, H // K, E), k)
        s = jnp.where(jnp.asarray(mask)[:, None, None], s.astype(jnp.float32) * E**-0.5,
                      blocks._MASKED)
        p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
        return jnp.einsum("bkgts,bske->btkge", p, v).reshape(B, T, H, E)

    args = [jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)]
    g_old = jax.jit(jax.vjp(plain, *args)[1])(jnp.asarray(do, jnp.bfloat16))
    for name, new, old, ref in zip("qkv", g_new, g_old, g_ref, strict=True):
        err_new, err_old = np.abs(new - ref), np.abs(np.asarray(old, np.float64) - ref)
        assert err_new.mean() <= 1.05 * err_old.mean(), (name, err_new.mean(), err_old.mean())
        assert err_new.max() <= 1.25 * err_old.max(), (name, err_new.max(), err_old.max())
