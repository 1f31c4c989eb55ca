"""Supervised ImageNet-21k ViTs: timm ``vit_*_224.orig_in21k`` state dicts.

Cambrian uses timm ``forward_features`` (final LayerNorm applied), CLS dropped.
"""

from __future__ import annotations

from flax import nnx

from cambrian.models.encoders import convert, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, HALF, PreprocessSpec

_BASE = dict(act="gelu", ln_eps=1e-6, pos_interp="bicubic_aa")
VARIANTS = {
    "B/16": _BASE | dict(patch=16, width=768, depth=12, heads=12, mlp_dim=3072, image_size=224,
                         pos_size=14),
    "L/16": _BASE | dict(patch=16, width=1024, depth=24, heads=16, mlp_dim=4096, image_size=224,
                         pos_size=14),
    "H/14": _BASE | dict(patch=14, width=1280, depth=32, heads=16, mlp_dim=5120, image_size=224,
                         pos_size=16),
    "runlocal": _BASE | dict(patch=16, width=64, depth=2, heads=2, mlp_dim=256, image_size=64,
                             pos_size=4),
}
DEFAULT_VARIANT = "L/16"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs) -> vit.VisionTransformer:
    return vit.VisionTransformer(vit.config_for("supvit", VARIANTS, variant, image_size=image_size,
                                                layer=layer, default_layer=DEFAULT_LAYER),
                                 rngs=rngs)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None) -> vit.VisionTransformer:
    """From a timm ViT state dict (file or directory) or a converted dir."""
    restored = convert.restore(checkpoint, "supvit", image_size=image_size, layer=layer)
    if restored is not None:
        return restored
    return vit.load_timm("supvit", VARIANTS, checkpoint, variant=variant,
                         default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                         default_layer=DEFAULT_LAYER, prefixes=("", "model.", "module."))


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """timm eval transform of ``orig_in21k``: resize, centre crop (crop_pct 0.9), mean=std=0.5."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="shortest", interpolation="bicubic", crop_pct=0.9,
                          pad_color=CLIP_MEAN)
