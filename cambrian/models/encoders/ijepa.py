"""I-JEPA ViTs: HF ``IJepaModel`` checkpoints (``facebook/ijepa_vith14_1k`` etc.).

No CLS token; Cambrian uses the encoder output (final LayerNorm applied).
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

_BASE = dict(act="gelu", ln_eps=1e-6, cls_token=False, pos_cls=False)
VARIANTS = {
    "H/14": _BASE | vit.SIZES["H"] | dict(patch=14, image_size=224, pos_size=16),
    "H/16-448": _BASE | vit.SIZES["H"] | dict(patch=16, image_size=448, pos_size=28),
    "g/16": _BASE | dict(patch=16, width=1408, depth=40, heads=16, mlp_dim=6144, image_size=224,
                         pos_size=14),
    "runlocal": _BASE | vit.TINY | dict(patch=14, image_size=56),
}
DEFAULT_VARIANT = "H/14"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("ijepa", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    return vit.hf_common(hf, cls_token=False, pos_cls=False, qkv_bias=hf["qkv_bias"])


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF I-JEPA directory."""
    reader = weights.open_checkpoint(checkpoint)
    cfg = vit.pick_config("ijepa", VARIANTS, checkpoint, variant=variant,
                          default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                          default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
    pre = layout.find_prefix(reader, "embeddings.position_embeddings", ("", "ijepa."))
    return vit.load_layout(cfg, reader, vit.hf_vit_layout(cfg, pre))


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """HF ViTImageProcessor of the I-JEPA checkpoints: squash to the resolution, ImageNet stats."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, resize="squash", interpolation="bilinear")
