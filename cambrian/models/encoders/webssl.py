"""Web-SSL (Fan, Tong et al. 2025, "Scaling Language-Free Visual Representation Learning",
arXiv 2504.01017): Web-DINO and Web-MAE ViTs trained on MetaCLIP's 2B web images.

Published on the hub as HF directories (facebookresearch/webssl README, ``demo_webdino.py``,
``demo_webmae.py``):

* Web-DINO ``facebook/webssl-dino{300m,1b,2b,3b,5b}-full2b-224``,
  ``facebook/webssl-dino7b-full8b-{224,378,518}`` (and the ``light2b`` / ``heavy2b`` text-rich
  data variants of the 2B / 3B): ``Dinov2Model`` layout -- DINOv2 ViTs without registers, patch
  14, layer scale, SwiGLU FFN at every size (``ffn_layer='swiglu'``, hidden
  ``int(2/3 * 4 width)`` rounded up to 8), learned positions for the pretraining grid,
  resampled bicubic (HF ``Dinov2Embeddings.interpolate_pos_encoding``) at other sizes. Widths /
  depths / heads from ``dinov2/vision_transformer.py``: 300M = ViT-L (1024/24/16), 1B = ViT-g
  (1536/40/24), 2B 2688/24/21, 3B 3072/26/24, 5B 3584/32/28, 7B 4096/32/32.
* Web-MAE ``facebook/webssl-mae{300m,700m,1b,2b,3b,7b}-full2b-224``: HF ``ViTModel`` layout --
  MAE encoders (timm ``VisionTransformer``, GELU MLP ratio 4, no layer scale): 300M = ViT-L/16,
  700M = ViT-H/14, 1B 1536/40/24, 2B 2688/24/21, 3B 3072/26/24 (``mae/mae.py``), all with patch
  14 except the 300M (``mae.py`` builds it with patch 16; the README table says 14x14, but
  ``load`` reads the patch from ``config.json`` either way). The 7B is listed in the README but
  not in ``mae.py``: its variant assumes the Web-DINO 7B's 4096/32/32 with the MAE MLP, and
  ``load`` refuses a checkpoint whose ``config.json`` disagrees.

The released demos extract "the patch-wise features from the last layer": HF
``last_hidden_state`` (final LayerNorm applied) with the CLS token dropped -- ``layer=None``, the
default, as Cambrian does for DINOv2 and MAE. ``layer=k`` is HF ``hidden_states[k]``. Images
are resized to the square pretraining resolution without a crop, bicubic, ImageNet mean/std (the
demos' HF processor with ``do_center_crop=False`` and torchvision ``Resize((size, size))``).
``load`` reads the checkpoint's ``config.json`` (``model_type`` ``dinov2`` or
``vit``) through the ``dinov2`` / ``mae`` loaders, whose layouts these are; ``variant`` gives the
default resolution and must agree with the checkpoint's architecture.
"""

from __future__ import annotations

import types

from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import dinov2, mae, vit
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

_DINO = dict(patch=14, act="gelu", ln_eps=1e-6, mlp="swiglu", layerscale=True, image_size=224,
             pos_size=16)
_MAE = dict(patch=14, act="gelu", ln_eps=1e-6, image_size=224, pos_size=16)
_SIZES = {"300m": (1024, 24, 16), "1b": (1536, 40, 24), "2b": (2688, 24, 21),
          "3b": (3072, 26, 24), "5b": (3584, 32, 28), "7b": (4096, 32, 32)}


def _dims(size: str, mlp_dim: int) -> dict:
    width, depth, heads = _SIZES[size]
    return dict(width=width, depth=depth, heads=heads, mlp_dim=mlp_dim)


def _swiglu_hidden(width: int) -> int:
    """dinov2 ``SwiGLUFFNFused``: int(2/3 of 4 width), rounded up to a multiple of 8."""
    return (int(4 * width * 2 / 3) + 7) // 8 * 8


VARIANTS = {f"dino{s}": _DINO | _dims(s, _swiglu_hidden(_SIZES[s][0])) for s in _SIZES}
VARIANTS |= {f"dino7b@{res}": VARIANTS["dino7b"] | dict(image_size=res, pos_size=res // 14)
             for res in (378, 518)}
# the 2B / 3B trained on the text-rich "light" / "heavy" MC-2B filters: same towers
VARIANTS |= {f"dino{s}-{d}": VARIANTS[f"dino{s}"] for s in ("2b", "3b") for d in ("light", "heavy")}
VARIANTS |= {f"mae{s}": _MAE | _dims(s, 4 * _SIZES[s][0]) for s in ("1b", "2b", "3b", "7b")}
VARIANTS |= {"mae300m": _MAE | vit.SIZES["L"] | dict(patch=16, pos_size=14),
             "mae700m": _MAE | vit.SIZES["H"]}
VARIANTS |= {"runlocal": _DINO | vit.TINY | dict(image_size=56),
             "runlocal-mae": _MAE | vit.TINY | dict(image_size=56)}
DEFAULT_VARIANT = "dino7b"
DEFAULT_LAYER = None  # last_hidden_state (after the final LayerNorm), CLS dropped

# config.json model_type -> the family module whose loader reads that layout
_LAYOUTS: dict[str, types.ModuleType] = {"dinov2": dinov2, "vit": mae, "vit_mae": mae}


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    return vit.create("webssl", VARIANTS, variant, image_size=image_size, layer=layer,
                      default_layer=DEFAULT_LAYER, rngs=rngs, dtype=dtype)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From a Web-SSL HF directory (``config.json`` + safetensors, as on the hub)."""
    hf = vit.hf_config(checkpoint)
    kind = hf and hf.get("model_type")
    if kind not in _LAYOUTS:
        found = "no config.json" if hf is None else f"config.json model_type {kind!r}"
        raise weights.CheckpointError(
            f"{checkpoint}: {found}; Web-SSL checkpoints are the HF directories published as "
            "facebook/webssl-{dino,mae}* (Dinov2Model or ViTModel, model_type 'dinov2' / 'vit'): "
            "download the whole repo")
    want = vit.config_for("webssl", VARIANTS, variant) if variant else None
    enc = _LAYOUTS[kind].load(checkpoint, image_size=image_size or (want and want.image_size),
                              layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype)
    got = enc.config
    if want is not None and (want.width, want.depth, want.patch, want.mlp) != (
            got.width, got.depth, got.patch, got.mlp):
        raise weights.CheckpointError(
            f"{checkpoint}: a {kind} ViT of width {got.width}, depth {got.depth}, patch "
            f"{got.patch}, {got.mlp} MLP, but variant {variant!r} is width {want.width}, depth "
            f"{want.depth}, patch {want.patch}, {want.mlp} MLP; pass the variant of this "
            f"checkpoint (one of {', '.join(VARIANTS)}) or none")
    return enc


reference = vit.reference  # transformers Dinov2Model / ViTModel from the checkpoint


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """Resize to the square resolution (no crop), bicubic, ImageNet mean/std."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, resize="squash", interpolation="bicubic")
