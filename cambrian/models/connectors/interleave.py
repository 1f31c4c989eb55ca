"""I-MoF-style spatial interleaving (Tong et al., "Eyes Wide Shut", 2024).

Each encoder has its own ``mlp2x_gelu`` adapter to the LLM width (``mm_projector_aux_k``); the maps
are bilinearly interpolated to one grid and their tokens interleaved in raster order, so cell
(i, j) contributes E consecutive tokens (encoder 0, 1, ..., E-1). A row of the result holds w E
tokens and, as for the other grid connectors, ends with ``image_newline``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from cambrian.models.connectors.common import (
    Mlp,
    append_newline,
    check_feats,
    check_valid,
    cover_valid,
    grid_token_valid,
    partitioned,
    resize_feats,
    side_of,
)


class Interleave(nnx.Module):
    """``tokens, out = conn(feats, valid=None)``.

    feats: list of E >= 2 float[B, h_k, w_k, C_k]. tokens: float[B, h (w E + 1), D] (h w E without
    newline), where (h, w) is the common grid. out["token_valid"]: bool[B, N], a token is False when
    its encoder's cells under it are all padding; a newline follows its row.
    """

    def __init__(self, *, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
                 llm_dim: int, rngs: nnx.Rngs, tokens: int | None = None, newline: bool = True,
                 dtype=None, param_dtype=jnp.float32):
        if len(encoder_channels) < 2 or len(encoder_grids) != len(encoder_channels):
            raise ValueError("interleave: needs encoder_channels and encoder_grids for >= 2 "
                             "encoders; for one encoder use 'mlp2x_gelu'")
        self.encoder_channels = tuple(encoder_channels)
        self.encoder_grids = tuple(tuple(g) for g in encoder_grids)
        if tokens is None:
            self.base_grid = self.encoder_grids[0]
        else:
            s = side_of(tokens, "interleave: tokens")
            self.base_grid = (s, s)
        e = len(self.encoder_channels)
        self.grid = (self.base_grid[0], self.base_grid[1] * e)
        self.newline = newline
        self.num_tokens = self.grid[0] * (self.grid[1] + (1 if newline else 0))
        self.in_llm_layers: tuple[int, ...] = ()
        for k, c in enumerate(self.encoder_channels):
            setattr(self, f"mm_projector_aux_{k}", Mlp(c, llm_dim, llm_dim, rngs=rngs, dtype=dtype,
                                                       param_dtype=param_dtype))
        if newline:
            init = partitioned(nnx.initializers.normal(llm_dim ** -0.5), ("embed",))
            self.image_newline = nnx.Param(init(rngs.params(), (llm_dim,), param_dtype))

    def __call__(self, feats: Sequence[jax.Array], valid: Sequence[jax.Array] | None = None):
        check_feats(feats, self.encoder_channels, self.encoder_grids, "interleave")
        valid = check_valid(valid, feats, "interleave")
        xs = [getattr(self, f"mm_projector_aux_{k}")(resize_feats(f, self.base_grid))
              for k, f in enumerate(feats)]
        vs = [cover_valid(v, self.base_grid) for v in valid]
        b, h, w, d = xs[0].shape
        x = jnp.stack(xs, axis=3).reshape(b, h, w * len(xs), d)
        v = jnp.stack(vs, axis=3).reshape(b, h, w * len(xs))
        tokens = append_newline(x, self.image_newline[...]) if self.newline else \
            x.reshape(b, -1, d)
        return tokens, {"token_valid": grid_token_valid(v, self.newline)}


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, **options) -> Interleave:
    """Options: tokens (common grid per encoder, a perfect square; None = encoder 0's grid),
    newline (True), dtype, param_dtype."""
    return Interleave(encoder_channels=encoder_channels, encoder_grids=encoder_grids,
                      llm_dim=llm_dim, rngs=rngs, **options)
