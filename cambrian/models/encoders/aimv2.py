"""AIMv2 vision encoder (HF ``Aimv2VisionModel``; timm ``aimv2_*`` and Apple's original layout).

A ViT without CLS token: patch embedding followed by an RMSNorm, learned absolute positions (or
2-D sin-cos ones for the ``native`` checkpoints), pre-RMSNorm blocks with bias-free attention and a
bias-free SwiGLU MLP, and a final RMSNorm. Features are ``last_hidden_state`` (final norm applied).

At other image sizes a learned position grid is resampled bicubic with antialiasing, as timm's
``resample_abs_pos_embed`` does (HF's module only runs at the checkpoint size).
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
from cambrian.models.encoders import common, features, layout
from cambrian.models.encoders.common import ONES, Dense, Init, param
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

Array = jax.Array

_L = dict(width=1024, depth=24, heads=8, mlp_dim=2816, patch=14)
_TINY = dict(width=32, depth=2, heads=2, mlp_dim=48, patch=8, image_size=48)
VARIANTS = {
    "L/14@224": _L | dict(image_size=224, pos_size=16),
    "L/14@336": _L | dict(image_size=336, pos_size=24),
    "L/14@448": _L | dict(image_size=448, pos_size=32),
    "L/14-native": _L | dict(image_size=224, pos_size=None),
    "runlocal": _TINY | dict(pos_size=6),
    "runlocal-native": _TINY | dict(pos_size=None),
}
DEFAULT_VARIANT = "L/14@336"
DEFAULT_LAYER = None  # last_hidden_state (after the final RMSNorm)


@dataclasses.dataclass(frozen=True)
class Aimv2Config(common.TowerConfig):
    """AIMv2 ViT. ``pos_size``: side of the learned position grid, None for sin-cos positions;
    ``layer`` indexes ``hidden_states`` (0 = embeddings, i = after block i; None = final output);
    ``dtype``: parameter and compute dtype (``common.TowerConfig``)."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch: int
    image_size: int
    pos_size: int | None
    rms_eps: float = 1e-5
    qkv_bias: bool = False
    layer: int | None = None
    dtype: str = "float32"

    def check(self) -> Aimv2Config:
        if self.width % self.heads:
            raise ValueError(f"Aimv2Config: width {self.width} not divisible by {self.heads} heads")
        if self.pos_size is None and self.width % 4:
            raise ValueError(
                f"Aimv2Config: sin-cos positions need width % 4 == 0, got {self.width}")
        self.check_tower()
        return self


def sincos_positions(grid: tuple[int, int], dim: int) -> np.ndarray:
    """float32[h*w, dim]: HF AIMv2 native positions, laid out [sin_w, cos_w, sin_h, cos_h]."""
    n = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(n, dtype=np.float64) / n)
    gy, gx = np.meshgrid(np.arange(grid[0], dtype=np.float64),
                         np.arange(grid[1], dtype=np.float64), indexing="ij")
    ey, ex = np.outer(gy.ravel(), omega), np.outer(gx.ravel(), omega)
    return np.concatenate([np.sin(ex), np.cos(ex), np.sin(ey), np.cos(ey)], 1).astype(np.float32)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.scale = param(ONES, (dim,), ("embed",))

    def __call__(self, x: Array) -> Array:
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), -1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


class SwiGLU(nnx.Module):
    def __init__(self, cfg: Aimv2Config, *, rngs: nnx.Rngs):
        c, f = cfg.width, cfg.mlp_dim
        self.gate = Dense((c,), (f,), ("embed", "mlp"), bias=False, rngs=rngs)
        self.up = Dense((c,), (f,), ("embed", "mlp"), bias=False, rngs=rngs)
        self.down = Dense((f,), (c,), ("mlp", "embed"), bias=False, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.down(jax.nn.silu(self.gate(x)) * self.up(x))


class Block(nnx.Module):
    def __init__(self, cfg: Aimv2Config, *, rngs: nnx.Rngs):
        self.norm1 = RMSNorm(cfg.width, cfg.rms_eps)
        self.attn = common.Attention(cfg.width, cfg.heads, qkv_bias=cfg.qkv_bias,
                                     out_bias=cfg.qkv_bias, rngs=rngs)
        self.norm2 = RMSNorm(cfg.width, cfg.rms_eps)
        self.mlp = SwiGLU(cfg, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Aimv2VisionTransformer(common.PatchTower):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/14, W/14, C].

    ``out``: ``hidden_states`` (tuple of float32[B, h*w, C]; 0 = embeddings, i = after block i),
    ``last_hidden_state`` (after the final RMSNorm).
    """

    def __init__(self, cfg: Aimv2Config, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        c = cfg.width
        self.patch_norm = RMSNorm(c, cfg.rms_eps)
        self.pos_embed = (None if cfg.pos_size is None else
                          param(Init(std=0.02), (cfg.pos_size ** 2, c), (None, "embed"), rngs))
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.norm = RMSNorm(c, cfg.rms_eps)

    def _positions(self, gh: int, gw: int) -> Array:
        s = self.config.pos_size
        if s is None:
            return jnp.asarray(sincos_positions((gh, gw), self.config.width))
        grid = common.resample_grid(self.pos_embed[...].reshape(s, s, -1), (gh, gw), "bicubic_aa")
        return grid.reshape(gh * gw, -1)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        b, hh, ww, _ = pixels.shape
        gh, gw = hh // cfg.patch, ww // cfg.patch
        x = self.embed_patches(pixels)
        x = self.patch_norm(x.reshape(b, gh * gw, -1))
        x = x + self._positions(gh, gw).astype(x.dtype)
        x, hidden = common.run_blocks(self.blocks, x)
        last = self.norm(x)
        feats, _ = features.layer_features(hidden, last, cfg.layer, 0, (gh, gw))
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last}


def _config(variant: str, image_size: int | None, layer: int | None,
            dtype: str) -> Aimv2Config:
    return common.variant_config("aimv2", Aimv2Config, VARIANTS, variant, image_size=image_size,
                                 layer=layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> Aimv2VisionTransformer:
    """A randomly initialised AIMv2 encoder (tests, ``:runlocal``)."""
    return common.random_init(Aimv2VisionTransformer, _config(variant, image_size, layer, dtype),
                              rngs=rngs)


# --- checkpoint layouts -----------------------------------------------------------------------
# Tensor names per layout; "qkv" (fused [3C, C]) or "q"/"k"/"v". Apple's fc1 is the gate and
# fc3 the up projection (timm's _convert_aimv2).
_LAYOUTS = {
    "hf": dict(probe="embeddings.rms_norm.weight", patch="embeddings.patch_embed",
               patch_norm="embeddings.rms_norm", pos="embeddings.position_embedding.weight",
               blocks="encoder.layers", norm1="rms_norm1", norm2="rms_norm2",
               q="attention.q_proj", k="attention.k_proj", v="attention.v_proj",
               out="attention.out_proj", gate="ffn.gate_proj", up="ffn.up_proj",
               down="ffn.down_proj", norm="rms_norm", prefixes=("vision_model.", "")),
    "timm": dict(probe="patch_embed.norm.weight", patch="patch_embed.proj",
                 patch_norm="patch_embed.norm", pos="pos_embed", blocks="blocks", norm1="norm1",
                 norm2="norm2", qkv="attn.qkv", out="attn.proj", gate="mlp.fc1_g",
                 up="mlp.fc1_x", down="mlp.fc2", norm="norm", prefixes=("visual.trunk.", "")),
    "apple": dict(probe="preprocessor.patchifier.norm.weight",
                  patch="preprocessor.patchifier.proj", patch_norm="preprocessor.patchifier.norm",
                  pos="preprocessor.pos_embed", blocks="trunk.blocks", norm1="norm_1",
                  norm2="norm_2", qkv="attn.qkv", out="attn.proj", gate="mlp.fc1", up="mlp.fc3",
                  down="mlp.fc2", norm="trunk.post_trunk_norm", prefixes=("",)),
}


def _detect(reader: Mapping[str, np.ndarray]) -> tuple[dict, str]:
    for names in _LAYOUTS.values():
        for pre in names["prefixes"]:
            if pre + names["probe"] in reader:
                return names, pre
    src = getattr(reader, "source", "checkpoint")
    raise weights.CheckpointError(
        f"{src}: not an AIMv2 vision checkpoint (expected HF 'embeddings.rms_norm.weight', timm "
        f"'patch_embed.norm.weight' or Apple 'preprocessor.patchifier.norm.weight'; first "
        f"tensors: {', '.join(list(reader)[:5])})")


def checkpoint_layout(cfg: Aimv2Config, names: Mapping[str, str], pre: str = "") -> dict:
    """Parameter path -> (checkpoint name, its shape, transform) for one checkpoint layout."""
    c, h, f, p = cfg.width, cfg.heads, cfg.mlp_dim, cfg.patch
    out = {"patch_embed.kernel": (pre + names["patch"] + ".weight", (c, 3, p, p), layout.t_conv),
           "patch_embed.bias": (pre + names["patch"] + ".bias", (c,), None),
           **layout.norm_layout("patch_norm", pre + names["patch_norm"], c, bias=False),
           **layout.norm_layout("norm", pre + names["norm"], c, bias=False)}
    if cfg.pos_size is not None:
        n = cfg.pos_size ** 2
        hf = "qkv" not in names  # HF stores an nn.Embedding [n, C], the others [1, n, C]
        out["pos_embed"] = (pre + names["pos"], (n, c) if hf else (1, n, c),
                            None if hf else layout.t_squeeze)
    for i in range(cfg.depth):
        b, me = f"{pre}{names['blocks']}.{i}.", f"blocks.{i}."
        out |= {
            **layout.norm_layout(me + "norm1", b + names["norm1"], c, bias=False),
            **layout.norm_layout(me + "norm2", b + names["norm2"], c, bias=False),
            me + "attn.out.kernel": (b + names["out"] + ".weight", (c, c), layout.heads_out(h)),
            me + "mlp.gate.kernel": (b + names["gate"] + ".weight", (f, c), layout.t_linear),
            me + "mlp.up.kernel": (b + names["up"] + ".weight", (f, c), layout.t_linear),
            me + "mlp.down.kernel": (b + names["down"] + ".weight", (c, f), layout.t_linear),
        }
        if cfg.qkv_bias:
            out[me + "attn.out.bias"] = (b + names["out"] + ".bias", (c,), None)
        for j, x in enumerate("qkv"):
            fused = "qkv" in names
            name, shape = (names["qkv"], 3 * c) if fused else (names[x], c)
            part = layout.qkv_part(j, c) if fused else None
            out[f"{me}attn.{x}.kernel"] = (f"{b}{name}.weight", (shape, c),
                                           layout.heads_in(h, part))
            if cfg.qkv_bias:
                out[f"{me}attn.{x}.bias"] = (f"{b}{name}.bias", (shape,),
                                             layout.heads_bias(h, part))
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> Aimv2VisionTransformer:
    """From HF ``Aimv2VisionModel`` / ``Aimv2Model`` safetensors, a timm ``aimv2_*`` or an
    Apple AIMv2 state dict."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    reader = weights.open_checkpoint(checkpoint)
    names, pre = _detect(reader)
    return layout.fill(common.abstract(Aimv2VisionTransformer, cfg),
                       checkpoint_layout(cfg, names, pre), reader)


def reference(src: str, px, config: Aimv2Config) -> np.ndarray:
    """HF ``Aimv2VisionModel``, or timm's AIMv2 ``VisionTransformer`` (timm / Apple names)."""
    from cambrian.models.encoders import reference as ref
    from cambrian.models.encoders import vit

    if vit.hf_config(src) is not None:
        out = ref.hf_model(src)(px, output_hidden_states=True)
        return ref.to_grid(ref.pick(out.hidden_states, out.last_hidden_state, config), 0, px,
                           config.patch)
    if config.pos_size is None:
        raise NotImplementedError("aimv2: sin-cos (native) checkpoints without an HF config.json "
                                  "have no timm reference")
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer, _convert_aimv2

    c = config
    norm = functools.partial(RmsNorm, eps=c.rms_eps)
    model = VisionTransformer(
        img_size=c.pos_size * c.patch, patch_size=c.patch, embed_dim=c.width, depth=c.depth,
        num_heads=c.heads, mlp_ratio=c.mlp_dim / c.width, class_token=False, fc_norm=False,
        global_pool="avg", qkv_bias=c.qkv_bias, proj_bias=c.qkv_bias, act_layer="silu",
        norm_layer=norm, embed_norm_layer=norm, mlp_layer=SwiGLU, num_classes=0,
        dynamic_img_size=True).eval()
    reader = weights.open_checkpoint(src)
    if "preprocessor.patchifier.proj.weight" in reader:  # Apple's names: timm's own converter
        ref.load_state(model, _convert_aimv2(ref.tensors(reader, "", lambda k: True), model), src)
    else:
        ref.timm_state(src, "patch_embed.proj.weight", ("visual.trunk.", ""), model)
    return ref.to_grid(ref.timm_tokens(model, px, config), 0, px, config.patch)


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """AIMv2's CLIPImageProcessor: shortest side + centre crop, bicubic, OpenAI CLIP mean/std."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN,
                          std=CLIP_STD, resize="shortest", interpolation="bicubic")
