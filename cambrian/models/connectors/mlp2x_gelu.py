"""``mlp2x_gelu``, LLaVA's projector: Linear -> GELU -> Linear per token (``mlp.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from cambrian.models.connectors.mlp import GridProjector


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, **options) -> GridProjector:
    """Options: tokens (reduction), newline, depth (N of mlpNx_gelu; 2), dtype, param_dtype."""
    options.setdefault("depth", 2)
    return GridProjector("mlp2x_gelu", encoder_channels=encoder_channels,
                         encoder_grids=encoder_grids, llm_dim=llm_dim, rngs=rngs,
                         interpolate=False, **options)
