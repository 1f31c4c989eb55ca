"""Cambrian's feature conventions shared by every encoder family.

Tokens -> spatial grid (prefix tokens dropped), and bilinear resampling of a grid to a target token
count exactly as ``F.interpolate(mode="bilinear", align_corners=False)`` does it (no antialiasing,
computed in float32).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def tokens_to_grid(tokens: jax.Array, num_prefix: int, grid: tuple[int, int] | None = None):
    """float[B, P + h*w, C] -> float[B, h, w, C], dropping the first ``num_prefix`` tokens."""
    x = tokens[:, num_prefix:]
    if grid is None:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"{x.shape[1]} patch tokens do not form a square grid; "
                             "pass grid=(h, w)")
        grid = (side, side)
    return x.reshape(x.shape[0], grid[0], grid[1], x.shape[-1])


def layer_features(hidden, last: jax.Array, layer: int | None, num_prefix: int,
                   grid: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """(float32[B, h, w, C] features, float[B, P + h*w, C] tokens) of ``hidden[layer]`` (HF
    ``hidden_states`` indexing), or of ``last`` for ``layer=None``; prefix tokens dropped."""
    chosen = last if layer is None else hidden[layer]
    return tokens_to_grid(chosen, num_prefix, grid).astype(jnp.float32), chosen


def resize_grid(feats: jax.Array, size: tuple[int, int]) -> jax.Array:
    """float[B, h, w, C] -> float32[B, H, W, C], bilinear, align_corners=False, no antialias."""
    if tuple(feats.shape[1:3]) == tuple(size):
        return feats
    b, _, _, c = feats.shape
    return jax.image.resize(feats.astype(jnp.float32), (b, size[0], size[1], c), "bilinear",
                            antialias=False)


def interpolate_to_tokens(feats: jax.Array, num_tokens: int | None) -> jax.Array:
    """Resizes a grid to ``num_tokens`` (a perfect square) positions; ``None`` keeps it."""
    if num_tokens is None:
        return feats
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"token count {num_tokens} is not a perfect square")
    return resize_grid(feats, (side, side))
