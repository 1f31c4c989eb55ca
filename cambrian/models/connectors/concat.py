"""A-MoF-style channel concatenation: every encoder map is bilinearly interpolated to one grid,
the maps are concatenated on channels and a ``mlp2x_gelu`` projector maps each token to the LLM
(the "Concat." connector of Cambrian-1's Table 1, interpolated to 576 tokens there).
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from cambrian.models.connectors.mlp import GridProjector


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, tokens: int | None = None, **options) -> GridProjector:
    """Options: tokens (common grid, a perfect square; None = encoder 0's grid;
    Table 1 used 576; 144 / 36 reduce),
    depth (projector layers, 2), newline (True), dtype, param_dtype."""
    options.setdefault("depth", 2)
    return GridProjector("concat", encoder_channels=encoder_channels, encoder_grids=encoder_grids,
                         llm_dim=llm_dim, rngs=rngs, interpolate=True, tokens=tokens, **options)
