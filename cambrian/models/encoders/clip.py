"""OpenAI CLIP vision tower: HF ``CLIPVisionModel`` / ``CLIPModel`` checkpoints.

Cambrian takes ``hidden_states[-2]`` (penultimate block, before any final norm), CLS dropped.
Other image sizes use HF's ``interpolate_pos_encoding`` rule (bicubic).
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

_BASE = dict(act="quick_gelu", ln_eps=1e-5, pre_norm=True, final_norm=False, patch_bias=False)
VARIANTS = {
    "B/32": _BASE | vit.SIZES["B"] | dict(patch=32, image_size=224, pos_size=7),
    "B/16": _BASE | vit.SIZES["B"] | dict(patch=16, image_size=224, pos_size=14),
    "L/14": _BASE | vit.SIZES["L"] | dict(patch=14, image_size=224, pos_size=16),
    "L/14-336": _BASE | vit.SIZES["L"] | dict(patch=14, image_size=336, pos_size=24),
    "runlocal": _BASE | vit.TINY | dict(patch=14, image_size=56),
}
DEFAULT_VARIANT = "L/14-336"
DEFAULT_LAYER = -2


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("clip", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    return vit.hf_common(hf, pre_norm=True, final_norm=False, patch_bias=False)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF CLIP directory (vision tower only or the full model)."""
    reader = weights.open_checkpoint(checkpoint)
    cfg = vit.pick_config("clip", VARIANTS, checkpoint, variant=variant,
                          default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                          default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
    pre = layout.find_prefix(reader, "embeddings.class_embedding", ("vision_model.", ""))
    e = pre + "embeddings."
    entries = vit.embed_layout(cfg, {
        "patch": e + "patch_embedding", "pos": e + "position_embedding.weight",
        "pos_shape": (cfg.pos_size ** 2 + 1, cfg.width), "cls": e + "class_embedding",
        "cls_shape": (cfg.width,), "pre_norm": pre + "pre_layrnorm"})
    entries |= vit.hf_clip_blocks_layout(cfg, pre)
    return vit.load_layout(cfg, reader, entries)


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """CLIPImageProcessor: shortest side to the resolution, centre crop, bicubic, CLIP mean/std."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN, std=CLIP_STD,
                          resize="shortest", interpolation="bicubic")
