"""A family's own global image embedding, from the head its checkpoint ships beside the tower.

The zoo's towers return feature maps (Cambrian's input); a global embedding is what MMVP compared.
``with_head(family, checkpoint, tower)`` wraps the tower so that ``out["embedding"]`` is:

* clip: ``CLIPModel.get_image_features`` -- ``post_layernorm`` of the final CLS token, then
  ``visual_projection`` (a vision-only ``CLIPVisionModel`` has no projection: then HF's
  ``pooler_output``, the normed CLS);
* dinov2: HF's ``pooler_output``, the CLS token after the final LayerNorm.

Other families have no entry (use the ``cls`` or ``mean`` reductions). The head is read from the
HF checkpoint; a converted directory (``encoders.convert``) keeps only the tower.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout


class Embedding(nnx.Module):
    """``feats, out = tower(pixels)`` plus ``out["embedding"]`` float32[B, D]: the final CLS
    token, LayerNorm-ed with (``norm_scale``, ``norm_bias``) and projected by ``proj`` [C, D] when
    given."""

    def __init__(self, tower, *, norm: tuple[np.ndarray, np.ndarray] | None = None,
                 proj: np.ndarray | None = None, eps: float = 1e-5):
        self.tower = tower
        self.config = tower.config
        self.eps = eps
        self.norm_scale = nnx.Param(jnp.asarray(norm[0], jnp.float32)) if norm else None
        self.norm_bias = nnx.Param(jnp.asarray(norm[1], jnp.float32)) if norm else None
        self.proj = nnx.Param(jnp.asarray(proj, jnp.float32)) if proj is not None else None

    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, dict]:
        feats, out = self.tower(pixels)
        x = out["last_hidden_state"][:, 0].astype(jnp.float32)
        if self.norm_scale is not None:
            mu = x.mean(-1, keepdims=True)
            var = jnp.square(x - mu).mean(-1, keepdims=True)
            x = (x - mu) * jax.lax.rsqrt(var + self.eps)
            x = x * self.norm_scale[...] + self.norm_bias[...]
        if self.proj is not None:
            x = x @ self.proj[...]
        return feats, {**out, "embedding": x}


def _clip(checkpoint: str, tower) -> Embedding:
    reader = weights.open_checkpoint(checkpoint)
    pre = layout.find_prefix(reader, "post_layernorm.weight", ("vision_model.", ""))
    norm = (np.asarray(reader[pre + "post_layernorm.weight"]),
            np.asarray(reader[pre + "post_layernorm.bias"]))
    proj = (np.asarray(reader["visual_projection.weight"]).T
            if "visual_projection.weight" in reader else None)
    return Embedding(tower, norm=norm, proj=proj, eps=tower.config.ln_eps)


def _final_cls(checkpoint: str, tower) -> Embedding:
    return Embedding(tower)


HEADS: dict[str, Callable[[str, object], Embedding]] = {"clip": _clip, "dinov2": _final_cls}


def with_head(family: str, checkpoint: str, tower):
    """``tower`` wrapped with its family's embedding head, or unchanged for other families."""
    head = HEADS.get(family)
    return tower if head is None else head(checkpoint, tower)
