"""Batch-invariant execution for the Llama decoder: fixed-shape blocked loops and attention.

XLA picks matmul blocking, multithreaded loop splits and fusions (hence fused multiply-adds) from
whole-array shapes, and these round differently: on CPU the same row can come out a few ulps
apart at batch 1 and batch 32. In batch-invariant mode every computation runs inside a loop over
fixed-shape blocks (ROW_BLOCK token rows, DECODE_ROWS for one-token steps; QUERY_BLOCK queries of
ATTN_ROWS sequences against KEY_BLOCK keys at a time), so each row meets the same compiled code
whatever surrounds it. A token is always computed in the same phase (prompt or one-token step),
so the two phases may use different blocks. Einsum legend as in ``llama.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

ROW_BLOCK, DECODE_ROWS, QUERY_BLOCK, KEY_BLOCK, ATTN_ROWS = 64, 32, 16, 64, 8
_MASKED = float(np.finfo(np.float32).min)


def _opaque(n: int, probe: Array) -> Array:
    """``n`` as a value XLA cannot fold, so a one-trip loop is not inlined into its context."""
    p = probe.reshape(-1)[0].astype(jnp.float32)
    return jnp.int32(n) + (p != p).astype(jnp.int32)  # p != p only for NaN: one harmless rerun


def materialize(fn: Callable, *xs: Array):
    """``fn(*xs)``, on CPU computed once into buffers (a one-trip loop) that consumers read.

    XLA:CPU fuses elementwise producers into each consumer, so cos/sin broadcast over heads
    and read by every layer would be recomputed per head and per layer. Other backends get
    ``fn(*xs)``: their fusions recompute cheaply.
    """
    if jax.default_backend() != "cpu":
        return fn(*xs)
    init = jax.tree.map(lambda sd: jnp.zeros(sd.shape, sd.dtype), jax.eval_shape(fn, *xs))
    return jax.lax.fori_loop(0, _opaque(1, xs[0]), lambda i, _: fn(*xs), init)


def blockwise(fn: Callable, xs: tuple[Array, ...], block: int, n_valid: Array | None = None):
    """Maps ``fn(i, *blocks)`` over consecutive ``block``-row slices of ``xs`` (arrays [N, ...])
    in a loop; returns fn's outputs concatenated back to N rows. With ``n_valid`` (traced) only
    the blocks holding the first n_valid rows are computed; later rows come back as zeros."""
    n = xs[0].shape[0]
    nb = -(-n // block)
    # One spare block: a slice or update covering a whole buffer would be simplified away,
    # changing the fusions (and rounding) of a one-block call.
    xs = tuple(jnp.pad(a, [(0, (nb + 1) * block - n)] + [(0, 0)] * (a.ndim - 1)) for a in xs)

    def take(i):
        return tuple(jax.lax.dynamic_slice_in_dim(a, i * block, block) for a in xs)

    shapes = jax.eval_shape(fn, jnp.int32(0), *take(0))
    outs = jax.tree.map(lambda sd: jnp.zeros(((nb + 1) * block,) + sd.shape[1:], sd.dtype),
                        shapes)

    def body(i, outs):
        return jax.tree.map(lambda o, r: jax.lax.dynamic_update_slice_in_dim(o, r, i * block, 0),
                            outs, fn(i, *take(i)))

    trips = _opaque(nb, xs[0]) if n_valid is None else (n_valid + block - 1) // block
    outs = jax.lax.fori_loop(0, trips, body, outs)
    return jax.tree.map(lambda o: o[:n], outs)


class RowOrder(NamedTuple):
    """Token rows reordered real-first, so blocks of padding rows can be skipped."""

    order: Array  # int32[N]: real rows first, each group in its original order
    inverse: Array  # int32[N]
    n_real: Array  # int32[]

    @classmethod
    def of(cls, segment_ids: Array) -> RowOrder:
        pad = (segment_ids.reshape(-1) == 0).astype(jnp.int32)
        order = jnp.argsort(pad, stable=True)
        return cls(order, jnp.argsort(order), (1 - pad).sum())


def rowwise(fn: Callable, xs: tuple[Array, ...], batch_invariant: bool, one_token: bool,
             rows: RowOrder | None = None):
    """Token-wise ``fn`` over rows [N, ...]: one call, or fixed-size row blocks.

    In blocks, a row's result does not depend on the rows next to it, so the rows may be
    reordered (``rows``) to compute only the blocks that hold real tokens; padding rows then
    come back as zeros.
    """
    if not batch_invariant:
        return fn(*xs)
    block = DECODE_ROWS if one_token else ROW_BLOCK
    if rows is None:
        return blockwise(lambda i, *blocks: fn(*blocks), xs, block)
    xs = tuple(jnp.take(x, rows.order, axis=0) for x in xs)
    out = blockwise(lambda i, *blocks: fn(*blocks), xs, block, rows.n_real)
    return jax.tree.map(lambda o: jnp.take(o, rows.inverse, axis=0), out)


def attend(q: Array, k: Array, v: Array, mask: Array, batch_invariant: bool = False) -> Array:
    """Softmax attention with grouped kv heads.

    q float[B, T, H, E], k/v float[B, S, K, E] (rotated), mask bool[B, T, S] ->
    float[B, T, H, E]. A finite fill keeps fully masked (padding) queries finite: they average
    all keys. With ``batch_invariant``, the QUERY_BLOCK-query blocks of ATTN_ROWS sequences
    (DECODE_ROWS in one-token steps) attend to KEY_BLOCK keys at a time with an online softmax;
    keys past a row's end are masked and add exact zeros, so the cache length does not matter
    either (a multiple of KEY_BLOCK avoids a padded copy of the cache).
    """
    if not batch_invariant:
        return _softmax_attention(q, k, v, mask)
    b, t, h, e = q.shape
    nk = k.shape[2]
    g, scale, dt = h // nk, e**-0.5, q.dtype

    def scores(qr, kr):  # [..., T, K, G, E] x [..., S, K, E] -> float32[..., K, G, T, S]
        return jnp.einsum("...tkge,...ske->...kgts", qr, kr).astype(jnp.float32) * scale

    qb = min(t, QUERY_BLOCK)
    n_keys = -(-k.shape[1] // KEY_BLOCK)
    # At least two key blocks, so a block slice never spans (and is simplified to) the whole.
    pad_t, pad_s = -t % qb, max(n_keys, 2) * KEY_BLOCK - k.shape[1]
    pad = lambda x, *w: jnp.pad(x, list(w) + [(0, 0)] * (x.ndim - len(w)))  # noqa: E731
    q, mask = pad(q, (0, 0), (0, pad_t)), pad(mask, (0, 0), (0, pad_t), (0, pad_s))
    k, v = pad(k, (0, 0), (0, pad_s)), pad(v, (0, 0), (0, pad_s))
    nq = q.shape[1] // qb

    n_pairs = DECODE_ROWS if t == 1 else ATTN_ROWS

    def query_blocks(i, qi, mi):  # n_pairs (row, query block) pairs: [P, qb, H, E], ...
        rows = (i * n_pairs + jnp.arange(n_pairs)) // nq
        qi = qi.reshape(n_pairs, qb, nk, g, e)

        def key_block(j, carry):
            m, l, acc = carry
            kj, vj = (jnp.take(jax.lax.dynamic_slice_in_dim(a, j * KEY_BLOCK, KEY_BLOCK, axis=1),
                               rows, axis=0, mode="clip") for a in (k, v))
            mj = jax.lax.dynamic_slice_in_dim(mi, j * KEY_BLOCK, KEY_BLOCK, axis=2)
            s = jnp.where(mj[:, None, None], scores(qi, kj), _MASKED)
            m_new = jnp.maximum(m, s.max(-1))
            p = jnp.exp(s - m_new[..., None])
            alpha = jnp.exp(m - m_new)
            pv = jnp.einsum("pkgts,pske->pkgte", p.astype(dt), vj).astype(jnp.float32)
            return m_new, l * alpha + p.sum(-1), acc * alpha[..., None] + pv

        shape = (n_pairs, nk, g, qb)
        init = (jnp.full(shape, _MASKED, jnp.float32), jnp.zeros(shape, jnp.float32),
                jnp.zeros(shape + (e,), jnp.float32))
        _, l, acc = jax.lax.fori_loop(0, _opaque(n_keys, qi), key_block, init)
        out = (acc / l[..., None]).astype(dt).transpose(0, 3, 1, 2, 4)  # [P, qb, K, G, E]
        return out.reshape(n_pairs, qb, h, e)

    out = blockwise(query_blocks, (q.reshape(-1, qb, h, e), mask.reshape(-1, qb, mask.shape[-1])),
                    n_pairs)
    return out.reshape(b, -1, h, e)[:, :t]


def _heads_major(q: Array, k: Array, v: Array) -> tuple[Array, Array, Array]:
    """q [B, T, H, E] -> [B, K, G, T, E]; k/v [B, S, K, E] -> [B, K, S, E]."""
    b, t, h, e = q.shape
    nk = k.shape[2]
    qh = q.reshape(b, t, nk, h // nk, e).transpose(0, 2, 3, 1, 4)
    return qh, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)


def _attention_fwd(q: Array, k: Array, v: Array, mask: Array):
    b, t, h, e = q.shape
    qh, kh, vh = _heads_major(q, k, v)
    s = jnp.einsum("bkgte,bkse->bkgts", qh, kh).astype(jnp.float32) * e**-0.5
    p = jax.nn.softmax(jnp.where(mask[:, None, None], s, _MASKED), axis=-1)
    o = jnp.einsum("bkgts,bkse->bkgte", p.astype(v.dtype), vh)
    return o.transpose(0, 3, 1, 2, 4).reshape(b, t, h, e), (qh, kh, vh, p, mask)


def _attention_bwd(res, do: Array):
    qh, kh, vh, p, mask = res
    b, nk, g, t, e = qh.shape
    doh = do.reshape(b, t, nk, g, e).transpose(0, 2, 3, 1, 4)  # [B, K, G, T, E]
    dv = jnp.einsum("bkgts,bkgte->bkse", p.astype(vh.dtype), doh)
    # A fully masked query's output is a constant average of v: no gradient reaches its scores.
    # Elsewhere p is exactly 0 at masked keys, so dS is too.
    doh = doh * jnp.any(mask, axis=-1)[:, None, None, :, None].astype(doh.dtype)
    dp = jnp.einsum("bkgte,bkse->bkgts", doh, vh, preferred_element_type=jnp.float32)
    d = jnp.sum(p * dp, axis=-1, keepdims=True)
    ds = (p * (dp - d) * e**-0.5).astype(qh.dtype)
    dq = jnp.einsum("bkgts,bkse->bkgte", ds, kh).transpose(0, 3, 1, 2, 4).reshape(do.shape)
    dk = jnp.einsum("bkgts,bkgte->bkse", ds, qh)
    return dq, dk.transpose(0, 2, 1, 3), dv.transpose(0, 2, 1, 3), None


@jax.custom_vjp
def _softmax_attention(q: Array, k: Array, v: Array, mask: Array) -> Array:
    """``attend``'s whole-array softmax attention, with the closed-form backward pass.

    The backward pass is the closed form dS = P * (dP - sum_s P * dP) on the saved float32
    probabilities (masked scores get no gradient, as through the mask's select): on CPU it
    takes about half the time of differentiating the forward pass, which makes extra passes
    over the [B, H, T, S] scores. Heads-major [B, K, G, T, E] operands keep every matmul's batch
    dimensions leading.
    """
    return _attention_fwd(q, k, v, mask)[0]


_softmax_attention.defvjp(_attention_fwd, _attention_bwd)


def fused_attend(q: Array, k: Array, v: Array, mask: Array, implementation: str) -> Array:
    """``attend`` (cache-free: key i is query i) through ``jax.nn.dot_product_attention``.

    q float[B, T, H, E], k/v float[B, T, K, E], mask bool[B, T, T] (already causal) ->
    float[B, T, H, E]. ``is_causal`` lets flash kernels skip the blocks above the diagonal. Rows
    whose mask is all False (padding) may differ from ``attend``; no real token reads them.
    ``mask`` may instead be int32[B] lengths: row b's first lengths[b] tokens attend causally
    among themselves (no bias at all; the rest is padding).

    cuDNN receives a bool[B, T, T] mask as an additive bias, and jax asks its backward kernel
    for that bias's gradient too (a [B, 1, T, T] output per layer) although a mask has none;
    ``_no_bias_grad`` switches that output off.
    """
    if mask.ndim == 1:
        kw = {"query_seq_lengths": mask, "key_value_seq_lengths": mask}
    else:
        kw = {"mask": mask[:, None]}
    with _no_bias_grad() if implementation == "cudnn" else contextlib.nullcontext():
        return jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                            implementation=implementation, **kw)


@contextlib.contextmanager
def _no_bias_grad():
    """While jax traces a cuDNN attention call: its backward computes no bias gradient.

    jax decides this at trace time with ``fused_attention_stablehlo.should_export_dbias``
    (always True as of jax 0.10-0.11); a jax without that hook is left as it is.
    """
    try:
        from jax._src.cudnn import fused_attention_stablehlo as fa
    except ImportError:
        yield
        return
    hook = getattr(fa, "should_export_dbias", None)
    if hook is None:
        yield
        return
    fa.should_export_dbias = lambda *args, **kwargs: False
    try:
        yield
    finally:
        fa.should_export_dbias = hook
