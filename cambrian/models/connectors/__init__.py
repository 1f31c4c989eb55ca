"""Connectors: encoder feature maps -> visual tokens for the LLM.

``create(name, *, encoder_channels, encoder_grids, llm_dim, rngs, **options)`` builds one by name:

* ``"sva"``: Cambrian-1's Spatial Vision Aggregator (``sva.py``; presets ``sva.PRESETS``).
* ``"mlp2x_gelu"``, ``"linear"``: LLaVA projectors over channel-concatenated tokens (``mlp.py``).
* ``"concat"``: A-MoF channel concat after interpolation to a common grid + MLP (``concat.py``).
* ``"interleave"``: I-MoF spatial interleaving of per-encoder adapted tokens (``interleave.py``).
* ``"resampler"``: Perceiver resampler, learned queries with global attention (``resampler.py``).

Every connector is called as ``tokens, out = conn(feats, valid=None)`` with ``feats`` a list of
float[B, h_k, w_k, C_k] and ``valid`` None or a list of bool[B, h_k, w_k] (False = padding), and
returns tokens float[B, N, D_llm] and ``out["token_valid"]`` bool[B, N]. Each exposes ``num_tokens``
(N), ``grid`` (rows, tokens per row before the newline; None if not a grid), ``newline`` and
``in_llm_layers`` (LLM decoder layers after which ``apply_in_llm(k, hidden, out)`` runs; SVA only).
Token reduction: ``query_side`` for SVA, ``tokens`` for the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from flax import nnx

_REGISTRY: dict[str, tuple[str, str]] = {
    "sva": ("sva", "create"),
    "mlp2x_gelu": ("mlp", "create_mlp2x_gelu"),
    "linear": ("mlp", "create_linear"),
    "concat": ("concat", "create"),
    "interleave": ("interleave", "create"),
    "resampler": ("resampler", "create"),
}
NAMES = tuple(_REGISTRY)


def create(name: str, *, encoder_channels: Sequence[int],
           encoder_grids: Sequence[tuple[int, int]], llm_dim: int, rngs: nnx.Rngs,
           **options) -> nnx.Module:
    """A randomly initialised connector ``name``; ``options`` are documented on its ``create``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown connector {name!r}; known connectors: {', '.join(NAMES)}")
    module, fn = _REGISTRY[name]
    factory = getattr(importlib.import_module(f"cambrian.models.connectors.{module}"), fn)
    return factory(encoder_channels=list(encoder_channels),
                   encoder_grids=[tuple(g) for g in encoder_grids], llm_dim=llm_dim, rngs=rngs,
                   **options)
