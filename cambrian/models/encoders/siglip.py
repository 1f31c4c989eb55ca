"""SigLIP vision towers: HF ``SiglipVisionModel`` / ``Siglip2VisionModel`` and the timm /
open_clip (``hf-hub:timm/ViT-SO400M-14-SigLIP-384``) trunk layout.

Cambrian uses the timm trunk's ``forward_features``: final block + final LayerNorm, no CLS (27x27
grid at 384 for SO400M/14). The two layouts differ in the MLP activation: timm builds
``vit_so400m_patch14_siglip_*`` with its default exact-erf GELU (``VARIANTS``, used for the timm /
open_clip files), HF SigLIP with ``gelu_pytorch_tanh`` (read from its ``config.json``). Other image
sizes follow the checkpoint's own reference rule: HF SigLIP ``interpolate_pos_encoding``
(bicubic), SigLIP2 (bilinear, antialiased), timm ``resample_abs_pos_embed`` (bicubic,
antialiased).
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, HALF, PreprocessSpec

_BASE = dict(act="gelu", ln_eps=1e-6, cls_token=False, pos_cls=False)
VARIANTS = {
    "B/16": _BASE | vit.SIZES["B"] | dict(patch=16, image_size=224, pos_size=14),
    "L/16-384": _BASE | vit.SIZES["L"] | dict(patch=16, image_size=384, pos_size=24),
    "So400m/14": _BASE | dict(patch=14, width=1152, depth=27, heads=16, mlp_dim=4304,
                              image_size=224, pos_size=16),
    "So400m/14-384": _BASE | dict(patch=14, width=1152, depth=27, heads=16, mlp_dim=4304,
                                  image_size=384, pos_size=27),
    "runlocal": _BASE | vit.TINY | dict(patch=14, image_size=56),
}
DEFAULT_VARIANT = "So400m/14-384"
DEFAULT_LAYER = None


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("siglip", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def _config_from_hf(hf: dict) -> vit.ViTConfig:
    if "num_patches" in hf:  # SigLIP2: a square position grid, resampled per image size
        side = int(round(hf["num_patches"] ** 0.5))
        hf = hf | {"image_size": side * hf["patch_size"]}
        return vit.hf_common(hf, cls_token=False, pos_cls=False, pos_interp="bilinear_aa")
    return vit.hf_common(hf, cls_token=False, pos_cls=False)


def _hf_layout(cfg: vit.ViTConfig, pre: str, linear_patch: bool) -> dict:
    e = pre + "embeddings."
    c, p = cfg.width, cfg.patch
    entries = vit.embed_layout(cfg, {
        "patch": e + "patch_embedding", "pos": e + "position_embedding.weight",
        "pos_shape": (cfg.pos_size ** 2, c), "final_norm": pre + "post_layernorm"})
    if linear_patch:  # SigLIP2 embeds (py, px, channel)-flattened patches with a Linear
        entries["patch_embed.kernel"] = (e + "patch_embedding.weight", (c, p * p * 3),
                                        lambda w: w.T.reshape(p, p, 3, c))
    entries |= vit.hf_clip_blocks_layout(cfg, pre)
    return entries


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF SigLIP/SigLIP2 directory, or a timm/open_clip state dict (sizes read from its
    tensors, heads from ``variant``)."""
    reader = weights.open_checkpoint(checkpoint)
    hf_pre = next((p for p in ("vision_model.", "") if p + "embeddings.patch_embedding.weight"
                   in reader), None)
    if hf_pre is not None:
        cfg = vit.pick_config("siglip", VARIANTS, checkpoint, variant=variant,
                              default_variant=DEFAULT_VARIANT, image_size=image_size, layer=layer,
                              default_layer=DEFAULT_LAYER, dtype=dtype, from_hf=_config_from_hf)
        linear = reader[hf_pre + "embeddings.patch_embedding.weight"].ndim == 2
        return vit.load_layout(cfg, reader, _hf_layout(cfg, hf_pre, linear))
    pre = layout.find_prefix(reader, "patch_embed.proj.weight", ("visual.trunk.", "trunk.", ""))
    cfg = vit.config_for("siglip", VARIANTS, variant or DEFAULT_VARIANT, image_size=image_size,
                         layer=layer, default_layer=DEFAULT_LAYER, dtype=dtype)
    cfg = dataclasses.replace(vit.timm_shapes(cfg, reader, pre), pos_interp="bicubic_aa")
    return vit.load_layout(cfg, reader, vit.timm_layout(cfg, pre))


reference = vit.reference  # HF, timm or open_clip: whichever layout the checkpoint has


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """open_clip / HF SigLIP transform: squash to the resolution, bicubic, mean = std = 0.5.

    The pad colour is the CLIP mean: Cambrian's wrapped open_clip processor reports it.
    """
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="squash", interpolation="bicubic", pad_color=CLIP_MEAN)
