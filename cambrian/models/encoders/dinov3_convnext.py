"""DINOv3 ConvNeXts (distilled from the 7B): HF ``DINOv3ConvNextModel``, published as
``facebook/dinov3-convnext-{tiny,small,base,large}-pretrain-lvd1689m``.

The trunk is the ConvNeXt of ``convnext`` (4x4/4 stem + LayerNorm, LayerNorm + 2x2/2 downsample
before stages 1-3, blocks dwconv 7x7 -> LayerNorm -> 4C GELU MLP -> layer scale, all norms at
``layer_norm_eps`` = 1e-6), so the module and its stage options are that family's. The one
addition is DINOv3's final LayerNorm over the last stage's tokens (HF ``last_hidden_state``,
behind a global-average-pooled token; facebookresearch/dinov3 ``dinov3/models/convnext.py``
``forward_features`` -> ``x_norm_patchtokens``).

Stages are indexed as ``convnext`` does: ``layer=k`` is stage k's raw map (HF
``hidden_states[k + 1]``; ``hidden_states[0]`` is the input image), no final norm; ``layer=None``
(default) uses the variant's ``stages``, the last stage taken after the final LayerNorm -- for the
single-stage variants that is ``last_hidden_state`` without the pooled token, DINOv3's own patch
features. ``num_tokens`` resamples the output grid bilinearly, as in ``convnext``. Published sizes
(dinov3 ``convnext_sizes``): T (3,3,9,3)x(96..768) 29M, S (3,3,27,3)x(96..768) 50M,
B (3,3,27,3)x(128..1024) 89M, L (3,3,27,3)x(192..1536) 198M, all at 224 px.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, convnext, dinov3, features, layout, vit
from cambrian.models.encoders.common import LayerNorm
from cambrian.models.encoders.convnext import ConvNeXtConfig
from cambrian.models.encoders.preprocess import PreprocessSpec

Array = jax.Array

VARIANTS = {
    "T": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), image_size=224),
    "S": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), image_size=224),
    "B": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), image_size=224),
    "L": dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), image_size=224),
    "runlocal": dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), image_size=64),
    "runlocal-multi-stage": dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), image_size=64,
                                 stages=(0, 1, 2, 3), num_tokens=36),
}
DEFAULT_VARIANT = "L"
DEFAULT_LAYER = None  # the variant's stages; the last one after the final LayerNorm


class DINOv3ConvNeXt(convnext.ConvNeXt):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, h, w, C].

    ``out``: ``stem``, ``stages`` (raw stage maps float[B, h_i, w_i, C_i]) and ``last_hidden_state``
    (the last stage after the final LayerNorm, float[B, h_3, w_3, C_3]).
    """

    def __init__(self, cfg: ConvNeXtConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        self.norm = LayerNorm(cfg.dims[-1], cfg.norm_eps)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        _, out = super().__call__(pixels)  # its features (raw maps) are not used: XLA drops them
        maps = list(out["stages"])
        last = self.norm(maps[-1])
        if cfg.layer is None:  # DINOv3's patch features: the last stage after the final norm
            maps[-1] = last
        used = [maps[s] for s in cfg.used_stages]
        grid = self.grid if cfg.num_tokens is not None else tuple(used[-1].shape[1:3])
        feats = jnp.concatenate([features.resize_grid(m, grid) for m in used], axis=-1)
        return feats.astype(jnp.float32), out | {"last_hidden_state": last}


def _config(variant: str, image_size: int | None, layer: int | None, num_tokens: int | None,
            dtype: str) -> ConvNeXtConfig:
    return common.variant_config("dinov3_convnext", ConvNeXtConfig, VARIANTS, variant,
                                 image_size=image_size, layer=layer, num_tokens=num_tokens,
                                 dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, num_tokens: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> DINOv3ConvNeXt:
    """A randomly initialised DINOv3 ConvNeXt (tests, ``:runlocal``)."""
    return common.random_init(DINOv3ConvNeXt, _config(variant, image_size, layer, num_tokens,
                                                      dtype), rngs=rngs)


def checkpoint_layout(cfg: ConvNeXtConfig, prefix: str = "") -> dict:
    """Parameter path -> (HF tensor name, its shape, transform); ``prefix`` is ``""`` on the hub
    (``stages.i.*``) or ``model.`` in transformers' own module tree."""
    d, norm = cfg.dims, layout.norm_layout
    s0 = f"{prefix}stages.0.downsample_layers."
    out = {"stem.kernel": (s0 + "0.weight", (d[0], 3, 4, 4), layout.t_conv),
           "stem.bias": (s0 + "0.bias", (d[0],), None),
           **norm("stem_norm", s0 + "1", d[0]), **norm("norm", "layer_norm", d[-1])}
    # the stem is stage 0's downsample; blocks are "layers", the MLP pointwise convolutions
    names = dict(down="downsample_layers", blocks="layers", conv_dw="depthwise_conv",
                 norm="layer_norm", fc1="pointwise_conv1", fc2="pointwise_conv2")
    return out | convnext.stage_layout(cfg, prefix, names)


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, num_tokens: int | None = None,
         dtype: str = "float32") -> DINOv3ConvNeXt:
    """From an HF DINOv3 ConvNeXt directory (``config.json`` + safetensors, as on the hub): its
    ``config.json`` gives depths, widths and eps; ``variant`` the size and stage options."""
    hf = vit.hf_config(checkpoint)
    if hf is None:
        raise weights.CheckpointError(
            f"{checkpoint}: no config.json beside the weights; DINOv3 ConvNeXts are read from the "
            "HF directories published as facebook/dinov3-convnext-*-pretrain-lvd1689m")
    if hf["hidden_act"] != "gelu":
        raise weights.CheckpointError(f"{checkpoint}/config.json: hidden_act="
                                      f"{hf['hidden_act']!r}; the ConvNeXt trunk uses 'gelu'")
    cfg = dataclasses.replace(
        _config(variant or DEFAULT_VARIANT, image_size, layer, num_tokens, dtype),
        depths=tuple(hf["depths"]), dims=tuple(hf["hidden_sizes"]),
        norm_eps=hf["layer_norm_eps"]).check()
    reader = weights.open_checkpoint(checkpoint)
    prefix = layout.find_prefix(reader, "stages.0.downsample_layers.0.weight", ("", "model."))
    return layout.fill(common.abstract(DINOv3ConvNeXt, cfg), checkpoint_layout(cfg, prefix),
                       reader)


def reference(src: str, px, config: ConvNeXtConfig) -> np.ndarray:
    """transformers ``DINOv3ConvNextModel`` from ``src``: the used stage maps (the last one from
    ``last_hidden_state`` for ``layer=None``), bilinear to the output grid, concatenated."""
    import torch

    from cambrian.models.encoders import reference as ref

    out = ref.hf_model(src)(pixel_values=px, output_hidden_states=True)
    maps = list(out.hidden_states[1:])
    if config.layer is None:
        b, c, h, w = maps[-1].shape
        maps[-1] = out.last_hidden_state[:, 1:].transpose(1, 2).reshape(b, c, h, w)
    used = [maps[s] for s in config.used_stages]
    size = tuple(used[-1].shape[-2:]) if config.num_tokens is None else config.grid
    used = [m if tuple(m.shape[-2:]) == size else torch.nn.functional.interpolate(
        m, size=size, mode="bilinear", align_corners=False) for m in used]
    return ref.to_numpy(torch.cat(used, dim=1).permute(0, 2, 3, 1))


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """As the DINOv3 ViTs (``dinov3.preprocessing``): resize, bilinear, ImageNet mean/std."""
    return dataclasses.replace(dinov3.preprocessing("L/16"),
                               image_size=VARIANTS[variant]["image_size"])
