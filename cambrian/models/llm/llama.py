"""Llama-family decoder LLMs in Flax NNX: Llama-2/3/3.1, Vicuna, Yi, Mistral and Qwen2/2.5.

All of them are one architecture: RMSNorm, rotary position embeddings (default, linear or llama3
frequency scaling), SwiGLU MLP, grouped-query attention with optional q/k/v (and output) biases,
and optionally tied input/output embeddings. The variants are configs of the same module.

Attention masking is one mechanism for padding and packing: a query attends to a key iff both
carry the same non-zero segment id and the key is not later in the sequence (plus Mistral's
sliding window, measured in position ids). Segment id 0 marks padding.

Einsum legend: B batch, T query length, S key (cache) length, D model width, F MLP width,
H query heads, K kv heads, G query heads per kv head, E head dim, V vocab.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from flax.core import FrozenDict, spmd
from safetensors.numpy import save_file

from cambrian.models.llm.blocks import (
    RowOrder,
    attend,
    fused_attend,
    materialize,
    rowwise,
)
from cambrian.models.weights import CheckpointError, open_checkpoint, take

Array = jax.Array
LayerHook = Callable[[int, Array], Array]

MODEL_TYPES = ("llama", "mistral", "qwen2")
ROPE_TYPES = ("default", "linear", "llama3")
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")


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
    ``attend``.
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
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"LlamaConfig.model_type={self.model_type!r}; expected one of "
                             f"{MODEL_TYPES}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"LlamaConfig.attention={self.attention!r}; expected one of "
                             f"{ATTENTION_IMPLS}")
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

    @classmethod
    def from_hf(cls, d: dict, **overrides) -> LlamaConfig:
        """Builds the config from an HF ``config.json`` dict (model_type llama|mistral|qwen2).

        Reads both the transformers-5 ``rope_parameters`` and the older ``rope_theta`` +
        ``rope_scaling`` fields. ``overrides`` (e.g. ``dtype="bfloat16"``) replace fields.
        """
        mt = d.get("model_type", "llama")
        if mt not in MODEL_TYPES:
            raise ValueError(f"config.json: model_type {mt!r} is not a Llama-family model; "
                             f"expected one of {MODEL_TYPES}")
        if d.get("hidden_act", "silu") != "silu":
            raise NotImplementedError(f"config.json: hidden_act {d['hidden_act']!r}; only silu")
        if d.get("mlp_bias"):
            raise NotImplementedError("config.json: mlp_bias=true is not supported")
        rp = dict(d.get("rope_parameters") or {})
        theta = rp.pop("rope_theta", d.get("rope_theta", 10000.0))
        scaling = d.get("rope_scaling") or rp or None
        if scaling:
            scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
        window = d.get("sliding_window")
        if mt == "qwen2" and not d.get("use_sliding_window", False):
            window = None
        layer_types = d.get("layer_types")
        if layer_types and len(set(layer_types)) > 1:
            raise NotImplementedError(
                f"config.json: mixed layer_types {sorted(set(layer_types))} (sliding window on "
                "some layers only) is not supported")
        if layer_types and layer_types[0] == "full_attention":
            window = None
        bias = bool(d.get("attention_bias", False)) if mt != "qwen2" else True
        kw = dict(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"], num_layers=d["num_hidden_layers"],
            num_heads=d["num_attention_heads"],
            num_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
            head_dim=d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"],
            rope_theta=float(theta), rope_scaling=scaling,
            rms_norm_eps=d.get("rms_norm_eps", 1e-6), attention_bias=bias,
            attention_out_bias=bias if mt == "llama" else False,
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            max_position_embeddings=d.get("max_position_embeddings", 4096),
            sliding_window=window, model_type=mt, bos_token_id=d.get("bos_token_id"),
            eos_token_id=d.get("eos_token_id"), pad_token_id=d.get("pad_token_id"))
        kw.update(overrides)
        return cls(**kw)

    def to_hf(self) -> dict:
        """The HF ``config.json`` dict for this config (``save_hf`` writes it)."""
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                "qwen2": "Qwen2ForCausalLM"}[self.model_type]
        if self.model_type == "llama" and self.attention_bias != self.attention_out_bias:
            raise ValueError("HF llama has one attention_bias for q/k/v/o; this config has "
                             f"attention_bias={self.attention_bias}, "
                             f"attention_out_bias={self.attention_out_bias}")
        if self.model_type == "qwen2" and not self.attention_bias:
            raise ValueError("HF qwen2 always has q/k/v biases; set attention_bias=True")
        rope = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        d = {
            "architectures": [arch], "model_type": self.model_type, "hidden_act": "silu",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim, "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "rope_parameters": rope, "rope_theta": self.rope_theta,
            "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id, "dtype": self.param_dtype,
        }
        if self.model_type == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        else:
            d["sliding_window"] = self.sliding_window
            if self.model_type == "qwen2":
                d["use_sliding_window"] = self.sliding_window is not None
                d["max_window_layers"] = 0
        return d


# ----------------------------------------------------------------------------------------------
# Parameters and activations with logical axis names.


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


def constrain(x: Array, names: tuple[str | None, ...]) -> Array:
    """Constrains an activation's sharding by logical axis names when a mesh and rules are set.

    Without an active mesh or logical-axis rules this is the identity, so single-device code
    needs no mesh context.
    """
    rules = dict(spmd.get_logical_axis_rules())
    if not rules or jax.sharding.get_abstract_mesh().empty:
        return x
    spec = jax.sharding.PartitionSpec(*(rules.get(n) if n else None for n in names))
    return jax.lax.with_sharding_constraint(x, spec)


# ----------------------------------------------------------------------------------------------
# Rotary position embeddings.


def rope_frequencies(cfg: LlamaConfig) -> np.ndarray:
    """float32[E/2] inverse frequencies, computed in float32 the way HF transformers does."""
    e = cfg.head_dim
    inv = (1.0 / (np.float32(cfg.rope_theta) ** (np.arange(0, e, 2, dtype=np.float32) / e)))
    inv = inv.astype(np.float32)
    rs = cfg.rope_scaling
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
# KV cache.


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


def init_cache(model_or_cfg: Llama | LlamaConfig, batch: int, max_len: int,
               dtype: Any = None) -> KVCache:
    """An empty cache for ``batch`` rows of up to ``max_len`` tokens (dtype: compute dtype)."""
    cfg = model_or_cfg.cfg if isinstance(model_or_cfg, Llama) else model_or_cfg
    dtype = jnp.dtype(dtype or cfg.dtype)
    shape = (batch, max_len, cfg.num_kv_heads, cfg.head_dim)
    layers = lambda: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))  # noqa: E731
    slots = jnp.zeros((batch, max_len), jnp.int32)
    return KVCache(layers(), layers(), slots, slots, jnp.zeros((batch,), jnp.int32))


def _write_rows(buf: Array, new: Array, start: Array) -> Array:
    """Writes ``new`` [B, T, ...] into ``buf`` [B, S, ...] at per-row offsets ``start`` [B]."""
    return jax.vmap(lambda b, n, s: jax.lax.dynamic_update_slice_in_dim(b, n, s, axis=0))(
        buf, new.astype(buf.dtype), start)


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
    """Projections of grouped-query attention (the attention itself is ``attend``)."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, h, k, e, pd = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                          cfg.param_dtype)
        self.cfg = cfg
        self.q = _param(rngs, (d, h, e), ("embed", "heads", "head_dim"), pd)
        self.k = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.v = _param(rngs, (d, k, e), ("embed", "kv_heads", "head_dim"), pd)
        self.o = _param(rngs, (h, e, d), ("heads", "head_dim", "embed"), pd)
        if cfg.attention_bias:
            self.q_bias = _param(rngs, (h, e), ("heads", "head_dim"), pd, init="zeros")
            self.k_bias = _param(rngs, (k, e), ("kv_heads", "head_dim"), pd, init="zeros")
            self.v_bias = _param(rngs, (k, e), ("kv_heads", "head_dim"), pd, init="zeros")
        if cfg.attention_out_bias:
            self.o_bias = _param(rngs, (d,), ("embed",), pd, init="zeros")

    def qkv(self, x: Array, cos: Array, sin: Array) -> tuple[Array, Array, Array]:
        """float[N, D], ``rope_tables`` float[N, E] -> rotated q float[N, H, E], rotated k and
        v float[N, K, E]."""
        w = lambda p: p[...].astype(x.dtype)  # noqa: E731
        q = jnp.einsum("nd,dhe->nhe", x, w(self.q))
        k = jnp.einsum("nd,dke->nke", x, w(self.k))
        v = jnp.einsum("nd,dke->nke", x, w(self.v))
        if self.cfg.attention_bias:
            q, k, v = q + w(self.q_bias), k + w(self.k_bias), v + w(self.v_bias)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def out(self, o: Array) -> Array:
        """float[N, H, E] -> float[N, D]."""
        y = jnp.einsum("nhe,hed->nd", o, self.o[...].astype(o.dtype))
        return y + self.o_bias[...].astype(o.dtype) if self.cfg.attention_out_bias else y


class MLP(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        d, f, pd = cfg.hidden_size, cfg.intermediate_size, cfg.param_dtype
        self.gate = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.up = _param(rngs, (d, f), ("embed", "mlp"), pd)
        self.down = _param(rngs, (f, d), ("mlp", "embed"), pd)

    def __call__(self, x: Array) -> Array:
        dt = x.dtype
        g = jnp.einsum("...d,df->...f", x, self.gate[...].astype(dt))
        u = jnp.einsum("...d,df->...f", x, self.up[...].astype(dt))
        return jnp.einsum("...f,fd->...d", jax.nn.silu(g) * u, self.down[...].astype(dt))


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.param_dtype)
        self.attn = Attention(cfg, rngs=rngs)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, cfg.param_dtype)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x: Array, rope: tuple[Array, Array], mask: Array,
                 cache_kv: tuple[Array, Array] | None = None, start: Array | None = None,
                 batch_invariant: bool = False, row_order: RowOrder | None = None):
        """x float[B, T, D], rope: ``rope_tables`` cos, sin float[B * T, E], mask
        bool[B, T, S] (or, for the fused attentions only, int32[B] lengths: see
        ``fused_attend``) -> (float[B, T, D], updated (k, v) cache or None)."""
        cfg, inv = self.cfg, batch_invariant
        b, t, d = x.shape
        rows = x.reshape(b * t, d)
        # Rotation happens inside the row-wise step so that, in batch-invariant mode, the cache
        # receives plain copies of values computed by the fixed-shape block code.
        q, k, v = rowwise(lambda r, c, s: self.attn.qkv(self.input_norm(r), c, s),
                           (rows, *rope), inv, t == 1, row_order)
        q = constrain(q.reshape(b, t, cfg.num_heads, cfg.head_dim),
                      ("batch", "length", "heads", "head_dim"))
        k, v = (a.reshape(b, t, cfg.num_kv_heads, cfg.head_dim) for a in (k, v))
        if cache_kv is not None:
            k, v = _write_rows(cache_kv[0], k, start), _write_rows(cache_kv[1], v, start)
            cache_kv = (k, v)
        if cache_kv is None and not inv and cfg.attention != "einsum":
            o = fused_attend(q, k, v, mask, cfg.attention)
        else:
            o = attend(q, k, v, mask, inv)

        def finish(r, o):
            r = r + self.attn.out(o)
            return r + self.mlp(self.post_attn_norm(r))

        x = rowwise(finish, (rows, o.reshape(b * t, cfg.num_heads, cfg.head_dim)), inv, t == 1,
                     row_order)
        return constrain(x.reshape(b, t, d), ("batch", "length", "embed")), cache_kv


class Llama(nnx.Module):
    """A Llama-family causal LM. ``Llama(cfg, rngs=...)`` is randomly initialised (N(0, 0.02))."""

    def __init__(self, cfg: LlamaConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        pd = cfg.param_dtype
        self.embedding = _param(rngs, (cfg.vocab_size, cfg.hidden_size), ("vocab", "embed"), pd)
        self.layers = nnx.List([DecoderLayer(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, pd)
        if not cfg.tie_word_embeddings:
            self.lm_head = _param(rngs, (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), pd)

    def embed(self, tokens: Array) -> Array:
        """int32[B, T] -> float[B, T, D] (compute dtype)."""
        x = jnp.take(self.embedding[...], tokens, axis=0).astype(self.cfg.dtype)
        return constrain(x, ("batch", "length", "embed"))

    @property
    def output_name(self) -> str:
        """The output projection's parameter: "embedding" (tied) or "lm_head"."""
        return "embedding" if self.cfg.tie_word_embeddings else "lm_head"

    def output_weight(self) -> Array:
        """The output projection as stored (param dtype): float[V, D] when the embeddings are
        tied, else float[D, V]; ``logits`` applies it."""
        return getattr(self, self.output_name)[...]

    def logits(self, hidden: Array, weight: Array) -> Array:
        """float[..., D] hidden x ``output_weight()`` (cast to the hidden's dtype) -> float32
        logits."""
        w = weight.astype(hidden.dtype)
        return (hidden @ (w.T if self.cfg.tie_word_embeddings else w)).astype(jnp.float32)

    def project(self, hidden: Array, batch_invariant: bool = False) -> Array:
        """Final-normed hidden float[..., D] -> float32[..., V] logits."""
        w = self.output_weight().astype(hidden.dtype)
        rows = hidden.reshape(-1, hidden.shape[-1])
        one_token = hidden.ndim == 2 or hidden.shape[1] == 1
        logits = rowwise(lambda r: self.logits(r, w), (rows,), batch_invariant, one_token)
        return logits.reshape(hidden.shape[:-1] + (-1,))

    def forward(self, tokens: Array | None = None, *, embeds: Array | None = None,
                positions: Array | None = None, segment_ids: Array | None = None,
                cache: KVCache | None = None, layer_hook: LayerHook | None = None,
                with_logits: bool = True, batch_invariant: bool = False,
                one_segment: bool = False) -> tuple[Array | None, KVCache | None, dict]:
        """Runs the decoder; returns ``(logits, new_cache, out)``.

        tokens int32[B, T] or embeds float[B, T, D] (spliced inputs, e.g. visual tokens).
        positions int32[B, T]: rotary positions; default ``arange(T)`` (after the cache's
        filled length when a cache is given). segment_ids int32[B, T]: attention stays within
        equal non-zero ids, causally; 0 is padding; default all ones. cache: new keys/values
        are appended at each row's ``cache.lengths``; queries see the whole cache.
        layer_hook(i, hidden float[B, T, D]) -> float[B, T, D] is applied after layer i.
        batch_invariant: run every computation over fixed-shape blocks, so a row's result does
        not depend on the batch size, its neighbours or the query/cache length (used by
        generation; padding rows of a prompt are skipped and come back as zeros).
        one_segment: the caller promises each row holds a single segment id besides 0 (no
        packing; padding anywhere). With the "xla"/"cudnn" attention (no cache, hook or sliding
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
        x = embeds.astype(self.cfg.dtype)
        b, t = x.shape[:2]
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        start = cache.lengths if cache is not None else jnp.zeros((b,), jnp.int32)
        slots = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None]  # [B, T]
        if positions is None:
            positions = slots
        if cache is not None:
            kseg = _write_rows(cache.segment_ids, segment_ids, start)
            kpos = _write_rows(cache.positions, positions, start)
            kslot = jnp.arange(kseg.shape[1], dtype=jnp.int32)[None]
        else:
            kseg, kpos, kslot = segment_ids, positions, slots
        compact = (one_segment and cache is None and layer_hook is None and not batch_invariant
                   and self.cfg.attention != "einsum" and self.cfg.sliding_window is None)
        if compact:
            # Causality among the real tokens survives a stable sort, and rope reads
            # `positions`, so the decoder cannot tell; the mask becomes lengths int32[B].
            order = jnp.argsort(segment_ids == 0, axis=1, stable=True)
            x = jnp.take_along_axis(x, order[..., None], axis=1)
            positions = jnp.take_along_axis(positions, order, axis=1)
            mask = jnp.sum(segment_ids != 0, axis=1, dtype=jnp.int32)
        else:
            mask = ((segment_ids[:, :, None] == kseg[:, None, :]) & (kseg[:, None, :] != 0)
                    & (kslot[:, None, :] <= slots[:, :, None]))
            if self.cfg.sliding_window is not None:
                mask &= positions[:, :, None] - kpos[:, None, :] < self.cfg.sliding_window

        # Prompts: skip padding rows (one-token steps have too few rows to gain from it).
        row_order = RowOrder.of(segment_ids) if batch_invariant and t > 1 else None
        inv_freq = rope_frequencies(self.cfg)
        rope = rowwise(lambda p: rope_tables(p, inv_freq, x.dtype), (positions.reshape(b * t),),
                       batch_invariant, t == 1, row_order)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            kv = (cache.k[i], cache.v[i]) if cache is not None else None
            x, kv = layer(x, rope, mask, kv, start, batch_invariant, row_order)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
            if layer_hook is not None:
                x = layer_hook(i, x)
        if compact:
            x = jnp.take_along_axis(x, jnp.argsort(order, axis=1)[..., None], axis=1)
        hidden = rowwise(self.norm, (x.reshape(b * t, -1),), batch_invariant, t == 1, row_order)
        hidden = hidden.reshape(x.shape)
        new_cache = None
        if cache is not None:
            new_cache = KVCache(tuple(new_k), tuple(new_v), kseg, kpos, start + t)
        logits = self.project(hidden, batch_invariant) if with_logits else None
        return logits, new_cache, {"hidden": hidden}

    def __call__(self, tokens: Array | None = None, **kwargs) -> Array:
        """int32[B, T] -> float32[B, T, V] logits (keywords as in ``forward``, without cache)."""
        return self.forward(tokens, **kwargs)[0]


# ----------------------------------------------------------------------------------------------
# HF checkpoint conversion (both directions share one name table).


class _Entry(NamedTuple):
    param: nnx.Param
    hf_name: str
    hf_shape: tuple[int, ...]
    kind: str  # how the HF [out, in] tensor maps to ours: copy | t (transpose) | qkv | o | bias


def _table(model: Llama) -> list[_Entry]:
    cfg = model.cfg
    d, f, h, k, e, v = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                        cfg.head_dim, cfg.vocab_size)
    rows = [_Entry(model.embedding, "model.embed_tokens.weight", (v, d), "copy"),
            _Entry(model.norm.weight, "model.norm.weight", (d,), "copy")]
    if not cfg.tie_word_embeddings:
        rows.append(_Entry(model.lm_head, "lm_head.weight", (v, d), "t"))
    for i, layer in enumerate(model.layers):
        p, a = f"model.layers.{i}.", layer.attn
        rows += [
            _Entry(layer.input_norm.weight, p + "input_layernorm.weight", (d,), "copy"),
            _Entry(layer.post_attn_norm.weight, p + "post_attention_layernorm.weight", (d,),
                   "copy"),
            _Entry(a.q, p + "self_attn.q_proj.weight", (h * e, d), "qkv"),
            _Entry(a.k, p + "self_attn.k_proj.weight", (k * e, d), "qkv"),
            _Entry(a.v, p + "self_attn.v_proj.weight", (k * e, d), "qkv"),
            _Entry(a.o, p + "self_attn.o_proj.weight", (d, h * e), "o"),
            _Entry(layer.mlp.gate, p + "mlp.gate_proj.weight", (f, d), "t"),
            _Entry(layer.mlp.up, p + "mlp.up_proj.weight", (f, d), "t"),
            _Entry(layer.mlp.down, p + "mlp.down_proj.weight", (d, f), "t"),
        ]
        if cfg.attention_bias:
            rows += [_Entry(a.q_bias, p + "self_attn.q_proj.bias", (h * e,), "bias"),
                     _Entry(a.k_bias, p + "self_attn.k_proj.bias", (k * e,), "bias"),
                     _Entry(a.v_bias, p + "self_attn.v_proj.bias", (k * e,), "bias")]
        if cfg.attention_out_bias:
            rows.append(_Entry(a.o_bias, p + "self_attn.o_proj.bias", (d,), "copy"))
    return rows


def _to_ours(x: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "t":
        return x.T
    if kind == "qkv":  # [N*E, D] -> [D, N, E]
        return x.T.reshape(shape)
    if kind == "o":  # [D, H*E] -> [H, E, D]
        return x.T.reshape(shape)
    return x.reshape(shape)


def _to_hf(x: np.ndarray, kind: str, hf_shape: tuple[int, ...]) -> np.ndarray:
    if kind in ("t", "qkv", "o"):
        return x.reshape(-1, x.shape[-1]).T if kind == "o" else x.reshape(x.shape[0], -1).T
    return x.reshape(hf_shape)


def read_hf_config(checkpoint_dir: str) -> dict:
    """The ``config.json`` dict of an HF checkpoint directory (for ``LlamaConfig.from_hf``)."""
    path = os.path.join(os.fspath(checkpoint_dir), "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{path} not found: an HF LLM checkpoint directory needs its "
                              "config.json next to the safetensors files")
    with open(path) as fh:
        return json.load(fh)


def load(checkpoint_dir: str, *, dtype: str = "float32", param_dtype: str = "float32",
         **overrides) -> Llama:
    """A Llama-family model from an HF checkpoint directory (config.json + safetensors).

    Sharded checkpoints (``model.safetensors.index.json``) are read through the index; tensors
    stream one at a time into the parameter tree. ``dtype`` is the compute dtype,
    ``param_dtype`` the weight dtype; ``overrides`` replace ``LlamaConfig`` fields.
    """
    cfg = LlamaConfig.from_hf(read_hf_config(checkpoint_dir), dtype=dtype,
                              param_dtype=param_dtype, **overrides)
    reader = open_checkpoint(checkpoint_dir)
    # Abstract first: the only real arrays ever allocated are the converted checkpoint tensors.
    model = nnx.eval_shape(lambda: Llama(cfg, rngs=nnx.Rngs(0)))
    for entry in _table(model):
        shape = tuple(entry.param.shape)
        x = take(reader, entry.hf_name, entry.hf_shape)
        entry.param.set_value(jnp.asarray(_to_ours(np.asarray(x), entry.kind, shape), param_dtype))
    return model


def save_hf(model: Llama, out_dir: str, *, dtype: str | None = None,
            max_shard_size: int = 5 * 2**30) -> None:
    """Writes ``model`` as an HF checkpoint (config.json + safetensors) that transformers opens.

    Tensors are stored in ``dtype`` (default: the model's param dtype); checkpoints larger than
    ``max_shard_size`` bytes are split into shards with a ``model.safetensors.index.json``.
    """
    cfg = model.cfg
    np_dtype = {"float32": np.float32, "float16": np.float16,
                "bfloat16": ml_dtypes.bfloat16}[jnp.dtype(dtype or cfg.param_dtype).name]
    os.makedirs(out_dir, exist_ok=True)
    hf = cfg.to_hf()
    hf["dtype"] = jnp.dtype(np_dtype).name
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for entry in _table(model):
        x = np.asarray(jax.device_get(entry.param[...])).astype(np.float32)
        x = np.ascontiguousarray(_to_hf(x, entry.kind, entry.hf_shape).astype(np_dtype))
        if size and size + x.nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][entry.hf_name] = x
        size += x.nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out_dir, "model.safetensors"), metadata=meta)
    else:
        weight_map, total = {}, 0
        for j, shard in enumerate(shards):
            name = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(out_dir, name), metadata=meta)
            weight_map.update(dict.fromkeys(shard, name))
            total += sum(x.nbytes for x in shard.values())
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(hf, fh, indent=2)
