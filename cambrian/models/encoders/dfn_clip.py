"""DFN-CLIP (Apple DFN2B/DFN5B): open_clip ``VisionTransformer`` state dicts.

Cambrian uses open_clip's ``output_tokens``: the final block's patch tokens after ``ln_post``
(the projection applies to the pooled token only). Other image sizes follow open_clip's
``resize_pos_embed`` (bicubic, antialiased).
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

_BASE = dict(act="quick_gelu", ln_eps=1e-5, pre_norm=True, patch_bias=False,
             pos_interp="bicubic_aa")
VARIANTS = {
    "L/14": _BASE | vit.SIZES["L"] | dict(patch=14, image_size=224, pos_size=16),
    "H/14": _BASE | vit.SIZES["H"] | dict(patch=14, image_size=224, pos_size=16),
    "H/14-378": _BASE | vit.SIZES["H"] | dict(patch=14, image_size=378, pos_size=27),
    "runlocal": _BASE | vit.TINY | dict(patch=14, image_size=56),
}
DEFAULT_VARIANT = "L/14"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("dfn_clip", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def open_clip_layout(cfg: vit.ViTConfig, pre: str) -> dict:
    """open_clip ``VisionTransformer`` names (``conv1``, ``transformer.resblocks.i``, ...)."""
    entries = vit.embed_layout(cfg, {
        "patch": pre + "conv1", "pos": pre + "positional_embedding",
        "pos_shape": (cfg.pos_size ** 2 + cfg.cls_token, cfg.width), "cls": pre + "class_embedding",
        "cls_shape": (cfg.width,), "pre_norm": pre + "ln_pre", "final_norm": pre + "ln_post"})
    for i in range(cfg.depth):
        b = f"{pre}transformer.resblocks.{i}."
        block = vit.block_layout(cfg, i, {
            "norm1": b + "ln_1", "norm2": b + "ln_2", "qkv": b + "attn.in_proj",
            "out": b + "attn.out_proj", "fc1": b + "mlp.c_fc", "fc2": b + "mlp.c_proj",
            "ls1": b + "ls_1.gamma", "ls2": b + "ls_2.gamma"}, fused_qkv=True)
        # nn.MultiheadAttention names its fused projection in_proj_weight / in_proj_bias
        entries |= {k: (name.replace("in_proj.", "in_proj_"), shape, t)
                   for k, (name, shape, t) in block.items()}
    return entries


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an open_clip state dict (``open_clip_pytorch_model.bin`` / safetensors);
    ``variant`` names the architecture (open_clip files carry no config)."""
    reader = weights.open_checkpoint(checkpoint)
    pre = layout.find_prefix(reader, "conv1.weight", ("visual.", ""))
    cfg = vit.config_for("dfn_clip", VARIANTS, variant or DEFAULT_VARIANT, image_size=image_size,
                         layer=layer, default_layer=DEFAULT_LAYER, dtype=dtype)
    return vit.load_layout(cfg, reader, open_clip_layout(cfg, pre))


_SQUASH = ("H/14", "H/14-378")  # open_clip's DFN5B pretrained configs use resize_mode="squash"


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """open_clip eval transform: bicubic, CLIP mean/std (also the pad colour)."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN, std=CLIP_STD,
                          resize="squash" if variant in _SQUASH else "shortest",
                          interpolation="bicubic")
