"""Perceiver-style resampler (the "Resampler" baseline of Cambrian-1's Table 1).

Learned latent queries read all tokens of all encoders with global cross-attention: no windows and
no positional terms, so nothing ties a latent to an image region. Each encoder's map is flattened
and projected to ``hidden`` by its own Linear (``mm_projector_aux_k``); the token sequences are
concatenated. Each layer is the Flamingo Perceiver block: latents += Attn(LN(latents),
keys/values = [LN(media); LN(latents)]), latents += FF(latents) (LN -> Linear 4x -> GELU -> Linear),
then a final LayerNorm and the ``mm_projector`` (Linear -> GELU -> Linear) to the LLM width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cambrian.models.connectors.common import (
    Mlp,
    append_newline,
    check_feats,
    check_valid,
    dense,
    gelu,
    layer_norm,
    partitioned,
    side_of,
)


class PerceiverLayer(nnx.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, *, rngs: nnx.Rngs, dtype=None,
                 param_dtype=jnp.float32):
        if dim % heads:
            raise ValueError(f"resampler: hidden={dim} is not divisible by heads={heads}")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.heads = heads
        self.norm_media = layer_norm(dim, **kw)
        self.norm_latents = layer_norm(dim, **kw)
        self.q_proj = dense(dim, dim, use_bias=False, axes=("embed", "heads"), **kw)
        self.k_proj = dense(dim, dim, use_bias=False, axes=("embed", "heads"), **kw)
        self.v_proj = dense(dim, dim, use_bias=False, axes=("embed", "heads"), **kw)
        self.o_proj = dense(dim, dim, use_bias=False, axes=("heads", "embed"), **kw)
        self.ff_norm = layer_norm(dim, **kw)
        self.ff_1 = dense(dim, dim * ff_mult, use_bias=False, axes=("embed", "mlp"), **kw)
        self.ff_2 = dense(dim * ff_mult, dim, use_bias=False, axes=("mlp", "embed"), **kw)

    def __call__(self, latents: jax.Array, media: jax.Array, mask: jax.Array) -> jax.Array:
        """latents float[B, Q, C]; media float[B, T, C]; mask bool[B, T] (False = padding)."""
        b, nq, c = latents.shape
        dh = c // self.heads
        lat = self.norm_latents(latents)
        kv = jnp.concatenate([self.norm_media(media), lat], axis=1)
        q = self.q_proj(lat).reshape(b, nq, self.heads, dh)
        k = self.k_proj(kv).reshape(b, kv.shape[1], self.heads, dh)
        v = self.v_proj(kv).reshape(b, kv.shape[1], self.heads, dh)
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        s = s / math.sqrt(dh)
        keep = jnp.concatenate([mask, jnp.ones((b, nq), bool)], axis=1)  # latents always visible
        s = jnp.where(keep[:, None, None, :], s, -jnp.inf)
        w = jax.nn.softmax(s, axis=-1).astype(v.dtype)
        o = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, nq, c)
        latents = latents + self.o_proj(o)
        return latents + self.ff_2(gelu(self.ff_1(self.ff_norm(latents))))


class Resampler(nnx.Module):
    """``tokens, out = conn(feats, valid=None)``.

    feats: list of float[B, h_k, w_k, C_k]; valid: None or list of bool[B, h_k, w_k] (padding cells
    are masked out of the keys). tokens: float[B, Q, D] (float[B, s (s + 1), D] with
    ``newline=True``, Q = s^2). out["token_valid"]: all True (latents are not tied to regions).
    """

    def __init__(self, *, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
                 llm_dim: int, rngs: nnx.Rngs, tokens: int = 576, hidden: int = 1024,
                 heads: int = 16, depth: int = 3, ff_mult: int = 4, newline: bool = False,
                 dtype=None, param_dtype=jnp.float32):
        if not encoder_channels or len(encoder_grids) != len(encoder_channels):
            raise ValueError("resampler: encoder_channels and encoder_grids must name the same, "
                             "non-zero encoders")
        if tokens < 1 or depth < 1:
            raise ValueError(f"resampler: tokens={tokens} and depth={depth} must be >= 1")
        self.encoder_channels = tuple(encoder_channels)
        self.encoder_grids = tuple(tuple(g) for g in encoder_grids)
        self.newline = newline
        if newline:
            s = side_of(tokens, "resampler: tokens (newline=True needs a square grid)")
            self.grid: tuple[int, int] | None = (s, s)
            self.num_tokens = s * (s + 1)
        else:
            self.grid = None
            self.num_tokens = tokens
        self.in_llm_layers: tuple[int, ...] = ()
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for k, c in enumerate(self.encoder_channels):
            setattr(self, f"mm_projector_aux_{k}", dense(c, hidden, **kw))
        self.latents = nnx.Param(partitioned(nnx.initializers.normal(hidden ** -0.5),
                                             (None, "embed"))(rngs.params(), (tokens, hidden),
                                                              param_dtype))
        self.layers = nnx.List([PerceiverLayer(hidden, heads, ff_mult, **kw)
                                for _ in range(depth)])
        self.norm = layer_norm(hidden, **kw)
        self.mm_projector = Mlp(hidden, llm_dim, llm_dim, **kw)
        if newline:
            init = partitioned(nnx.initializers.normal(llm_dim ** -0.5), ("embed",))
            self.image_newline = nnx.Param(init(rngs.params(), (llm_dim,), param_dtype))

    def __call__(self, feats: Sequence[jax.Array], valid: Sequence[jax.Array] | None = None):
        check_feats(feats, self.encoder_channels, self.encoder_grids, "resampler")
        valid = check_valid(valid, feats, "resampler")
        b = feats[0].shape[0]
        media = jnp.concatenate([
            getattr(self, f"mm_projector_aux_{k}")(f).reshape(b, -1, self.latents.shape[1])
            for k, f in enumerate(feats)], axis=1)
        mask = jnp.concatenate([v.reshape(b, -1) for v in valid], axis=1)
        x = jnp.broadcast_to(self.latents[...].astype(media.dtype), (b,) + self.latents.shape)
        for layer in self.layers:
            x = layer(x, media, mask)
        x = self.mm_projector(self.norm(x))
        if self.newline:
            x = append_newline(x.reshape(b, *self.grid, -1), self.image_newline[...])
        return x, {"token_valid": jnp.ones((b, self.num_tokens), bool)}


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, **options) -> Resampler:
    """Options: tokens (number of latent queries: 576, 144, 36, ...), hidden (1024), heads (16),
    depth (3, as the SVA's D), ff_mult (4), newline (False), dtype, param_dtype."""
    return Resampler(encoder_channels=encoder_channels, encoder_grids=encoder_grids,
                     llm_dim=llm_dim, rngs=rngs, **options)
