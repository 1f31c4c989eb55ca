"""MoCo v3 ViTs: the released ``vit-*-300ep.pth.tar`` (timm-style ``VisionTransformerMoCo``).

The pretraining checkpoint nests the backbone under ``module.base_encoder.``; linear-probe and
plain timm state dicts are accepted too. Cambrian uses ``forward_features`` (final LayerNorm),
CLS dropped.
"""

from __future__ import annotations

from flax import nnx

from cambrian.models.encoders import vit
from cambrian.models.encoders.preprocess import (
    CLIP_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
)

# MoCo v3's ViT-S has 12 heads (timm's vit_small has 6)
VARIANTS = {"S/16": vit.TIMM_VARIANTS["B/16"] | dict(width=384, mlp_dim=1536)}
VARIANTS |= {k: vit.TIMM_VARIANTS[k] for k in ("B/16", "L/16", "runlocal")}
DEFAULT_VARIANT = "B/16"
DEFAULT_LAYER = None
PREFIXES = ("module.base_encoder.", "base_encoder.", "module.", "")


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("mocov3", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From a MoCo v3 / timm ViT state dict."""
    return vit.load_timm("mocov3", VARIANTS, checkpoint, variant=variant,
                         default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                         default_layer=DEFAULT_LAYER, dtype=dtype, prefixes=PREFIXES)


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """MoCo v3 / timm eval transform: resize 256 (crop_pct 0.875), centre crop, bilinear."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, resize="shortest", interpolation="bilinear",
                          crop_pct=0.875, pad_color=CLIP_MEAN)
