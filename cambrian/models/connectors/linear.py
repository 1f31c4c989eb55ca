"""``linear``, LLaVA-1's projector: one Linear layer per token (``mlp.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from cambrian.models.connectors.mlp import GridProjector


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, **options) -> GridProjector:
    """Options: tokens (reduction), newline, dtype, param_dtype."""
    return GridProjector("linear", encoder_channels=encoder_channels, encoder_grids=encoder_grids,
                         llm_dim=llm_dim, rngs=rngs, depth=1, interpolate=False, **options)
