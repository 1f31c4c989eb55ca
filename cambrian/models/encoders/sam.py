"""SAM image encoder (ViTDet-style ViT) up to the last block -- Cambrian uses no neck.

Blocks attend within non-overlapping windows (zero-padded to a multiple of the window) except at
``global_layers``; every attention adds decomposed relative-position terms (MViTv2). Cambrian
takes the 64x64 map after the last block at 1024 px (then bilinear to 24x24 like every tower).

Other image sizes follow timm's ``samvit``: the absolute position grid is resampled bicubic with
antialiasing (``resample_abs_pos_embed_nhwc``) and the global blocks' relative tables linearly
(``get_rel_pos``); both tables stay at their checkpoint size in the parameters.
Weights load from HF ``SamModel`` (``vision_encoder.*``), the original ``sam_vit_*.pth``
(``image_encoder.*``) and timm ``samvit_*`` state dicts.

Einsum letters: b batch (x windows), n/m tokens, c embed, h heads, d head_dim, y/x query rows /
columns, Y/X key rows / columns.
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
from cambrian.models.encoders.common import ZEROS, Dense, LayerNorm, param
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

Array = jax.Array

VARIANTS = {
    "B/16": dict(width=768, depth=12, heads=12, global_layers=(2, 5, 8, 11)),
    "L/16": dict(width=1024, depth=24, heads=16, global_layers=(5, 11, 17, 23)),
    "H/16": dict(width=1280, depth=32, heads=16, global_layers=(7, 15, 23, 31)),
    # grid 8 with window 3: padded windows and one global block, like the real ones
    "runlocal": dict(width=32, depth=3, heads=2, global_layers=(1,), window=3, patch=8,
                     image_size=64, pos_size=8),
}
DEFAULT_VARIANT = "L/16"
DEFAULT_LAYER = None  # the last block's output (before the neck)


@dataclasses.dataclass(frozen=True)
class SamConfig(common.TowerConfig):
    """SAM ViT. ``pos_size``: side of the checkpoint's position grid (image 1024 / patch 16);
    ``layer`` indexes ``hidden_states`` (0 = embeddings, i = after block i; None = last block);
    ``dtype``: parameter and compute dtype (``common.TowerConfig``)."""

    width: int
    depth: int
    heads: int
    global_layers: tuple[int, ...]
    window: int = 14
    patch: int = 16
    mlp_ratio: float = 4.0
    image_size: int = 1024
    pos_size: int = 64
    ln_eps: float = 1e-6
    layer: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "global_layers", tuple(self.global_layers))

    @property
    def mlp_dim(self) -> int:
        return int(self.width * self.mlp_ratio)

    def check(self) -> SamConfig:
        if self.width % self.heads:
            raise ValueError(
                f"SamConfig: width {self.width} is not divisible by {self.heads} heads")
        self.check_tower(none_means="the last")
        return self


_gelu = functools.partial(jax.nn.gelu, approximate=False)


def _rel_index(size: int) -> np.ndarray:
    """int[size, size]: row of the (2*size-1)-entry table for query i, key j (i - j + size - 1)."""
    r = np.arange(size)
    return r[:, None] - r[None, :] + size - 1


class Attention(common.Attention):
    """Multi-head attention over a [b, y, x] map with decomposed relative positions.

    ``table`` is the side the relative tables were trained for (window, or the pretrain grid for
    global blocks); other map sizes resample them linearly as ``get_rel_pos`` does.
    """

    def __init__(self, cfg: SamConfig, table: int, *, rngs: nnx.Rngs):
        super().__init__(cfg.width, cfg.heads, rngs=rngs)
        d = cfg.width // cfg.heads
        self.rel_pos_h = param(ZEROS, (2 * table - 1, d), (None, "head_dim"))
        self.rel_pos_w = param(ZEROS, (2 * table - 1, d), (None, "head_dim"))

    @staticmethod
    def _table(rel: Array, size: int) -> Array:
        """float[L, d] -> float32[size, size, d] (query row, key row, d)."""
        n = 2 * size - 1
        rel = rel.astype(jnp.float32)
        if rel.shape[0] != n:
            m = common.resample_matrix(rel.shape[0], n, "bilinear")  # F.interpolate(mode="linear")
            rel = jnp.einsum("Nn,nd->Nd", m, rel, precision=jax.lax.Precision.HIGHEST)
        return rel[_rel_index(size)]

    def __call__(self, x: Array) -> Array:
        """float[b, y, x, C] -> float[b, y, x, C]."""
        b, gy, gx, c = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)  # [b, y, x, h, d]
        d = q.shape[-1]
        logits = jnp.einsum("byxhd,bYXhd->bhyxYX", q * d ** -0.5, k)
        rh = jnp.einsum("byxhd,yYd->bhyxY", q, self._table(self.rel_pos_h[...], gy).astype(q.dtype))
        rw = jnp.einsum("byxhd,xXd->bhyxX", q, self._table(self.rel_pos_w[...], gx).astype(q.dtype))
        logits = logits + rh[..., :, None] + rw[..., None, :]
        h = logits.shape[1]
        probs = jax.nn.softmax(logits.reshape(b, h, gy, gx, gy * gx).astype(jnp.float32), axis=-1)
        o = jnp.einsum("bhyxm,bmhd->byxhd", probs.astype(v.dtype), v.reshape(b, gy * gx, h, d))
        return self.out(o)


class Mlp(nnx.Module):
    def __init__(self, cfg: SamConfig, *, rngs: nnx.Rngs):
        self.fc1 = Dense((cfg.width,), (cfg.mlp_dim,), ("embed", "mlp"), rngs=rngs)
        self.fc2 = Dense((cfg.mlp_dim,), (cfg.width,), ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.fc2(_gelu(self.fc1(x)))


class Block(nnx.Module):
    def __init__(self, cfg: SamConfig, window: int, *, rngs: nnx.Rngs):
        self.window = window  # 0: global attention
        self.norm1 = LayerNorm(cfg.width, cfg.ln_eps)
        self.attn = Attention(cfg, window or cfg.pos_size, rngs=rngs)
        self.norm2 = LayerNorm(cfg.width, cfg.ln_eps)
        self.mlp = Mlp(cfg, rngs=rngs)

    def _windowed(self, x: Array) -> Array:
        # the reference pads the normed map with zeros, so padded tokens take part as keys
        b, gy, gx, c = x.shape
        w = self.window
        py, px = -gy % w, -gx % w
        x = jnp.pad(x, ((0, 0), (0, py), (0, px), (0, 0)))
        ny, nx = (gy + py) // w, (gx + px) // w
        x = x.reshape(b, ny, w, nx, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, w, w, c)
        x = self.attn(x)
        x = x.reshape(b, ny, nx, w, w, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, ny * w, nx * w, c)
        return x[:, :gy, :gx]

    def __call__(self, x: Array) -> Array:
        h = self.norm1(x)
        x = x + (self._windowed(h) if self.window else self.attn(h))
        return x + self.mlp(self.norm2(x))


class SamEncoder(common.PatchTower):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/16, W/16, C].

    ``out["hidden_states"]``: tuple of float32[B, h, w, C] (0 = patch + position embeddings,
    i = after block i).
    """

    def __init__(self, cfg: SamConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        c = cfg.width
        self.pos_embed = param(ZEROS, (cfg.pos_size, cfg.pos_size, c), (None, None, "embed"))
        self.blocks = nnx.List([
            Block(cfg, 0 if i in cfg.global_layers else cfg.window, rngs=rngs)
            for i in range(cfg.depth)])

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        gh, gw = pixels.shape[1] // cfg.patch, pixels.shape[2] // cfg.patch
        x = self.embed_patches(pixels)
        x = x + common.resample_grid(self.pos_embed[...], (gh, gw), "bicubic_aa").astype(x.dtype)
        x, hidden = common.run_blocks(self.blocks, x)
        feats = x if cfg.layer is None else hidden[cfg.layer]
        return feats.astype(jnp.float32), {"hidden_states": tuple(hidden)}


def _config(variant: str, image_size: int | None, layer: int | None,
            dtype: str) -> SamConfig:
    return common.variant_config("sam", SamConfig, VARIANTS, variant, image_size=image_size,
                                 layer=layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs, dtype: str = "float32") -> SamEncoder:
    """A randomly initialised SAM encoder (tests, ``:runlocal``)."""
    return common.random_init(SamEncoder, _config(variant, image_size, layer, dtype), rngs=rngs)


# --- checkpoint layouts -----------------------------------------------------------------------
# Names of each piece in the three layouts; they differ in prefix, block list and MLP names.
_LAYOUTS = {
    "hf": dict(prefix="vision_encoder.", patch="patch_embed.projection", blocks="layers",
               norm1="layer_norm1", norm2="layer_norm2", fc1="mlp.lin1", fc2="mlp.lin2"),
    "sam": dict(prefix="image_encoder.", patch="patch_embed.proj", blocks="blocks",
                norm1="norm1", norm2="norm2", fc1="mlp.lin1", fc2="mlp.lin2"),
    "timm": dict(prefix="", patch="patch_embed.proj", blocks="blocks",
                 norm1="norm1", norm2="norm2", fc1="mlp.fc1", fc2="mlp.fc2"),
}


def _detect(reader: Mapping[str, np.ndarray]) -> dict:
    for names in _LAYOUTS.values():
        # the original layout also appears without its prefix (encoder saved on its own)
        for pre in dict.fromkeys((names["prefix"], "")):
            probe = f"{pre}{names['blocks']}.0.{names['fc1']}.weight"
            if pre + names["patch"] + ".weight" in reader and probe in reader:
                return names | {"prefix": pre}
    src = getattr(reader, "source", "checkpoint")
    raise weights.CheckpointError(
        f"{src}: not a SAM image encoder checkpoint (expected HF 'vision_encoder.*', original "
        f"'image_encoder.*' or timm 'samvit' tensor names; first tensors: "
        f"{', '.join(list(reader)[:5])})")


def checkpoint_layout(cfg: SamConfig, names: Mapping[str, str]) -> dict:
    """Parameter path -> (checkpoint name, its shape, transform) for one checkpoint layout."""
    c, h, f, p, pre = cfg.width, cfg.heads, cfg.mlp_dim, cfg.patch, names["prefix"]
    d = c // h
    out = {"patch_embed.kernel": (pre + names["patch"] + ".weight", (c, 3, p, p), layout.t_conv),
           "patch_embed.bias": (pre + names["patch"] + ".bias", (c,), None),
           "pos_embed": (pre + "pos_embed", (1, cfg.pos_size, cfg.pos_size, c), lambda x: x[0])}
    for i in range(cfg.depth):
        b, me = f"{pre}{names['blocks']}.{i}.", f"blocks.{i}."
        table = cfg.pos_size if i in cfg.global_layers else cfg.window
        out |= layout.norm_layout(me + "norm1", b + names["norm1"], c)
        out |= layout.norm_layout(me + "norm2", b + names["norm2"], c)
        for j, qkv in enumerate("qkv"):
            part = layout.qkv_part(j, c)
            out[f"{me}attn.{qkv}.kernel"] = (b + "attn.qkv.weight", (3 * c, c),
                                             layout.heads_in(h, part))
            out[f"{me}attn.{qkv}.bias"] = (b + "attn.qkv.bias", (3 * c,),
                                           layout.heads_bias(h, part))
        out |= {
            me + "attn.out.kernel": (b + "attn.proj.weight", (c, c), layout.heads_out(h)),
            me + "attn.out.bias": (b + "attn.proj.bias", (c,), None),
            me + "attn.rel_pos_h": (b + "attn.rel_pos_h", (2 * table - 1, d), None),
            me + "attn.rel_pos_w": (b + "attn.rel_pos_w", (2 * table - 1, d), None),
            me + "mlp.fc1.kernel": (f"{b}{names['fc1']}.weight", (f, c), layout.t_linear),
            me + "mlp.fc1.bias": (f"{b}{names['fc1']}.bias", (f,), None),
            me + "mlp.fc2.kernel": (f"{b}{names['fc2']}.weight", (c, f), layout.t_linear),
            me + "mlp.fc2.bias": (f"{b}{names['fc2']}.bias", (c,), None),
        }
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> SamEncoder:
    """From HF ``SamModel`` safetensors, an original ``sam_vit_*.pth``, or a timm ``samvit``
    state dict. The neck and the prompt / mask decoders are not read."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    reader = weights.open_checkpoint(checkpoint)
    return layout.fill(common.abstract(SamEncoder, cfg), checkpoint_layout(cfg, _detect(reader)),
                       reader)


def reference(src: str, px, config: SamConfig) -> np.ndarray:
    """HF ``SamModel`` (its checkpoint size only) or timm ``samvit`` (original / timm names)."""
    import torch

    from cambrian.models.encoders import reference as ref
    from cambrian.models.encoders import vit

    if vit.hf_config(src) is not None:
        hidden = ref.hf_model(src).vision_encoder(px, output_hidden_states=True).hidden_states
        return ref.to_numpy(ref.pick(hidden, hidden[-1], config))
    from timm.layers import resample_abs_pos_embed_nhwc
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    c = config
    model = VisionTransformerSAM(
        img_size=c.pos_size * c.patch, patch_size=c.patch, embed_dim=c.width, depth=c.depth,
        num_heads=c.heads, mlp_ratio=c.mlp_ratio, global_attn_indexes=c.global_layers,
        window_size=c.window, use_rel_pos=True, neck_chans=0, num_classes=0,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=c.ln_eps)).eval()
    # the original layout names the MLP lin1/lin2 (timm's checkpoint_filter_fn renames them)
    ref.timm_state(src, "patch_embed.proj.weight", ("image_encoder.", ""), model,
                   lambda k: k.replace("mlp.lin", "mlp.fc"), optional=("neck.", "head."))
    x = model.patch_embed(px)
    hidden = [x + resample_abs_pos_embed_nhwc(model.pos_embed, x.shape[1:3])]
    hidden += [t.permute(0, 2, 3, 1) for t in model.forward_intermediates(
        px, indices=list(range(c.depth)), intermediates_only=True)]
    return ref.to_numpy(ref.pick(hidden, hidden[-1], config))


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """SAM's ResizeLongestSide (PIL bilinear) + ImageNet mean/std, after Cambrian's pad to square.

    Cambrian pads with ``int(x * 255)`` of the processor mean, which for SAM's 0-255 mean
    (123.675, ...) saturates to white in PIL, so the pad colour is (1, 1, 1). On the square image
    the longest-side resize is a plain resize and SAM's bottom/right zero padding is empty.
    """
    size = VARIANTS[variant].get("image_size", 1024)
    return PreprocessSpec(image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="squash",
                          interpolation="bilinear", pad_color=(1.0, 1.0, 1.0))

