"""Connectors: encoder feature maps -> visual tokens for the LLM.

``create(name, *, encoder_channels, encoder_grids, llm_dim, rngs, **options)`` builds one by module
path, as configs name them: connector ``name`` is ``cambrian/models/connectors/<name>.py`` and its
``create``:

* ``"sva"``: Cambrian-1's Spatial Vision Aggregator (presets ``sva.PRESETS``).
* ``"mlp2x_gelu"``, ``"linear"``: LLaVA projectors over channel-concatenated tokens (``mlp.py``).
* ``"concat"``: A-MoF channel concat after interpolation to a common grid + MLP.
* ``"interleave"``: I-MoF spatial interleaving of per-encoder adapted tokens.
* ``"resampler"``: Perceiver resampler, learned queries with global attention.

Every connector is called as ``tokens, out = conn(feats, valid=None)`` with ``feats`` a list of
float[B, h_k, w_k, C_k] and ``valid`` None or a list of bool[B, h_k, w_k] (False = padding), and
returns tokens float[B, N, D_llm] and ``out["token_valid"]`` bool[B, N]. Each exposes ``num_tokens``
(N), ``grid`` (rows, tokens per row before the newline; None if not a grid), ``newline`` and
``in_llm_layers`` (LLM decoder layers after which ``apply_in_llm(k, hidden, out)`` runs; SVA only).
Token reduction: ``query_side`` for SVA, ``tokens`` for the others.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

from flax import nnx


def names() -> list[str]:
    """Every connector: the modules of this package that define ``create``."""
    return [m.name for m in pkgutil.iter_modules(__path__)
            if hasattr(importlib.import_module(f"{__name__}.{m.name}"), "create")]


def create(name: str, *, encoder_channels: Sequence[int],
           encoder_grids: Sequence[tuple[int, int]], llm_dim: int, rngs: nnx.Rngs,
           **options) -> nnx.Module:
    """A randomly initialised connector ``name``; ``options`` are documented on its ``create``."""
    try:
        module = importlib.import_module(f"{__name__}.{name}") if name.isidentifier() else None
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        module = None
    if not hasattr(module, "create"):
        raise ValueError(f"unknown connector {name!r}; known connectors: {', '.join(names())}")
    return module.create(encoder_channels=list(encoder_channels),
                         encoder_grids=[tuple(g) for g in encoder_grids], llm_dim=llm_dim,
                         rngs=rngs, **options)
