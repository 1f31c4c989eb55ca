"""LLaVA-style projectors over channel-concatenated encoder tokens: the module behind the
"mlp2x_gelu", "linear" and "concat" connectors, and ``load`` for their released weights.

As Cambrian's non-SVA path: the encoders' maps are concatenated on channels (so they must share one
grid; "concat" interpolates them to a common grid first), projected token by token to the LLM width,
and ``image_newline`` ends every row (Cambrian appends it for every projector type in training).
Token reduction (``tokens``, e.g. 576 -> 144 / 36) bilinearly interpolates the maps before the
projector ("Interp + MLP" of the paper's compression study).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.connectors.common import (
    append_newline,
    check_all_read,
    check_feats,
    check_valid,
    cover_valid,
    dense,
    gelu,
    grid_token_valid,
    load_linear,
    partitioned,
    resize_feats,
    set_param,
    side_of,
)
from cambrian.models.weights import open_checkpoint, take


class Projector(nnx.Module):
    """``mlp{depth}x_gelu``: depth Linear layers with GELU between (depth 1 = "linear")."""

    def __init__(self, d_in: int, d_out: int, depth: int, *, rngs: nnx.Rngs, dtype=None,
                 param_dtype=jnp.float32):
        if depth < 1:
            raise ValueError(f"projector depth must be >= 1, got {depth}")
        dims = [d_in] + [d_out] * depth
        self.layers = nnx.List([
            dense(a, b, axes=("embed", "mlp") if i == 0 else ("mlp", "embed"), dtype=dtype,
                  param_dtype=param_dtype, rngs=rngs)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(gelu(x) if i else x)
        return x


class GridProjector(nnx.Module):
    """Channel concat of the encoder maps on one grid -> projector -> rows ended by a newline.

    Called as ``tokens, out = conn(feats, valid=None)``: feats list of float[B, h_k, w_k, C_k];
    tokens float[B, h (w + 1), D] (float[B, h w, D] with ``newline=False``); out["token_valid"]
    bool[B, N] (a token is False when every encoder's cells under it are padding).
    """

    def __init__(self, name: str, *, encoder_channels: Sequence[int],
                 encoder_grids: Sequence[tuple[int, int]], llm_dim: int, rngs: nnx.Rngs,
                 depth: int, interpolate: bool, tokens: int | None = None, newline: bool = True,
                 dtype=None, param_dtype=jnp.float32):
        if not encoder_channels or len(encoder_grids) != len(encoder_channels):
            raise ValueError(f"{name}: encoder_channels and encoder_grids must name the same, "
                             "non-zero encoders")
        self.kind = name
        self.encoder_channels = tuple(encoder_channels)
        self.encoder_grids = tuple(tuple(g) for g in encoder_grids)
        if not interpolate:
            for k, g in enumerate(self.encoder_grids):
                if g != self.encoder_grids[0]:
                    raise ValueError(
                        f"{name}: encoder {k} grid {g[0]}x{g[1]} differs from encoder 0's "
                        f"{self.encoder_grids[0][0]}x{self.encoder_grids[0][1]}; this projector "
                        "concatenates tokens one to one. Interpolate in the encoder or use the "
                        "'concat' connector")
        if tokens is None:
            self.grid = self.encoder_grids[0]
        else:
            s = side_of(tokens, f"{name}: tokens")
            self.grid = (s, s)
        self.newline = newline
        self.num_tokens = self.grid[0] * (self.grid[1] + (1 if newline else 0))
        self.in_llm_layers: tuple[int, ...] = ()
        self.mm_projector = Projector(sum(self.encoder_channels), llm_dim, depth, rngs=rngs,
                                      dtype=dtype, param_dtype=param_dtype)
        if newline:
            init = partitioned(nnx.initializers.normal(llm_dim ** -0.5), ("embed",))
            self.image_newline = nnx.Param(init(rngs.params(), (llm_dim,), param_dtype))

    def __call__(self, feats: Sequence[jax.Array], valid: Sequence[jax.Array] | None = None):
        check_feats(feats, self.encoder_channels, self.encoder_grids, self.kind)
        valid = check_valid(valid, feats, self.kind)
        x = jnp.concatenate([resize_feats(f, self.grid) for f in feats], axis=-1)
        v = cover_valid(valid[0], self.grid)
        for m in valid[1:]:
            v = v | cover_valid(m, self.grid)
        x = self.mm_projector(x)
        tokens = append_newline(x, self.image_newline[...]) if self.newline else \
            x.reshape(x.shape[0], -1, x.shape[-1])
        return tokens, {"token_valid": grid_token_valid(v, self.newline)}


def load(checkpoint: str | Mapping[str, np.ndarray], *, encoder_channels: Sequence[int],
         encoder_grids: Sequence[tuple[int, int]], llm_dim: int, name: str = "mlp2x_gelu",
         prefix: str = "model.", **options) -> GridProjector:
    """A ``name`` connector ("mlp2x_gelu", "linear" or "concat") filled from LLaVA / Cambrian
    names: ``{prefix}mm_projector.{0,2,..}.weight|bias`` (nn.Sequential(Linear, GELU, Linear, ..))
    and, with a newline, ``{prefix}image_newline``. ``options`` as for ``create``."""
    depth = {"mlp2x_gelu": 2, "linear": 1, "concat": 2}
    if name not in depth:
        raise ValueError(f"mlp.load: name={name!r}, expected one of {sorted(depth)}")
    options.setdefault("depth", depth[name])
    reader = open_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    conn = nnx.eval_shape(lambda: GridProjector(
        name, encoder_channels=encoder_channels, encoder_grids=encoder_grids, llm_dim=llm_dim,
        rngs=nnx.Rngs(0), interpolate=name == "concat", **options))
    for i, layer in enumerate(conn.mm_projector.layers):
        load_linear(reader, f"{prefix}mm_projector.{2 * i}", layer)
    if conn.newline:
        set_param(conn.image_newline, take(reader, f"{prefix}image_newline",
                                           conn.image_newline.shape))
    check_all_read(conn, "mlp.load")
    return conn
