"""SigLIP 2 vision towers (Tschannen et al. 2025, arXiv:2502.14786): fixed resolution and NaFlex.

How they are published (hub collection ``google/siglip2``):

* FixRes, ``google/siglip2-{base,large,so400m,giant-opt}-patch{14,16,32}-{224..512}``: the HF
  SigLIP (v1) layout -- ``model_type: siglip``, ``SiglipModel`` / ``SiglipVisionModel``: a conv
  patch embedding and a learned square position table at the checkpoint resolution. timm /
  open_clip publish the same towers as timm trunks (``timm/ViT-SO400M-14-SigLIP2-384``).
* NaFlex, ``google/siglip2-{base-patch16,so400m-patch16}-naflex``: ``model_type: siglip2``,
  ``Siglip2Model`` / ``Siglip2VisionModel``, called with ``pixel_attention_mask`` and
  ``spatial_shapes``: a Linear embedding of (row, column, channel)-flattened patches and a 16 x 16
  position table resampled per image (``naflex``: native aspect ratio, up to
  ``max_num_patches`` patches, padded batches with their masks).

Both are the SigLIP ViT: no CLS or register tokens (nothing to drop), pre-norm blocks with
tanh-GELU, LayerNorm eps 1e-6, a final LayerNorm (``post_layernorm``); the attention-pooling head
is not used. Features (``DEFAULT_LAYER = None``) are ``last_hidden_state``, after the final norm:
the paper's VLM probe (Sec. 4, a Gemma 2 LLM trained PaliGemma-style on the frozen encoder) feeds
the LLM the ViT's normed output tokens (big_vision ``models/proj/paligemma/paligemma.py`` over
``models/vit.py``, whose encoder ends in ``encoder_norm``) -- also the layer Cambrian-1 takes
from SigLIP. ``layer=k`` is HF's ``hidden_states[k]`` (0 = the embeddings, no final norm).

Other resolutions follow each checkpoint's reference: HF FixRes ``interpolate_pos_encoding``
(bicubic, no antialiasing), timm ``resample_abs_pos_embed`` (bicubic, antialiased), NaFlex per
image (bilinear, antialiased).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, layout, siglip, vit
from cambrian.models.encoders.naflex import NaFlexConfig, NaFlexViT
from cambrian.models.encoders.preprocess import HALF, PreprocessSpec

_BASE = dict(act="gelu_tanh", ln_eps=1e-6, cls_token=False, pos_cls=False)
# big_vision ``decode_variant``: So400m and g-opt (the giant with a So400m-sized text tower)
_SO400M = dict(width=1152, depth=27, heads=16, mlp_dim=4304)
_GOPT = dict(width=1536, depth=40, heads=16, mlp_dim=6144)
_NAFLEX = dict(pos_interp="bilinear_aa", max_num_patches=256)  # the processor's default


def _fixres(size: dict, patch: int, res: int) -> dict:
    return _BASE | size | dict(patch=patch, image_size=res, pos_size=res // patch)


VARIANTS = {
    **{f"B/16-{r}": _fixres(vit.SIZES["B"], 16, r) for r in (224, 256, 384, 512)},
    "B/32-256": _fixres(vit.SIZES["B"], 32, 256),
    **{f"L/16-{r}": _fixres(vit.SIZES["L"], 16, r) for r in (256, 384, 512)},
    **{f"So400m/14-{r}": _fixres(_SO400M, 14, r) for r in (224, 384)},
    **{f"So400m/16-{r}": _fixres(_SO400M, 16, r) for r in (256, 384, 512)},
    **{f"g-opt/16-{r}": _fixres(_GOPT, 16, r) for r in (256, 384)},
    # NaFlex: a 16 x 16 table; image_size = the square that fills max_num_patches
    "B/16-naflex": _BASE | vit.SIZES["B"] | _NAFLEX | dict(patch=16, image_size=256, pos_size=16),
    "So400m/16-naflex": _BASE | _SO400M | _NAFLEX | dict(patch=16, image_size=256, pos_size=16),
    "runlocal": _BASE | vit.TINY | _NAFLEX | dict(patch=8, image_size=32, max_num_patches=16),
    "runlocal-fixres": _BASE | vit.TINY | dict(patch=8, image_size=32),
}
DEFAULT_VARIANT = "So400m/14-384"
DEFAULT_LAYER = None


def _config(variant: str, **overrides) -> vit.ViTConfig:
    cls = NaFlexConfig if "max_num_patches" in VARIANTS.get(variant, {}) else vit.ViTConfig
    return common.variant_config("siglip2", cls, VARIANTS, variant, **overrides)


def _module(cfg: vit.ViTConfig) -> type[vit.VisionTransformer]:
    return NaFlexViT if isinstance(cfg, NaFlexConfig) else vit.VisionTransformer


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> vit.VisionTransformer:
    """A randomly initialised tower: ``NaFlexViT`` for the NaFlex variants (``runlocal``)."""
    cfg = _config(variant, image_size=image_size, layer=layer, dtype=dtype)
    return common.random_init(_module(cfg), cfg, rngs=rngs)


def _config_from_hf(hf: dict, variant: str | None) -> vit.ViTConfig:
    """The architecture in an HF vision config; ``variant`` gives the default image size (and
    ``max_num_patches``) and must be of the same kind (FixRes / NaFlex)."""
    naflex = "num_patches" in hf
    given = _config(variant) if variant is not None else None
    if given is not None and isinstance(given, NaFlexConfig) != naflex:
        kind = "NaFlex (model_type siglip2)" if naflex else "FixRes (model_type siglip)"
        raise weights.CheckpointError(
            f"siglip2: the checkpoint is a {kind} tower but variant {variant!r} is not; pass a "
            f"{'*-naflex' if naflex else 'fixed-resolution'} variant or none")
    if not naflex:
        cfg = vit.hf_common(hf, cls_token=False, pos_cls=False)
        return cfg if given is None else cfg.replace(image_size=given.image_size)
    side = round(hf["num_patches"] ** 0.5)
    cfg = vit.hf_common(hf | {"image_size": side * hf["patch_size"]}, cls_token=False,
                        pos_cls=False)
    cfg = NaFlexConfig(**dataclasses.asdict(cfg) | dict(pos_interp="bilinear_aa"))
    if given is None:
        return dataclasses.replace(cfg, max_num_patches=hf["num_patches"])
    return dataclasses.replace(cfg, image_size=given.image_size,
                               max_num_patches=given.max_num_patches)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> vit.VisionTransformer:
    """From an HF SigLIP (FixRes) or SigLIP2 (NaFlex) directory, or a timm / open_clip state dict
    (FixRes; ``variant`` names its architecture, timm files carry none)."""
    reader = weights.open_checkpoint(checkpoint)
    hf_pre = next((p for p in ("vision_model.", "") if p + "embeddings.patch_embedding.weight"
                   in reader), None)
    layer = DEFAULT_LAYER if layer is None else layer
    if hf_pre is not None:
        hf = vit.hf_config(checkpoint)
        if hf is None:
            raise weights.CheckpointError(
                f"{checkpoint}: HF SigLIP tensors without a config.json beside them; keep the "
                "checkpoint's config.json in the directory (it defines the architecture)")
        cfg = _config_from_hf(hf, variant)
        cfg = dataclasses.replace(cfg, image_size=image_size or cfg.image_size, layer=layer,
                                  dtype=dtype).check()
        linear = reader[hf_pre + "embeddings.patch_embedding.weight"].ndim == 2
        # the HF SigLIP / SigLIP2 layout has one home: the siglip family
        entries = siglip._hf_layout(cfg, hf_pre, linear)
        return layout.fill(common.abstract(_module(cfg), cfg), entries, reader)
    pre = layout.find_prefix(reader, "patch_embed.proj.weight", ("visual.trunk.", "trunk.", ""))
    cfg = _config(variant or DEFAULT_VARIANT, image_size=image_size, layer=layer, dtype=dtype)
    if isinstance(cfg, NaFlexConfig):
        raise weights.CheckpointError(f"{checkpoint}: a timm state dict is a FixRes tower; pass "
                                      f"a fixed-resolution variant, not {variant!r}")
    cfg = dataclasses.replace(cfg, pos_interp="bicubic_aa")
    return vit.load_layout(cfg, reader, vit.timm_layout(cfg, pre))


def reference(src: str, px, config: vit.ViTConfig, spatial_shapes=None):
    """The features of the checkpoint's own PyTorch library: HF ``Siglip2VisionModel`` for
    NaFlex (``spatial_shapes`` as in ``NaFlexViT``: a padded batch on its canvas grid, zeros
    outside each image), else HF ``SiglipVisionModel`` / timm (``vit.reference``)."""
    hf = vit.hf_config(src)
    if hf is not None and "num_patches" in hf:
        return _naflex_reference(src, px, config, spatial_shapes)
    if spatial_shapes is not None:
        raise ValueError("siglip2.reference: spatial_shapes needs a NaFlex (siglip2) checkpoint")
    return vit.reference(src, px, config)


def _naflex_reference(src: str, px, config: NaFlexConfig, spatial_shapes) -> np.ndarray:
    """HF ``Siglip2VisionModel`` on the patch sequences of ``px`` (NCHW torch), padded to
    ``config.max_num_patches`` as the processor pads them (not padded without ``spatial_shapes``);
    float32[B, H/p, W/p, C] on the canvas grid."""
    import torch

    from cambrian.models.encoders import reference as ref

    b, _, hh, ww = px.shape
    p = config.patch
    gh, gw = hh // p, ww // p
    if spatial_shapes is None:
        ss, length = np.tile([gh, gw], (b, 1)), gh * gw
    else:
        ss, length = np.asarray(spatial_shapes).reshape(b, 2), config.max_num_patches
    seqs = torch.zeros(b, length, p * p * 3, dtype=px.dtype)
    mask = torch.zeros(b, length, dtype=torch.long)
    for i, (h, w) in enumerate(ss):  # the processor's patch order: rows, columns, (py, px, rgb)
        img = px[i, :, :h * p, :w * p].reshape(3, h, p, w, p)
        seqs[i, :h * w] = img.permute(1, 3, 2, 4, 0).reshape(h * w, -1)
        mask[i, :h * w] = 1
    out = ref.hf_model(src)(pixel_values=seqs, pixel_attention_mask=mask,
                            spatial_shapes=torch.from_numpy(ss).long(), output_hidden_states=True)
    tokens = ref.to_numpy(ref.pick(out.hidden_states, out.last_hidden_state, config))
    grid = np.zeros((b, gh, gw, tokens.shape[-1]), np.float32)
    for i, (h, w) in enumerate(ss):
        grid[i, :h, :w] = tokens[i, :h * w].reshape(h, w, -1)
    return grid


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """HF ``SiglipImageProcessor`` of the FixRes checkpoints (``resample: 2``) and
    ``Siglip2ImageProcessor`` of NaFlex (a square image fills the square grid): resize to the
    resolution, bilinear, mean = std = 0.5; Cambrian pads with the processor mean."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="squash", interpolation="bilinear")
