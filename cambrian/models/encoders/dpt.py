"""DPT / MiDaS 3.0 ViT backbone: HF ``DPTForDepthEstimation`` (``Intel/dpt-large``).

Cambrian takes ``hidden_states[-1]`` of the backbone (last block, no final norm), CLS dropped.
Other image sizes use DPT's ``_resize_pos_embed`` (bilinear). Hybrid (BiT) and BEiT DPTs are not
ViT backbones and are not handled here.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import HALF, PreprocessSpec

_BASE = dict(act="gelu", ln_eps=1e-12, pos_interp="bilinear")
VARIANTS = {
    "L/16-384": _BASE | vit.SIZES["L"] | dict(patch=16, image_size=384, pos_size=24),
    "runlocal": _BASE | vit.TINY | dict(patch=16, image_size=64),
}
DEFAULT_VARIANT = "L/16-384"
DEFAULT_LAYER = -1


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("dpt", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    if hf["is_hybrid"] or hf["backbone_config"] is not None:
        raise ValueError("dpt: only ViT-backbone DPT checkpoints (e.g. Intel/dpt-large) are "
                         "supported; this config.json describes a hybrid/BEiT backbone")
    return vit.hf_common(hf, pos_interp="bilinear", qkv_bias=hf["qkv_bias"])


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF DPT directory (``DPTForDepthEstimation`` or ``DPTModel``)."""
    reader = weights.open_checkpoint(checkpoint)
    cfg = vit.pick_config("dpt", VARIANTS, checkpoint, variant=variant,
                          default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                          default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
    pre = layout.find_prefix(reader, "embeddings.cls_token", ("dpt.", ""))
    # DPTForDepthEstimation has no final LayerNorm; hidden_states[-1] never needs one
    has_norm = pre + "layernorm.weight" in reader
    cfg = dataclasses.replace(cfg, final_norm=has_norm).check()
    if cfg.layer is None and not has_norm:
        cfg = dataclasses.replace(cfg, layer=-1)
    return vit.load_layout(cfg, reader, vit.hf_vit_layout(cfg, pre))


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """HF DPTImageProcessor of dpt-large: squash to 384x384, bicubic, mean = std = 0.5."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="squash", interpolation="bicubic")
