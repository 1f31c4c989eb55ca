"""Llama-family decoder LLMs in Flax NNX: Llama-2/3/3.1, Vicuna, Yi, Mistral and Qwen2/2.5.

All of them are one architecture: RMSNorm, rotary position embeddings (default, linear or llama3
frequency scaling), SwiGLU MLP, grouped-query attention with optional q/k/v (and output) biases,
and optionally tied input/output embeddings. The variants are configs of the same module.

Attention masking is one mechanism for padding and packing: a query attends to a key iff both
carry the same non-zero segment id and the key is not later in the sequence (plus Mistral's
sliding window, measured in position ids). Segment id 0 marks padding.

This file is the training forward pass. Generation's cached, batch-invariant pass over the same
modules is ``decode.py``; HF checkpoint conversion is ``hf.py``.

The MLP and the output projection multiply token rows float[B * T, D], not float[B, T, D]: on
XLA:CPU, weight gradients that contract both B and T made a train step of a 4-layer, 32k-vocab
model 1.8x slower.

Einsum legend: B batch, T query length, S key (cache) length, D model width, F MLP width,
H query heads, K kv heads, G query heads per kv head, E head dim, V vocab.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict

from cambrian.models.llm.blocks import attend, fused_attend, materialize
from cambrian.sharding import constrain

Array = jax.Array
LayerHook = Callable[[int, Array], Array]

MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")
REMAT_POLICIES = {  # LlamaConfig.remat, besides "none"
    "full": None,  # keep only each layer's input; recompute everything in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls
}


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Architecture and numerics of a Llama-family model.

    ``dtype`` is the compute dtype (activations, KV cache), ``param_dtype`` the storage dtype of
    the weights. ``rope_scaling`` is None or a mapping with ``rope_type`` in ``ROPE_TYPES`` and
    that type's fields as in HF ``config.json``. ``attention_bias`` puts biases on q/k/v;
    ``attention_out_bias`` on the output projection (Llama's ``attention_bias`` sets both, Qwen2
    has only the q/k/v ones). ``attention`` picks the attention of the cache-free, full-sequence
    forward (training): "einsum" (``attend``), or ``jax.nn.dot_product_attention`` with its "xla"
    or "cudnn" (flash attention; GPU, bf16/fp16) implementation. Generation always uses
    ``attend``. ``remat`` rematerialises each decoder layer in the training forward's backward
    pass ("none" or a key of ``REMAT_POLICIES``); parameters are the same whatever it is.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rope_scaling: Any = None
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    attention_out_bias: bool = False
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    sliding_window: int | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"
    model_type: str = "llama"
    attention: str = "einsum"
    remat: str = "none"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        fix = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if self.num_kv_heads is None:
            fix("num_kv_heads", self.num_heads)
        if self.head_dim is None:
            fix("head_dim", self.hidden_size // self.num_heads)
        fix("dtype", jnp.dtype(self.dtype).name)
        fix("param_dtype", jnp.dtype(self.param_dtype).name)
        if isinstance(self.eos_token_id, list):
            fix("eos_token_id", tuple(self.eos_token_id))
        for field, allowed in (("model_type", MODEL_TYPES), ("attention", ATTENTION_IMPLS),
                               ("remat", ("none", *REMAT_POLICIES))):
            if getattr(self, field) not in allowed:
                raise ValueError(f"LlamaConfig.{field}={getattr(self, field)!r}; expected one "
                                 f"of {allowed}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"LlamaConfig: num_heads={self.num_heads} is not a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        if self.rope_scaling is not None:
            rs = dict(self.rope_scaling)
            rope_type = rs.pop("rope_type", rs.pop("type", "default"))
            if rope_type not in ROPE_TYPES:
                raise NotImplementedError(
                    f"LlamaConfig.rope_scaling: rope_type {rope_type!r} is not supported; "
                    f"supported: {ROPE_TYPES}")
            # Hashable so the config can live in a module's static graph definition.
            fix("rope_scaling", None if rope_type == "default"
                else FrozenDict(rope_type=rope_type, **rs))


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], names: tuple[str, ...], dtype: str,
           init: str = "normal") -> nnx.Param:
    """A parameter annotated with logical axis names.

    The names are metadata only (no eager placement), so modules build without a mesh; a
    sharding module reads them with ``nnx.get_partition_spec`` and applies its rules.
    """
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        value = (0.02 * jax.random.normal(rngs.params(), shape, jnp.float32)).astype(dtype)
    return nnx.Param(value, out_sharding=names, eager_sharding=False)


# ----------------------------------------------------------------------------------------------
# Rotary position embeddings.


def rope_frequencies(config: LlamaConfig) -> np.ndarray:
    """float32[E/2] inverse frequencies, computed in float32 the way HF transformers does."""
    e = config.head_dim
    inv = (1.0 / (np.float32(config.rope_theta) ** (np.arange(0, e, 2, dtype=np.float32) / e)))
    inv = inv.astype(np.float32)
    rs = config.rope_scaling
    if rs is None:
        return inv
    if rs["rope_type"] == "linear":
        return (inv / np.float32(rs["factor"])).astype(np.float32)
    # llama3: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    factor = np.float32(rs["factor"])
    lo, hi = np.float32(rs["low_freq_factor"]), np.float32(rs["high_freq_factor"])
    old = np.float32(rs["original_max_position_embeddings"])
    wavelen = np.float32(2 * math.pi) / inv
    scaled = np.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return np.where(medium, blended, scaled).astype(np.float32)


def rope_tables(positions: Array, inv_freq: np.ndarray, dtype: Any) -> tuple[Array, Array]:
    """cos, sin float[..., E] of rotary ``positions`` int32[...], computed once per forward.

    On CPU they are materialized (``blocks.materialize``): fused into every layer's rotation,
    they would be recomputed for each head and layer."""
    ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [..., E/2]
    ang = jnp.concatenate([ang, ang], axis=-1)
    return materialize(lambda a: (jnp.cos(a).astype(dtype), jnp.sin(a).astype(dtype)), ang)


def apply_rope(x: Array, cos: Array, sin: Array) -> Array:
    """Rotates ``x`` float[..., N, E] by ``rope_tables`` cos, sin float[..., E] (HF
    rotate-half layout)."""
    cos, sin = cos[..., None, :], sin[..., None, :]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x * cos + jnp.concatenate([-x2, x1], axis=-1) * sin


# ----------------------------------------------------------------------------------------------
# Masks and positions.


def segment_mask(segment_ids: Array, positions: Array, slots: Array, key_segment_ids: Array,
                 key_positions: Array, key_slots: Array,
                 sliding_window: int | None) -> Array:
    """bool[B, T, S]: query t sees key s iff they share a non-zero segment id and key slot
    <= query slot (and, with a sliding window, query position - key position < window).

    Queries: segment_ids, positions int32[B, T], slots int32[B or 1, T]; keys likewise [., S].
    """
    mask = ((segment_ids[:, :, None] == key_segment_ids[:, None, :])
            & (key_segment_ids[:, None, :] != 0)
            & (key_slots[:, None, :] <= slots[:, :, None]))
    if sliding_window is not None:
        mask &= positions[:, :, None] - key_positions[:, None, :] < sliding_window
    return mask


def causal_mask(segment_ids: Array, positions: Array, sliding_window: int | None) -> Array:
    """``segment_mask`` of a sequence attending to itself: bool[B, T, T]."""
    slots = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)[None]
    return segment_mask(segment_ids, positions, slots, segment_ids, positions, slots,
                        sliding_window)


def padding_last(segment_ids: Array) -> tuple[Array, Array]:
    """(order int32[B, T], lengths int32[B]): a stable sort of each row that moves its padding
    (segment 0) to the end, and the number of real tokens per row."""
    order = jnp.argsort(segment_ids == 0, axis=1, stable=True)
    return order, jnp.sum(segment_ids != 0, axis=1, dtype=jnp.int32)


def _reorder(x: Array, order: Array) -> Array:
    """x [B, T, ...] with each row's tokens taken in ``order`` int32[B, T]."""
    return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)


# ----------------------------------------------------------------------------------------------
# Modules.


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, param_dtype: str):
        self.eps = eps
        self.weight = _param(None, (dim,), ("embed",), param_dtype, init="ones")

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * x32.astype(x.dtype)


class Attention(nnx.Module):
    """Grouped-query self-attention with rotary positions."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        d, h, k, e, pd = (config.hidden_size, config.num_heads, config.num_kv_heads,
                          config.head_dim, config.param_dtype)
        self.config = config
        self.q = _param(rngs, (d, h, e), ("embed", "heads", "head_dim"), pd)
        self.k = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.v = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.o = _param(rngs, (h, e, d), ("heads", "head_dim", "embed"), pd)
        if config.attention_bias:
            self.q_bias = _param(rngs, (h, e), ("heads", "head_dim"), pd, init="zeros")
            self.k_bias = _param(rngs, (k, e), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias = _param(rngs, (k, e), ("kv_heads", "head_dim"), pd, init="zeros")
        if config.attention_out_bias:
            self.o_bias = _param(rngs, (d,), ("embed",), pd, init="zeros")

    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array) -> Array:
        """x float[B, T, D], rope: ``rope_tables`` cos, sin float[B, T, E], mask bool[B, T, T]
        (or, for the fused attentions only, int32[B] lengths: see ``fused_attend``) ->
        float[B, T, D]."""
        q, k, v = self.qkv(x, *rope)
        q = constrain(q, ("batch", "length", "heads", "head_dim"))
        if self.config.attention == "einsum":
            o = attend(q, k, v, mask)
        else:
            o = fused_attend(q, k, v, mask, self.config.attention)
        return self.out(o)

    def qkv(self, x: Array, cos: Array, sin: Array) -> tuple[Array, Array, Array]:
        """float[..., D], ``rope_tables`` float[..., E] -> rotated q float[..., H, E], rotated k
        and v float[..., K, E]."""
        w = lambda p: p[...].astype(x.dtype)  # noqa: E731
        q = jnp.einsum("...d,dhe->...he", x, w(self.q))
        k = jnp.einsum("...d,dke->...ke", x, w(self.k))
        v = jnp.einsum("...d,dke->...ke", x, w(self.v))
        if self.config.attention_bias:
            q, k, v = q + w(self.q_bias), k + w(self.k_bias), v + w(self.v_bias)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def out(self, o: Array) -> Array:
        """float[..., H, E] -> float[..., D]."""
        y = jnp.einsum("...he,hed->...d", o, self.o[...].astype(o.dtype))
        return y + self.o_bias[...].astype(o.dtype) if self.config.attention_out_bias else y


class MLP(nnx.Module):
    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        d, f, pd = config.hidden_size, config.intermediate_size, config.param_dtype
        self.gate = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.up = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.down = _param(rngs, (f, d), ("mlp", "embed"), pd)

    def __call__(self, x: Array) -> Array:
        """float[..., D] -> float[..., D], on rows float[N, D] (see the module docstring)."""
        dt, rows = x.dtype, x.reshape(-1, x.shape[-1])
        g = jnp.einsum("nd,df->nf", rows, self.gate[...].astype(dt))
        u = jnp.einsum("nd,df->nf", rows, self.up[...].astype(dt))
        y = jnp.einsum("nf,fd->nd", jax.nn.silu(g) * u, self.down[...].astype(dt))
        return y.reshape(x.shape)


class DecoderLayer(nnx.Module):
    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.param_dtype)
        self.attn = Attention(config, rngs=rngs)
        self.post_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps,
                                      config.param_dtype)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array) -> Array:
        """x float[B, T, D], rope and mask as in ``Attention`` -> float[B, T, D]; rematerialised
        as ``config.remat`` says."""
        if self.config.remat == "none":
            return self.block(x, rope, mask)
        policy = REMAT_POLICIES[self.config.remat]
        return nnx.remat(DecoderLayer.block, policy=policy)(self, x, rope, mask)

    def block(self, x: Array, rope: tuple[Array, Array], mask: Array) -> Array:
        x = x + self.attn(self.input_norm(x), rope, mask)
        x = x + self.mlp(self.post_attn_norm(x))
        return constrain(x, ("batch", "length", "embed"))


class Llama(nnx.Module):
    """A Llama-family causal LM. ``Llama(config, rngs=...)`` is randomly initialised
    (N(0, 0.02)); ``hf.load`` reads a checkpoint."""

    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, pd = config, config.param_dtype
        self.embedding = _param(rngs, (c.vocab_size, c.hidden_size), ("vocab", "embed"), pd)
        self.layers = nnx.List([DecoderLayer(c, rngs=rngs) for _ in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, pd)
        if not c.tie_word_embeddings:
            self.lm_head = _param(rngs, (c.hidden_size, c.vocab_size), ("embed", "vocab"), pd)

    def embed(self, tokens: Array) -> Array:
        """int32[B, T] -> float[B, T, D] (compute dtype)."""
        x = jnp.take(self.embedding[...], tokens, axis=0).astype(self.config.dtype)
        return constrain(x, ("batch", "length", "embed"))

    @property
    def output_name(self) -> str:
        """The output projection's parameter: "embedding" (tied) or "lm_head"."""
        return "embedding" if self.config.tie_word_embeddings else "lm_head"

    def output_weight(self) -> Array:
        """The output projection as stored (param dtype): float[V, D] when the embeddings are
        tied, else float[D, V]; ``logits`` applies it."""
        return getattr(self, self.output_name)[...]

    def logits(self, hidden: Array, weight: Array) -> Array:
        """float[..., D] hidden x ``output_weight()`` (cast to the hidden's dtype) -> float32
        logits."""
        w = weight.astype(hidden.dtype)
        return (hidden @ (w.T if self.config.tie_word_embeddings else w)).astype(jnp.float32)

    def forward(self, tokens: Array | None = None, *, embeds: Array | None = None,
                positions: Array | None = None, segment_ids: Array | None = None,
                layer_hook: LayerHook | None = None, with_logits: bool = True,
                one_segment: bool = False) -> tuple[Array | None, dict]:
        """Runs the decoder over whole sequences; returns ``(logits, out)``.

        tokens int32[B, T] or embeds float[B, T, D] (spliced inputs, e.g. visual tokens).
        positions int32[B, T]: rotary positions; default ``arange(T)``. segment_ids int32[B, T]:
        attention stays within equal non-zero ids, causally; 0 is padding; default all ones.
        layer_hook(i, hidden float[B, T, D]) -> float[B, T, D] is applied after layer i.
        one_segment: the caller promises each row holds a single segment id besides 0 (no
        packing; padding anywhere). With the "xla"/"cudnn" attention (no hook or sliding
        window), the padding is then stable-sorted to the end of each row for the decoder, so
        attention takes per-row lengths + causal instead of a [B, T, T] mask (flash kernels
        skip masked tiles), and the order is restored after the last layer.
        logits float32[B, T, V] (None if ``with_logits=False``); out["hidden"] is the final
        normed hidden state float[B, T, D].
        """
        if embeds is None:
            if tokens is None:
                raise ValueError("Llama.forward: pass tokens int32[B, T] or embeds float[B, T, D]")
            embeds = self.embed(tokens)
        c = self.config
        x = embeds.astype(c.dtype)
        b, t = x.shape[:2]
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        compact = (one_segment and layer_hook is None and c.attention != "einsum"
                   and c.sliding_window is None)
        if compact:
            # Causality among the real tokens survives a stable sort, and rope reads
            # `positions`, so the decoder cannot tell; the mask becomes lengths int32[B].
            order, mask = padding_last(segment_ids)
            x, positions = _reorder(x, order), _reorder(positions, order)
        else:
            mask = causal_mask(segment_ids, positions, c.sliding_window)
        rope = rope_tables(positions, rope_frequencies(c), x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask)
            if layer_hook is not None:
                x = layer_hook(i, x)
        if compact:
            x = _reorder(x, jnp.argsort(order, axis=1))
        hidden = self.norm(x)
        logits = None
        if with_logits:  # on rows (see the module docstring)
            logits = self.logits(hidden.reshape(b * t, -1), self.output_weight())
            logits = logits.reshape(b, t, -1)
        return logits, {"hidden": hidden}

    def __call__(self, tokens: Array | None = None, **kwargs) -> Array:
        """int32[B, T] -> float32[B, T, V] logits (keywords as in ``forward``)."""
        return self.forward(tokens, **kwargs)[0]
