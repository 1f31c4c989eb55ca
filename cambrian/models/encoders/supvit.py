"""Supervised ImageNet-21k ViTs: timm ``vit_*_224.orig_in21k`` state dicts.

Cambrian uses timm ``forward_features`` (final LayerNorm applied), CLS dropped.
"""

from __future__ import annotations

from flax import nnx

from cambrian.models.encoders import vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, HALF, PreprocessSpec

VARIANTS = dict(vit.TIMM_VARIANTS)
DEFAULT_VARIANT = "L/16"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("supvit", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From a timm ViT state dict (file or directory)."""
    return vit.load_timm("supvit", VARIANTS, checkpoint, variant=variant,
                         default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                         default_layer=DEFAULT_LAYER, dtype=dtype)


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """timm eval transform of ``orig_in21k``: resize, centre crop (crop_pct 0.9), mean=std=0.5."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="shortest", interpolation="bicubic", crop_pct=0.9,
                          pad_color=CLIP_MEAN)
