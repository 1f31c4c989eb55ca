"""MetaCLIP 2 "worldwide" vision towers (Chuang et al. 2025, arXiv:2507.22062): HF ``metaclip_2``.

Published as HF ``MetaClip2Model`` directories, ``facebook/metaclip-2-worldwide-*``
(``huge-quickgelu``, ``huge-378``, ``giant``, ``giant-378``; the distilled ``s16``, ``m16``,
``b16``, ``b32``, ``l14``), converted from the mini_clip checkpoints of facebookresearch/MetaCLIP
(``ViT-H-14-quickgelu-worldwide`` ...; architectures in ``src/mini_clip/model_configs``). The
vision tower is OpenAI CLIP's, tensor for tensor the HF ``CLIPVisionModel`` layout: a bias-free
conv patch embedding, a CLS token with its own position slot, ``pre_layrnorm`` on the embeddings,
pre-norm blocks (QuickGELU for ``huge-quickgelu``, exact GELU for the others), LayerNorm eps 1e-5;
``post_layernorm`` acts on the pooled CLS token only.

Features: like Cambrian-1's CLIP-L/14 (LLaVA's ``mm_vision_select_layer=-2``), the penultimate
block's output ``hidden_states[-2]`` with the CLS token dropped (``DEFAULT_LAYER = -2``);
``layer=k`` is HF's ``hidden_states[k]`` (0 = the embeddings after ``pre_layrnorm``), ``None``
``last_hidden_state`` (no final norm on the tokens). Other image sizes use HF's
``interpolate_pos_encoding`` (bicubic, no antialiasing, the CLS slot kept) -- all of this is the
``clip`` family's code, which ``load`` reuses.
"""

from __future__ import annotations

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import clip, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

_GELU = dict(act="gelu", ln_eps=1e-5, pre_norm=True, final_norm=False, patch_bias=False)
_H = dict(width=1280, depth=32, heads=16, mlp_dim=5120, patch=14)
# ViT-bigG-14-worldwide: width 1664, head_width 104, mlp_ratio 4.9231 (HF: intermediate 8192)
_BIGG = dict(width=1664, depth=48, heads=16, mlp_dim=8192, patch=14)
# mini_clip's default head_width 64 sets the heads of the smaller towers
_S = dict(width=384, depth=12, heads=6, mlp_dim=1536)
_M = dict(width=512, depth=12, heads=8, mlp_dim=2048)


def _at(res: int, patch: int) -> dict:
    return dict(patch=patch, image_size=res, pos_size=res // patch)


VARIANTS = {
    "H/14": _GELU | _H | _at(224, 14) | dict(act="quick_gelu"),  # huge-quickgelu
    "H/14-378": _GELU | _H | _at(378, 14),
    "bigG/14": _GELU | _BIGG | _at(224, 14),
    "bigG/14-378": _GELU | _BIGG | _at(378, 14),
    "S/16": _GELU | _S | _at(224, 16),
    "S/16-384": _GELU | _S | _at(384, 16),
    "M/16": _GELU | _M | _at(224, 16),
    "M/16-384": _GELU | _M | _at(384, 16),
    "B/32": _GELU | vit.SIZES["B"] | _at(224, 32),
    "B/32-384": _GELU | vit.SIZES["B"] | _at(384, 32),
    "B/16": _GELU | vit.SIZES["B"] | _at(224, 16),
    "B/16-384": _GELU | vit.SIZES["B"] | _at(384, 16),
    "L/14": _GELU | vit.SIZES["L"] | _at(224, 14),
    "runlocal": _GELU | vit.TINY | dict(patch=14, image_size=56),
}
DEFAULT_VARIANT = "H/14-378"
DEFAULT_LAYER = -2


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("metaclip2", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF MetaCLIP 2 directory (``MetaClip2Model`` or ``MetaClip2VisionModel``); its
    ``config.json`` defines the architecture, ``variant`` only the default image size."""
    if vit.hf_config(checkpoint) is None:
        raise weights.CheckpointError(
            f"{checkpoint}: no HF config.json; metaclip2 reads the transformers layout "
            "(download e.g. facebook/metaclip-2-worldwide-huge-378 with its config.json)")
    if image_size is None and variant is not None:
        image_size = vit.config_for("metaclip2", VARIANTS, variant).image_size
    return clip.load(checkpoint, image_size=image_size,
                     layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype)


reference = vit.reference  # HF MetaClip2VisionModel from the checkpoint's config.json


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """mini_clip's eval transform (shortest side to the resolution, centre crop, bicubic, OpenAI
    CLIP mean/std); HF's ``CLIPImageProcessor`` for these checkpoints squashes to the square
    instead, the same image after Cambrian's pad-to-square."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN, std=CLIP_STD,
                          resize="shortest", interpolation="bicubic")
