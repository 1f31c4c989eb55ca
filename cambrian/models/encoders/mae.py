"""MAE ViTs: timm ``vit_*_patch*_224.mae`` state dicts and HF ``ViTMAEModel`` (mask ratio 0).

Cambrian uses timm ``forward_features`` (final LayerNorm applied), CLS dropped.
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import (
    CLIP_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
)

VARIANTS = dict(vit.TIMM_VARIANTS)
DEFAULT_VARIANT = "L/16"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("mae", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    return vit.hf_common(hf, qkv_bias=hf["qkv_bias"])


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From a timm MAE state dict, or an HF ViTMAE directory."""
    if vit.hf_config(checkpoint) is None:
        return vit.load_timm("mae", VARIANTS, checkpoint, variant=variant,
                             default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                             default_layer=DEFAULT_LAYER, dtype=dtype)
    reader = weights.open_checkpoint(checkpoint)
    cfg = vit.pick_config("mae", VARIANTS, checkpoint, variant=variant,
                          default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                          default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
    pre = layout.find_prefix(reader, "embeddings.cls_token", ("", "vit."))
    return vit.load_layout(cfg, reader, vit.hf_vit_layout(cfg, pre))


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """timm eval transform of the MAE checkpoints: resize to size/0.9, centre crop, bicubic.

    Pad colour: the CLIP mean, as Cambrian's wrapped timm processors report it.
    """
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, resize="shortest", interpolation="bicubic",
                          crop_pct=0.9, pad_color=CLIP_MEAN)
