"""DINOv2 (and DINOv2 with registers): HF ``Dinov2Model`` / ``Dinov2WithRegistersModel``.

Cambrian uses ``last_hidden_state`` (after the final LayerNorm), CLS and registers dropped, at a
resolution other than the native 518 (ViT-L @336, ViT-g @378 in the release stack); the 37x37
position grid is resampled the way the HF model does it (bicubic; antialiased with registers).
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

_BASE = dict(patch=14, pos_size=37, act="gelu", ln_eps=1e-6, layerscale=True)
_REG = dict(registers=4, pos_interp="bicubic_aa")
VARIANTS = {
    "S/14": _BASE | dict(width=384, depth=12, heads=6, mlp_dim=1536, image_size=518),
    "B/14": _BASE | vit.SIZES["B"] | dict(image_size=518),
    "L/14": _BASE | vit.SIZES["L"] | dict(image_size=336),
    "g/14": _BASE | dict(width=1536, depth=40, heads=24, mlp_dim=4096, mlp="swiglu",
                         image_size=378),
    "runlocal": _BASE | vit.TINY | dict(image_size=56),
}
VARIANTS |= {f"{k}-reg": v | _REG for k, v in list(VARIANTS.items())}
DEFAULT_VARIANT = "L/14"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("dinov2", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    swiglu = hf["use_swiglu_ffn"]
    hidden = int(hf["hidden_size"] * hf["mlp_ratio"])
    if swiglu:  # HF Dinov2SwiGLUFFN sizing
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
    regs = hf.get("num_register_tokens", 0)  # only Dinov2WithRegistersConfig has it
    return vit.hf_common(hf | {"intermediate_size": hidden}, mlp="swiglu" if swiglu else "mlp",
                         layerscale=True, registers=regs,
                         pos_interp="bicubic_aa" if regs else "bicubic")


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF DINOv2 directory (``config.json`` + safetensors/bin)."""
    reader = weights.open_checkpoint(checkpoint)
    cfg = vit.pick_config("dinov2", VARIANTS, checkpoint, variant=variant,
                          default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                          default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
    prefix = layout.find_prefix(reader, "embeddings.cls_token", ("", "dinov2."))
    entries = vit.hf_vit_layout(cfg, prefix, norm_names=("norm1", "norm2"),
                                mlp_names=(("mlp.weights_in", "mlp.weights_out")
                                           if cfg.mlp == "swiglu" else ("mlp.fc1", "mlp.fc2")))
    return vit.load_layout(cfg, reader, entries)


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """HF BitImageProcessor with Cambrian's resolution: shortest side, centre crop, bicubic."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, resize="shortest", interpolation="bicubic")
