"""Generation's forward pass over a ``Llama``: a KV cache, and optionally batch invariance.

The same modules and parameters as the training forward (``Llama.forward``), run differently:
new tokens append their keys/values to a cache at each row's own length and attend to the whole
cache, and with ``batch_invariant`` every token-wise step (norms, projections, MLP, rope tables,
logits) runs through ``blocks.rowwise`` over fixed-shape row blocks and attention through
``blocks.attend``'s blocked form, so a row's result does not depend on the batch size, its
neighbours or the query/cache length (see ``blocks.py`` and ``generate.py``). Padding rows of
a prompt are skipped and come back as zeros.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cambrian.models.llm.blocks import RowOrder, attend, rowwise
from cambrian.models.llm.llama import (
    Array,
    DecoderLayer,
    LayerHook,
    Llama,
    LlamaConfig,
    rope_frequencies,
    rope_tables,
    segment_mask,
)
from cambrian.sharding import constrain


class KVCache(NamedTuple):
    """Per-layer keys/values plus the per-slot mask data; each row appends at its own length.

    k, v: per layer float[B, S, K, E] (keys rotated); segment_ids, positions: int32[B, S] of the
    filled slots (segment 0 = empty); lengths: int32[B] number of slots used by each row.
    """

    k: tuple[Array, ...]
    v: tuple[Array, ...]
    segment_ids: Array
    positions: Array
    lengths: Array


def init_cache(model_or_config: Llama | LlamaConfig, batch: int, max_len: int,
               dtype: Any = None) -> KVCache:
    """An empty cache for ``batch`` rows of up to ``max_len`` tokens (dtype: compute dtype)."""
    c = model_or_config.config if isinstance(model_or_config, Llama) else model_or_config
    dtype = jnp.dtype(dtype or c.dtype)
    shape = (batch, max_len, c.num_kv_heads, c.head_dim)
    layers = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(c.num_layers))  # noqa: E731
    slots = jnp.zeros((batch, max_len), jnp.int32)
    return KVCache(layers(), layers(), slots, slots, jnp.zeros((batch,), jnp.int32))


def _write_rows(buf: Array, new: Array, start: Array) -> Array:
    """Writes ``new`` [B, T, ...] into ``buf`` [B, S, ...] at per-row offsets ``start`` [B]."""
    return jax.vmap(lambda b, n, s: jax.lax.dynamic_update_slice_in_dim(b, n, s, axis=0))(
        buf, new.astype(buf.dtype), start)


def forward(model: Llama, embeds: Array, cache: KVCache, *, positions: Array | None = None,
            segment_ids: Array | None = None, layer_hook: LayerHook | None = None,
            batch_invariant: bool = False) -> tuple[Array, KVCache]:
    """Runs the decoder over new tokens; returns ``(hidden, new_cache)``.

    embeds float[B, T, D]; their keys/values are appended at each row's ``cache.lengths`` and
    queries see the whole cache. positions int32[B, T]: rotary positions (default: the slots
    after the filled length); segment_ids int32[B, T] (default all ones; 0 is padding).
    layer_hook(i, hidden float[B, T, D]) -> float[B, T, D] is applied after layer i.
    hidden: the final normed hidden state float[B, T, D] (``project`` gives logits).
    """
    c = model.config
    x = embeds.astype(c.dtype)
    b, t = x.shape[:2]
    if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
    start = cache.lengths
    slots = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None]  # [B, T]
    if positions is None:
        positions = slots
    kseg = _write_rows(cache.segment_ids, segment_ids, start)
    kpos = _write_rows(cache.positions, positions, start)
    kslot = jnp.arange(kseg.shape[1], dtype=jnp.int32)[None]
    mask = segment_mask(segment_ids, positions, slots, kseg, kpos, kslot, c.sliding_window)

    # Prompts: skip padding rows (one-token steps have too few rows to gain from it).
    rows = RowOrder.of(segment_ids) if batch_invariant and t > 1 else None
    inv_freq = rope_frequencies(c)
    rope = rowwise(lambda p: rope_tables(p, inv_freq, x.dtype), (positions.reshape(b * t),),
                   batch_invariant, t == 1, rows)
    new_k, new_v = [], []
    for i, layer in enumerate(model.layers):
        x, (k, v) = _layer(layer, x, rope, mask, (cache.k[i], cache.v[i]), start,
                           batch_invariant, rows)
        new_k.append(k)
        new_v.append(v)
        if layer_hook is not None:
            x = layer_hook(i, x)
    hidden = rowwise(model.norm, (x.reshape(b * t, -1),), batch_invariant, t == 1, rows)
    return hidden.reshape(x.shape), KVCache(tuple(new_k), tuple(new_v), kseg, kpos, start + t)


def _layer(layer: DecoderLayer, x: Array, rope: tuple[Array, Array], mask: Array,
           cache_kv: tuple[Array, Array], start: Array, batch_invariant: bool,
           rows: RowOrder | None) -> tuple[Array, tuple[Array, Array]]:
    """``DecoderLayer.block`` with a cache: x float[B, T, D], rope float[B * T, E],
    mask bool[B, T, S] -> (float[B, T, D], the layer's (k, v) cache with x's keys written)."""
    c, inv = layer.config, batch_invariant
    b, t, d = x.shape
    flat = x.reshape(b * t, d)
    # Rotation happens inside the row-wise step so that, in batch-invariant mode, the cache
    # receives plain copies of values computed by the fixed-shape block code.
    q, k, v = rowwise(lambda r, cos, sin: layer.attn.qkv(layer.input_norm(r), cos, sin),
                      (flat, *rope), inv, t == 1, rows)
    q = constrain(q.reshape(b, t, c.num_heads, c.head_dim),
                  ("batch", "length", "heads", "head_dim"))
    k, v = (a.reshape(b, t, c.num_kv_heads, c.head_dim) for a in (k, v))
    k, v = _write_rows(cache_kv[0], k, start), _write_rows(cache_kv[1], v, start)
    o = attend(q, k, v, mask, inv)

    def finish(r, o):
        r = r + layer.attn.out(o)
        return r + layer.mlp(layer.post_attn_norm(r))

    x = rowwise(finish, (flat, o.reshape(b * t, c.num_heads, c.head_dim)), inv, t == 1, rows)
    return constrain(x.reshape(b, t, d), ("batch", "length", "embed")), (k, v)


def project(model: Llama, hidden: Array, batch_invariant: bool = False) -> Array:
    """Final-normed hidden float[..., D] -> float32[..., V] logits (``Llama.logits``, in row
    blocks when ``batch_invariant``)."""
    w = model.output_weight().astype(hidden.dtype)
    rows = hidden.reshape(-1, hidden.shape[-1])
    one_token = hidden.ndim == 2 or hidden.shape[1] == 1
    logits = rowwise(lambda r: model.logits(r, w), (rows,), batch_invariant, one_token)
    return logits.reshape(hidden.shape[:-1] + (-1,))
