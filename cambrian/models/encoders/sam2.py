"""SAM 2 / SAM 2.1 image encoder trunk: Hiera (Ryali et al. 2023) as SAM 2 uses it (Ravi et al.
2024), transformers ``Sam2HieraDetModel`` (the ``backbone`` of ``Sam2VisionModel``).

A 7x7 / 4 conv stem, learned positions (a ``pos_bkg`` grid resized bicubic -- torch
``F.interpolate``, no antialias -- to the stem grid, plus a ``windows[0]``-sized window table tiled
over it), then four stages of pre-norm blocks at strides 4, 8, 16, 32 whose width and head count
double per stage. Blocks attend within non-overlapping windows (zero-padded to a multiple of the
window) except the ``global_blocks``; the first block of stages 1-3 projects to the new width and
max-pools its queries 2x2 inside each window (the window shrinks by 2), its residual likewise. No
final norm. Sizes must make the stem grid a multiple of ``windows[0]`` (the window table is
tiled): multiples of 32 px; non-square images work.

Which output: Cambrian probed SAM with the image encoder's trunk and no neck (the ViT's 64x64 map
at 1024 px, ``sam.py``), and ConvNeXt with its last stage. SAM 2's FPN neck (256-d, stride 4/8/16)
is the mask decoder's interface; this family takes the trunk instead, like those two, and by
default its last stage (stride 32: 32x32 tokens x 8*embed_dim channels at 1024 px, bilinear to the
probe's token count). ``layer=k`` picks stage k (0..3, negative allowed) as the ``convnext``
family does; stage 2 (stride 16) is the grid SAM 2's decoder reads. ``out["stages"]`` holds all
four maps and ``out["hidden_states"]`` every block output (0 = stem + positions, as transformers'
``hidden_states``).

Weights load from transformers' layout (``facebook/sam2.1-hiera-*``: ``Sam2Model``
``model.safetensors``, ``vision_encoder.backbone.*``) or SAM 2's own checkpoint
(``sam2.1_hiera_*.pt``: ``image_encoder.trunk.*``); the neck, memory and decoders are not read.

Einsum letters: b batch (x windows), n/m query/key tokens, h heads, d head_dim.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, layout
from cambrian.models.encoders.common import ZEROS, Dense, Init, LayerNorm, param
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

Array = jax.Array

_DEFAULT = dict(blocks=(2, 3, 16, 3), global_blocks=(12, 16, 20), windows=(8, 4, 14, 7),
                pos_bkg=(7, 7))  # SAM 2's Hiera defaults (sam2/modeling/backbones/hieradet.py)
VARIANTS = {  # sam2.1_hiera_{t,s,b+,l}.yaml
    "T": _DEFAULT | dict(embed_dim=96, heads=1, blocks=(1, 2, 7, 2), global_blocks=(5, 7, 9)),
    "S": _DEFAULT | dict(embed_dim=96, heads=1, blocks=(1, 2, 11, 2), global_blocks=(7, 10, 13)),
    "B+": _DEFAULT | dict(embed_dim=112, heads=2, pos_bkg=(14, 14)),
    "L": _DEFAULT | dict(embed_dim=144, heads=2, blocks=(2, 6, 36, 4),
                         global_blocks=(23, 33, 43), windows=(8, 4, 16, 8)),
    # stem grid 16 at 64 px: padded windows in stage 2 (grid 4, window 6) and 3, one global block
    "runlocal": dict(embed_dim=16, heads=1, blocks=(1, 2, 2, 1), global_blocks=(4,),
                     windows=(8, 4, 6, 3), pos_bkg=(3, 3), image_size=64),
}
DEFAULT_VARIANT = "L"
DEFAULT_LAYER = None  # the last trunk stage (see the module docstring)


@dataclasses.dataclass(frozen=True)
class Sam2Config:
    """Hiera trunk of SAM 2.

    blocks: blocks per stage; global_blocks: block indices (over all stages) with global
      attention; windows: window side per stage; pos_bkg: side of the position grid.
    layer: the stage whose map is the features (0..3, negative allowed); None = the last.
    dtype: parameter and compute dtype ("float32" | "bfloat16"); norms and softmax stay float32
      and the features are float32.
    """

    embed_dim: int
    heads: int
    blocks: tuple[int, ...]
    global_blocks: tuple[int, ...]
    windows: tuple[int, ...]
    pos_bkg: tuple[int, int]
    image_size: int = 1024
    q_pool: int = 3  # stages 1..q_pool start with a 2x2 query pooling
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-6
    layer: int | None = None
    dtype: str = "float32"

    def __post_init__(self):  # configs restored from JSON carry lists
        for f in ("blocks", "global_blocks", "windows", "pos_bkg"):
            object.__setattr__(self, f, tuple(getattr(self, f)))

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.blocks)))

    @property
    def stage(self) -> int:
        return (len(self.blocks) - 1) if self.layer is None else self.layer % len(self.blocks)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // 4 // 2 ** self.stage
        return (side, side)

    @property
    def out_channels(self) -> int:
        return self.dims[self.stage]

    def check(self) -> Sam2Config:
        common.check_dtype(self)
        n = len(self.blocks)
        if not len(self.windows) == n:
            raise ValueError(f"Sam2Config: {len(self.windows)} windows for {n} stages")
        if self.layer is not None and not -n <= self.layer < n:
            raise ValueError(f"layer {self.layer} out of range for a {n}-stage Hiera (valid: "
                             f"{-n}..{n - 1}, or None for the last stage)")
        step = 4 * self.windows[0]
        if self.image_size % step or self.image_size < 4 * 2 ** (n - 1):
            raise ValueError(f"Sam2Config: image_size {self.image_size} must be a multiple of "
                             f"{step} (the stem's stride 4 x the {self.windows[0]}-wide window "
                             f"position table), e.g. {max(step, self.image_size // step * step)}")
        return self


_gelu = functools.partial(jax.nn.gelu, approximate=False)


def block_specs(cfg: Sam2Config) -> list[tuple[int, int, int, int, bool]]:
    """(width in, width out, heads, window (0 = global), query pooling) of every block: the first
    block of a later stage takes the previous stage's width and window."""
    out = []
    for s, n in enumerate(cfg.blocks):
        for i in range(n):
            first = s > 0 and i == 0
            window = cfg.windows[s - 1] if first else cfg.windows[s]
            out.append((cfg.dims[s - 1] if first else cfg.dims[s], cfg.dims[s],
                        cfg.heads * 2 ** s, 0 if len(out) in cfg.global_blocks else window,
                        first and s <= cfg.q_pool))
    return out


def _pool(x: Array) -> Array:
    """float[b, y, x, ...] -> float[b, y/2, x/2, ...]: 2x2 max pooling (``max_pool2d``, floor)."""
    b, h, w = x.shape[:3]
    x = x[:, :h // 2 * 2, :w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, *x.shape[3:]).max(axis=(2, 4))


def _partition(x: Array, w: int) -> tuple[Array, tuple[int, int]]:
    """float[b, y, x, C] -> (float[b * windows, w, w, C], windows per column / row); zero pad."""
    b, h, ww, c = x.shape
    x = jnp.pad(x, ((0, 0), (0, -h % w), (0, -ww % w), (0, 0)))
    ny, nx = x.shape[1] // w, x.shape[2] // w
    x = x.reshape(b, ny, w, nx, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)
    return x, (ny, nx)


def _unpartition(x: Array, counts: tuple[int, int], size: tuple[int, int]) -> Array:
    """Inverse of ``_partition`` for windows float[b * windows, w, w, C], cropped to ``size``."""
    (ny, nx), w = counts, x.shape[1]
    x = x.reshape(-1, ny, nx, w, w, x.shape[-1]).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(x.shape[0], ny * w, nx * w, -1)[:, :size[0], :size[1]]


class Attention(nnx.Module):
    """Multi-head attention over maps float[b, y, x, C_in] -> float[b, y', x', C_out]; with
    ``pool`` the queries (so the output) are 2x2 max-pooled (Hiera's query pooling)."""

    def __init__(self, dim: int, dim_out: int, heads: int, pool: bool, *, rngs: nnx.Rngs):
        d = dim_out // heads
        names = ("embed", "heads", "head_dim")
        self.pool = pool
        self.q = Dense((dim,), (heads, d), names, rngs=rngs)
        self.k = Dense((dim,), (heads, d), names, rngs=rngs)
        self.v = Dense((dim,), (heads, d), names, rngs=rngs)
        self.out = Dense((heads, d), (dim_out,), ("heads", "head_dim", "embed"), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        b = x.shape[0]
        q, k, v = self.q(x), self.k(x), self.v(x)  # [b, y, x, h, d]
        if self.pool:
            q = _pool(q)
        gy, gx = q.shape[1:3]
        o = common.attention(q.reshape(b, gy * gx, *q.shape[3:]),
                             k.reshape(b, -1, *k.shape[3:]), v.reshape(b, -1, *v.shape[3:]))
        return self.out(o).reshape(b, gy, gx, -1)


class Block(nnx.Module):
    def __init__(self, dim: int, dim_out: int, heads: int, window: int, pool: bool,
                 cfg: Sam2Config, *, rngs: nnx.Rngs):
        self.window = window  # 0: global attention
        self.pool = pool
        self.norm1 = LayerNorm(dim, cfg.ln_eps)
        self.proj = (Dense((dim,), (dim_out,), ("embed", "mlp"), rngs=rngs)
                     if dim != dim_out else None)
        self.attn = Attention(dim, dim_out, heads, pool, rngs=rngs)
        self.norm2 = LayerNorm(dim_out, cfg.ln_eps)
        hidden = int(dim_out * cfg.mlp_ratio)
        self.fc1 = Dense((dim_out,), (hidden,), ("embed", "mlp"), rngs=rngs)
        self.fc2 = Dense((hidden,), (dim_out,), ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        """float[B, y, x, C_in] -> float[B, y', x', C_out] (halved by query pooling)."""
        h = self.norm1(x)
        shortcut = x if self.proj is None else self.proj(h)
        if self.pool:
            shortcut = _pool(shortcut)
        if self.window:  # padded zeros take part as keys, as in the reference
            windows, counts = _partition(h, self.window)
            a = _unpartition(self.attn(windows), counts, shortcut.shape[1:3])
        else:
            a = self.attn(h)
        x = shortcut + a
        return x + self.fc2(_gelu(self.fc1(self.norm2(x))))


class Hiera(nnx.Module):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/s, W/s, C] of the chosen
    stage (s = 4 * 2**stage).

    ``out``: ``stages`` (the four stage maps float[B, h_i, w_i, C_i]), ``hidden_states`` (the stem
    + positions, then every block's output).
    """

    def __init__(self, cfg: Sam2Config, *, rngs: nnx.Rngs):
        cfg = cfg.check()
        self.config = cfg
        self.out_channels: int = cfg.out_channels
        self.grid: tuple[int, int] = cfg.grid
        c0 = cfg.embed_dim
        self.patch_embed = param(common.fan_in(49 * 3), (7, 7, 3, c0),
                                 (None, None, None, "embed"), rngs)
        self.patch_bias = param(ZEROS, (c0,), ("embed",))
        self.pos_embed = param(Init(std=0.02), (*cfg.pos_bkg, c0), (None, None, "embed"), rngs)
        w0 = cfg.windows[0]
        self.pos_embed_window = param(Init(std=0.02), (w0, w0, c0), (None, None, "embed"), rngs)
        self.blocks = nnx.List([Block(*spec, cfg, rngs=rngs) for spec in block_specs(cfg)])
        self.stage_ends: tuple[int, ...] = tuple(int(e) for e in np.cumsum(cfg.blocks) - 1)

    def embed(self, pixels: Array) -> Array:
        """float32[B, H, W, 3] -> float[B, H/4, W/4, C0]: stem conv plus positions."""
        cfg = self.config
        x = pixels.astype(cfg.dtype)
        x = jax.lax.conv_general_dilated(
            x, self.patch_embed[...].astype(x.dtype), (4, 4), [(3, 3), (3, 3)],
            dimension_numbers=("NHWC", "HWIO", "NHWC")) + self.patch_bias[...].astype(x.dtype)
        gy, gx = x.shape[1:3]
        w0 = cfg.windows[0]
        if gy % w0 or gx % w0:
            raise ValueError(f"sam2: input {pixels.shape[1]}x{pixels.shape[2]} gives a {gy}x{gx} "
                             f"stem grid, not a multiple of the {w0}-wide window position table;"
                             f" use sides that are multiples of {4 * w0} px")
        pos = common.resample_grid(self.pos_embed[...], (gy, gx), "bicubic")
        pos = pos + jnp.tile(self.pos_embed_window[...].astype(jnp.float32),
                             (gy // w0, gx // w0, 1))
        return x + pos.astype(x.dtype)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        x = self.embed(pixels)
        hidden, stages = [x], []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            hidden.append(x)
            if i in self.stage_ends:
                stages.append(x)
        feats = stages[self.config.stage].astype(jnp.float32)
        return feats, {"stages": tuple(stages), "hidden_states": tuple(hidden)}


def _config(variant: str, image_size: int | None, layer: int | None, dtype: str) -> Sam2Config:
    return common.variant_config("sam2", Sam2Config, VARIANTS, variant, image_size=image_size,
                                 layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs, dtype: str = "float32") -> Hiera:
    """A randomly initialised SAM 2 Hiera trunk (tests, ``:runlocal``)."""
    return common.random_init(Hiera, _config(variant, image_size, layer, dtype), rngs=rngs)


# --- checkpoint layouts -------------------------------------------------------------------------
# Names of each piece in the two layouts (transformers, SAM 2's own); prefixes are tried in order.
_LAYOUTS = {
    "transformers": dict(prefixes=("vision_encoder.backbone.", "backbone.", ""),
                         patch="patch_embed.projection", norm1="layer_norm1",
                         norm2="layer_norm2", fc1="mlp.proj_in", fc2="mlp.proj_out"),
    "sam2": dict(prefixes=("image_encoder.trunk.", "trunk.", ""), patch="patch_embed.proj",
                 norm1="norm1", norm2="norm2", fc1="mlp.layers.0", fc2="mlp.layers.1"),
}


def _detect(reader: Mapping[str, np.ndarray]) -> dict:
    for names in _LAYOUTS.values():
        for pre in names["prefixes"]:
            if pre + names["patch"] + ".weight" in reader and \
                    f"{pre}blocks.0.{names['fc1']}.weight" in reader:
                return names | {"prefix": pre}
    src = getattr(reader, "source", "checkpoint")
    raise weights.CheckpointError(
        f"{src}: not a SAM 2 image encoder checkpoint (expected transformers "
        f"'vision_encoder.backbone.*' or SAM 2 'image_encoder.trunk.*' tensor names; first "
        f"tensors: {', '.join(list(reader)[:5])})")


def checkpoint_layout(cfg: Sam2Config, names: Mapping[str, str]) -> dict:
    """Parameter path -> (checkpoint name, its shape, transform) for one checkpoint layout."""
    pre, c0, w0 = names["prefix"], cfg.embed_dim, cfg.windows[0]
    nchw = lambda x: x[0].transpose(1, 2, 0)  # noqa: E731  [1, C, h, w] -> [h, w, C]
    out = {"patch_embed": (pre + names["patch"] + ".weight", (c0, 3, 7, 7), layout.t_conv),
           "patch_bias": (pre + names["patch"] + ".bias", (c0,), None),
           "pos_embed": (pre + "pos_embed", (1, c0, *cfg.pos_bkg), nchw),
           "pos_embed_window": (pre + "pos_embed_window", (1, c0, w0, w0), nchw)}
    for i, (dim, dim_out, heads, _, _) in enumerate(block_specs(cfg)):
        b, me = f"{pre}blocks.{i}.", f"blocks.{i}."
        hidden = int(dim_out * cfg.mlp_ratio)
        out |= layout.norm_layout(me + "norm1", b + names["norm1"], dim)
        out |= layout.norm_layout(me + "norm2", b + names["norm2"], dim_out)
        for j, qkv in enumerate("qkv"):
            part = layout.qkv_part(j, dim_out)
            out[f"{me}attn.{qkv}.kernel"] = (b + "attn.qkv.weight", (3 * dim_out, dim),
                                             layout.heads_in(heads, part))
            out[f"{me}attn.{qkv}.bias"] = (b + "attn.qkv.bias", (3 * dim_out,),
                                           layout.heads_bias(heads, part))
        out |= {
            me + "attn.out.kernel": (b + "attn.proj.weight", (dim_out, dim_out),
                                     layout.heads_out(heads)),
            me + "attn.out.bias": (b + "attn.proj.bias", (dim_out,), None),
            me + "fc1.kernel": (f"{b}{names['fc1']}.weight", (hidden, dim_out), layout.t_linear),
            me + "fc1.bias": (f"{b}{names['fc1']}.bias", (hidden,), None),
            me + "fc2.kernel": (f"{b}{names['fc2']}.weight", (dim_out, hidden), layout.t_linear),
            me + "fc2.bias": (f"{b}{names['fc2']}.bias", (dim_out,), None),
        }
        if dim != dim_out:
            out[me + "proj.kernel"] = (b + "proj.weight", (dim_out, dim), layout.t_linear)
            out[me + "proj.bias"] = (b + "proj.bias", (dim_out,), None)
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> Hiera:
    """From transformers ``Sam2Model`` / ``Sam2VisionModel`` safetensors or a SAM 2
    ``sam2*_hiera_*.pt``, as ``variant`` (the checkpoint's shapes are checked against it)."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    reader = weights.open_checkpoint(checkpoint)
    return layout.fill(common.abstract(Hiera, cfg), checkpoint_layout(cfg, _detect(reader)),
                       reader)


def reference(src: str, px, config: Sam2Config) -> np.ndarray:
    """transformers ``Sam2HieraDetModel`` (its layout) or timm ``HieraDet`` (``sam2_hiera_*``,
    SAM 2's own layout read through timm's ``checkpoint_filter_fn``): the chosen stage map."""
    import torch

    from cambrian.models.encoders import reference as ref

    c = config
    reader = weights.open_checkpoint(src)
    names = _detect(reader)
    if names["patch"] == _LAYOUTS["transformers"]["patch"]:
        import transformers

        hf = transformers.Sam2HieraDetConfig(
            hidden_size=c.embed_dim, num_attention_heads=c.heads, blocks_per_stage=list(c.blocks),
            embed_dim_per_stage=list(c.dims), window_size_per_stage=list(c.windows),
            num_attention_heads_per_stage=[c.heads * 2 ** s for s in range(len(c.blocks))],
            global_attention_blocks=list(c.global_blocks), num_query_pool_stages=c.q_pool,
            window_positional_embedding_background_size=list(c.pos_bkg), mlp_ratio=c.mlp_ratio,
            layer_norm_eps=c.ln_eps, image_size=[c.image_size] * 2)
        model = transformers.Sam2HieraDetModel(hf).eval()
        ref.load_state(model, ref.tensors(reader, names["prefix"], model.state_dict().__contains__),
                       src)
        maps = model(px).intermediate_hidden_states
    else:
        from timm.models.hieradet_sam2 import HieraDet, checkpoint_filter_fn

        model = HieraDet(embed_dim=c.embed_dim, num_heads=c.heads, stages=c.blocks,
                         global_att_blocks=c.global_blocks, window_spec=c.windows,
                         global_pos_size=c.pos_bkg, q_pool=c.q_pool, num_classes=0,
                         global_pool="", norm_layer=functools.partial(torch.nn.LayerNorm,
                                                                      eps=c.ln_eps)).eval()
        sd = checkpoint_filter_fn(ref.tensors(reader, names["prefix"], lambda k: True), model)
        ref.load_state(model, sd, src)
        maps = model.forward_intermediates(px, indices=len(c.blocks), intermediates_only=True,
                                           output_fmt="NHWC")
    return ref.to_numpy(maps[c.stage])


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """SAM 2's transform (``SAM2Transforms``, transformers ``Sam2ImageProcessor``): squash to
    1024 x 1024, bilinear, ImageNet mean / std. Cambrian pads with that mean."""
    size = VARIANTS[variant].get("image_size", 1024)
    return PreprocessSpec(image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="squash",
                          interpolation="bilinear")
