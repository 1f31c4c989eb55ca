"""OpenCLIP ConvNeXt towers (timm ``ConvNeXt`` trunk), Cambrian's single- and multi-stage output.

Cambrian-1 runs the trunk of open_clip's ``laion/CLIP-convnext_large_d_320...`` (L) and
``laion/CLIP-convnext_xxlarge...`` (XXL) at 512 or 1024 px: stem and the four stages, no head.
Single-stage features are the last stage (stride 32); the release model's "multi-stage" tower
resizes all four stage maps bilinearly to one grid (96x96 = 9216 tokens at 1024 px) and
concatenates them along channels (384+768+1536+3072 = 5760 for XXL).

``layer`` picks one stage (0..3, negative allowed) instead of the variant's stage list;
``num_tokens`` (a perfect square) sets the output grid, None keeps the last chosen stage's grid.
Weights load from an open_clip state dict (``visual.trunk.*``) or a timm ConvNeXt state dict.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, features, layout
from cambrian.models.encoders.common import ZEROS, Dense, Init, LayerNorm, param
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

Array = jax.Array

_L = dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536))
_XXL = dict(depths=(3, 4, 30, 3), dims=(384, 768, 1536, 3072), norm_eps=1e-5)  # timm xxlarge eps
_TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))
VARIANTS = {
    "L@512": _L | dict(image_size=512),
    "L@1024": _L | dict(image_size=1024),
    "XXL@1024": _XXL | dict(image_size=1024),
    "XXL@1024-multi-stage": _XXL | dict(image_size=1024, stages=(0, 1, 2, 3), num_tokens=96 * 96),
    "runlocal": _TINY | dict(image_size=64),
    "runlocal-multi-stage": _TINY | dict(image_size=64, stages=(0, 1, 2, 3), num_tokens=36),
}
DEFAULT_VARIANT = "XXL@1024-multi-stage"
DEFAULT_LAYER = None  # the variant's stages
_PREFIXES = ("visual.trunk.", "trunk.", "")  # open_clip, open_clip trunk, timm


@dataclasses.dataclass(frozen=True)
class ConvNeXtConfig:
    """ConvNeXt trunk and which stage maps become the features.

    stages: stage indices whose maps are resized to ``grid`` and concatenated (in this order).
    layer: when set, the single stage used instead of ``stages``.
    num_tokens: output grid side**2; None -> the native grid of the last used stage.
    dtype: parameter and compute dtype ("float32" | "bfloat16" for a frozen tower); norms stay
      float32 and the features are float32.
    """

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    image_size: int
    norm_eps: float = 1e-6
    stages: tuple[int, ...] = (3,)
    num_tokens: int | None = None
    layer: int | None = None
    dtype: str = "float32"

    def __post_init__(self):  # configs restored from JSON carry lists
        for f in ("depths", "dims", "stages"):
            object.__setattr__(self, f, tuple(getattr(self, f)))

    @property
    def used_stages(self) -> tuple[int, ...]:
        return self.stages if self.layer is None else (self.layer % len(self.dims),)

    @property
    def stage_grids(self) -> tuple[int, ...]:
        """Side of each stage map: the 4x4/4 stem, then a 2x2/2 downsample per later stage."""
        side, out = self.image_size // 4, []
        for i in range(len(self.dims)):
            side = side if i == 0 else side // 2
            out.append(side)
        return tuple(out)

    @property
    def grid(self) -> tuple[int, int]:
        if self.num_tokens is not None:
            side = math.isqrt(self.num_tokens)
            return (side, side)
        side = self.stage_grids[self.used_stages[-1]]
        return (side, side)

    @property
    def out_channels(self) -> int:
        return sum(self.dims[s] for s in self.used_stages)

    def check(self) -> ConvNeXtConfig:
        common.check_dtype(self)
        n = len(self.dims)
        if len(self.depths) != n:
            raise ValueError(f"ConvNeXtConfig: {len(self.depths)} depths for {n} dims")
        if self.layer is not None and not -n <= self.layer < n:
            raise ValueError(f"layer {self.layer} out of range for a {n}-stage ConvNeXt "
                             f"(valid: {-n}..{n - 1}, or None for the variant's stages)")
        if any(not 0 <= s < n for s in self.stages):
            raise ValueError(f"stages {self.stages} out of range for a {n}-stage ConvNeXt")
        if self.num_tokens is not None and math.isqrt(self.num_tokens) ** 2 != self.num_tokens:
            raise ValueError(f"num_tokens {self.num_tokens} is not a perfect square")
        if min(self.stage_grids) < 1:
            raise ValueError(f"image_size {self.image_size} is too small for {n} stages "
                             f"(needs at least {4 * 2 ** (n - 1)} px)")
        return self


_gelu = functools.partial(jax.nn.gelu, approximate=False)  # torch nn.GELU (erf)


class DepthwiseConv(nnx.Module):
    """torch ``Conv2d(C, C, k, padding=k//2, groups=C)`` on channels-last maps."""

    def __init__(self, dim: int, kernel: int, *, rngs: nnx.Rngs):
        self.kernel = param(Init(std=1.0 / kernel), (kernel, kernel, 1, dim),
                            (None, None, None, "embed"), rngs)
        self.bias = param(ZEROS, (dim,), ("embed",))

    def __call__(self, x: Array) -> Array:
        k = self.kernel.shape[0]
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...].astype(x.dtype), (1, 1), [(k // 2, k // 2)] * 2,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
        return y + self.bias[...].astype(x.dtype)


class Block(nnx.Module):
    """dwconv 7x7 -> LayerNorm -> Linear 4C -> GELU -> Linear C -> layer scale, residual."""

    def __init__(self, dim: int, eps: float, *, rngs: nnx.Rngs):
        self.conv_dw = DepthwiseConv(dim, 7, rngs=rngs)
        self.norm = LayerNorm(dim, eps)
        self.fc1 = Dense((dim,), (4 * dim,), ("embed", "mlp"), rngs=rngs)
        self.fc2 = Dense((4 * dim,), (dim,), ("mlp", "embed"), rngs=rngs)
        self.gamma = param(Init(value=1e-6), (dim,), ("embed",))  # timm's layer-scale init

    def __call__(self, x: Array) -> Array:
        y = self.fc2(_gelu(self.fc1(self.norm(self.conv_dw(x)))))
        return x + y * self.gamma[...].astype(x.dtype)


class Stage(nnx.Module):
    def __init__(self, dim_in: int, dim: int, depth: int, eps: float, downsample: bool, *,
                 rngs: nnx.Rngs):
        if downsample:
            self.down_norm = LayerNorm(dim_in, eps)
            self.down = Dense((2, 2, dim_in), (dim,), (None, None, None, "embed"), rngs=rngs)
        else:
            self.down_norm = self.down = None
        self.blocks = nnx.List([Block(dim, eps, rngs=rngs) for _ in range(depth)])

    def __call__(self, x: Array) -> Array:
        if self.down is not None:
            x = self.down(common.patchify(self.down_norm(x), 2))
        for blk in self.blocks:
            x = blk(x)
        return x


class ConvNeXt(nnx.Module):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, h, w, C].

    ``out["stages"]``: the four stage maps float32[B, h_i, w_i, C_i] at their native grids;
    ``out["stem"]``: the stem output. ``feats`` concatenates ``config.used_stages`` resized to
    ``grid`` (bilinear, align_corners=False, as Cambrian's ``F.interpolate``).
    """

    def __init__(self, cfg: ConvNeXtConfig, *, rngs: nnx.Rngs):
        cfg = cfg.check()
        self.config = cfg
        self.out_channels: int = cfg.out_channels
        self.grid: tuple[int, int] = cfg.grid
        d0 = cfg.dims[0]
        self.stem = Dense((4, 4, 3), (d0,), (None, None, None, "embed"), rngs=rngs)
        self.stem_norm = LayerNorm(d0, cfg.norm_eps)
        self.stages = nnx.List([
            Stage(cfg.dims[max(i - 1, 0)], cfg.dims[i], cfg.depths[i], cfg.norm_eps, i > 0,
                  rngs=rngs)
            for i in range(len(cfg.dims))])

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        x = self.stem_norm(self.stem(common.patchify(pixels.astype(self.config.dtype), 4)))
        stem, maps = x, []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        grid = self.grid
        if self.config.num_tokens is None:  # the last used stage's grid at this input size
            grid = tuple(maps[self.config.used_stages[-1]].shape[1:3])
        feats = jnp.concatenate(
            [features.resize_grid(maps[s], grid) for s in self.config.used_stages], axis=-1)
        return feats.astype(jnp.float32), {"stem": stem, "stages": tuple(maps)}


def _config(variant: str, image_size: int | None, layer: int | None, num_tokens: int | None,
            dtype: str) -> ConvNeXtConfig:
    return common.variant_config("convnext", ConvNeXtConfig, VARIANTS, variant,
                                 image_size=image_size, layer=layer, num_tokens=num_tokens,
                                 dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, num_tokens: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> ConvNeXt:
    """A randomly initialised ConvNeXt tower (tests, ``:runlocal``)."""
    return common.random_init(ConvNeXt, _config(variant, image_size, layer, num_tokens, dtype),
                              rngs=rngs)


# --- checkpoint layout ----------------------------------------------------------------------

def checkpoint_layout(cfg: ConvNeXtConfig, prefix: str = "") -> dict:
    """Parameter path -> (timm tensor name, its shape, transform) for the trunk under ``prefix``."""
    d, norm = cfg.dims, layout.norm_layout
    out = {"stem.kernel": (prefix + "stem.0.weight", (d[0], 3, 4, 4), layout.t_conv),
           "stem.bias": (prefix + "stem.0.bias", (d[0],), None),
           **norm("stem_norm", prefix + "stem.1", d[0])}
    return out | stage_layout(cfg, prefix, TIMM_NAMES)


# Tensor names of a ConvNeXt stage in timm's layout (HF DINOv3 ConvNeXt names them otherwise).
TIMM_NAMES = dict(down="downsample", blocks="blocks", conv_dw="conv_dw", norm="norm",
                  fc1="mlp.fc1", fc2="mlp.fc2")


def stage_layout(cfg: ConvNeXtConfig, prefix: str, names: dict[str, str]) -> dict:
    """Parameter path -> (tensor name, shape, transform) for the four stages, their tensors named
    ``names`` says (``TIMM_NAMES`` for timm / open_clip)."""
    d, norm, n = cfg.dims, layout.norm_layout, names
    out: dict = {}
    for i, depth in enumerate(cfg.depths):
        s, me, c = f"{prefix}stages.{i}.", f"stages.{i}.", d[i]
        if i > 0:
            out |= norm(me + "down_norm", f"{s}{n['down']}.0", d[i - 1])
            out[me + "down.kernel"] = (f"{s}{n['down']}.1.weight", (c, d[i - 1], 2, 2),
                                       layout.t_conv)
            out[me + "down.bias"] = (f"{s}{n['down']}.1.bias", (c,), None)
        for j in range(depth):
            b, mb = f"{s}{n['blocks']}.{j}.", f"{me}blocks.{j}."
            out |= {
                mb + "conv_dw.kernel": (f"{b}{n['conv_dw']}.weight", (c, 1, 7, 7), layout.t_conv),
                mb + "conv_dw.bias": (f"{b}{n['conv_dw']}.bias", (c,), None),
                **norm(mb + "norm", b + n["norm"], c),
                mb + "fc1.kernel": (f"{b}{n['fc1']}.weight", (4 * c, c), layout.t_linear),
                mb + "fc1.bias": (f"{b}{n['fc1']}.bias", (4 * c,), None),
                mb + "fc2.kernel": (f"{b}{n['fc2']}.weight", (c, 4 * c), layout.t_linear),
                mb + "fc2.bias": (f"{b}{n['fc2']}.bias", (c,), None),
                mb + "gamma": (b + "gamma", (c,), None),
            }
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, num_tokens: int | None = None,
         dtype: str = "float32") -> ConvNeXt:
    """From an open_clip state dict (``visual.trunk.*``) or a timm ConvNeXt state dict; stage
    widths and depths are read from its tensors (eps, stages and grid from ``variant``)."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, num_tokens, dtype)
    reader = weights.open_checkpoint(checkpoint)
    prefix = layout.find_prefix(reader, "stem.0.weight", _PREFIXES)
    dims, depths = [], []
    while f"{prefix}stages.{len(dims)}.blocks.0.conv_dw.weight" in reader:
        stage = f"{prefix}stages.{len(dims)}.blocks."
        dims.append(int(reader[stage + "0.conv_dw.weight"].shape[0]))
        depth = 1
        while f"{stage}{depth}.conv_dw.weight" in reader:
            depth += 1
        depths.append(depth)
    if len(dims) == len(cfg.dims):
        cfg = dataclasses.replace(cfg, dims=tuple(dims), depths=tuple(depths)).check()
    return layout.fill(common.abstract(ConvNeXt, cfg), checkpoint_layout(cfg, prefix), reader)


def reference(src: str, px, config: ConvNeXtConfig) -> np.ndarray:
    """timm ConvNeXt trunk: the used stage maps, bilinear to the output grid, concatenated
    (Cambrian's ``CLIPConvNextTower``)."""
    import torch
    from timm.models.convnext import ConvNeXt as TimmConvNeXt

    from cambrian.models.encoders import reference as ref

    model = TimmConvNeXt(depths=config.depths, dims=config.dims, norm_eps=config.norm_eps,
                         num_classes=0).eval()
    ref.timm_state(src, "stem.0.weight", _PREFIXES, model)
    x, maps = model.stem(px), []
    for stage in model.stages:
        x = stage(x)
        maps.append(x)
    used = [maps[s] for s in config.used_stages]
    size = tuple(used[-1].shape[-2:]) if config.num_tokens is None else config.grid
    used = [m if tuple(m.shape[-2:]) == size else torch.nn.functional.interpolate(
        m, size=size, mode="bilinear", align_corners=False) for m in used]
    return ref.to_numpy(torch.cat(used, dim=1).permute(0, 2, 3, 1))


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """open_clip eval transform resized to the tower's resolution, as Cambrian sets it:
    shortest side + centre crop, bicubic, OpenAI CLIP mean/std (pad colour: the CLIP mean)."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN,
                          std=CLIP_STD, resize="shortest", interpolation="bicubic")
