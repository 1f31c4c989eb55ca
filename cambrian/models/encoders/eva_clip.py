"""EVA-02 CLIP vision trunk: timm ``eva02_large_patch14_clip_224/336`` (open_clip ``EVA02-L-14``).

A pre-norm ViT with a CLS token and learned absolute positions, plus: 2-D rotary embeddings on the
patch tokens (EVA's ``ref_feat_shape`` scaling), separate q/k/v projections without a k bias, a
LayerNorm on the attention output before its projection ("sub-LN"), and a SwiGLU MLP with a
LayerNorm before its output projection. Cambrian uses the trunk's ``forward_features`` (final
LayerNorm applied) with the CLS token dropped.

Other image sizes follow timm: the position grid is resampled bicubic with antialiasing
(``resample_abs_pos_embed``) and the rotary grid is rescaled onto ``rope_ref``.
Weights load from a timm Eva state dict, bare or under open_clip's ``visual.trunk.`` prefix.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, features, layout
from cambrian.models.encoders.common import ZEROS, Dense, Init, LayerNorm, param
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

Array = jax.Array

_L = dict(width=1024, depth=24, heads=16, mlp_dim=2730, patch=14, rope_ref=16)  # 1024*4*2/3
VARIANTS = {
    "L/14@224": _L | dict(image_size=224, pos_size=16),
    "L/14@336": _L | dict(image_size=336, pos_size=24),
    "runlocal": dict(width=32, depth=2, heads=2, mlp_dim=85, patch=8, rope_ref=4, image_size=48,
                     pos_size=6),
}
DEFAULT_VARIANT = "L/14@336"
DEFAULT_LAYER = None  # forward_features: the last block + final LayerNorm


@dataclasses.dataclass(frozen=True)
class EvaConfig(common.TowerConfig):
    """EVA-02 trunk. ``pos_size``: side of the checkpoint's position grid; ``rope_ref``: the grid
    side the rotary frequencies are scaled to (16 for both released L/14 towers);
    ``layer`` indexes ``hidden_states`` (0 = embeddings, i = after block i; None = final output);
    ``dtype``: parameter and compute dtype (``common.TowerConfig``)."""

    width: int
    depth: int
    heads: int
    mlp_dim: int
    patch: int
    image_size: int
    pos_size: int
    rope_ref: int
    ln_eps: float = 1e-6
    rope_theta: float = 10000.0
    layer: int | None = None
    dtype: str = "float32"

    def check(self) -> EvaConfig:
        if self.width % self.heads or (self.width // self.heads) % 4:
            raise ValueError(f"EvaConfig: head_dim {self.width}/{self.heads} must be a multiple "
                             "of 4 for 2-D rotary embeddings")
        self.check_tower()
        return self


def rope_tables(grid: tuple[int, int], head_dim: int, ref: int, theta: float):
    """(sin, cos) float32[h*w, head_dim] as timm's ``RotaryEmbeddingCat`` (interleaved pairs).

    Row / column indices are rescaled onto the ``ref`` x ``ref`` grid; the first half of the bands
    rotate with the row, the second half with the column.
    """
    nb = head_dim // 4
    bands = 1.0 / theta ** (np.arange(nb, dtype=np.float32) / nb)
    ty = np.arange(grid[0], dtype=np.float32) / grid[0] * ref
    tx = np.arange(grid[1], dtype=np.float32) / grid[1] * ref
    yy, xx = np.meshgrid(ty, tx, indexing="ij")
    ang = np.stack([yy, xx], -1)[..., None] * bands  # [h, w, 2, nb]
    ang = np.repeat(ang.reshape(grid[0] * grid[1], 2 * nb), 2, axis=-1)
    return np.sin(ang).astype(np.float32), np.cos(ang).astype(np.float32)


class Attention(nnx.Module):
    def __init__(self, cfg: EvaConfig, *, rngs: nnx.Rngs):
        c, h = cfg.width, cfg.heads
        names = ("embed", "heads", "head_dim")
        self.q = Dense((c,), (h, c // h), names, rngs=rngs)
        self.k = Dense((c,), (h, c // h), names, bias=False, rngs=rngs)
        self.v = Dense((c,), (h, c // h), names, rngs=rngs)
        self.norm = LayerNorm(c, cfg.ln_eps)
        self.out = Dense((c,), (c,), ("heads", "embed"), rngs=rngs)

    def __call__(self, x: Array, sin: Array, cos: Array) -> Array:
        """float[b, 1 + n, C] -> float[b, 1 + n, C]; RoPE skips the CLS token."""
        q, k, v = self.q(x), self.k(x), self.v(x)
        q = jnp.concatenate([q[:, :1], common.rotate_pairs(q[:, 1:], sin, cos)], axis=1)
        k = jnp.concatenate([k[:, :1], common.rotate_pairs(k[:, 1:], sin, cos)], axis=1)
        o = common.attention(q, k, v)
        return self.out(self.norm(o.reshape(*o.shape[:2], -1)))


class SwiGLU(nnx.Module):
    """silu(fc1_g x) * fc1_x x -> LayerNorm -> fc2 (timm ``SwiGLU`` with ``norm_layer``)."""

    def __init__(self, cfg: EvaConfig, *, rngs: nnx.Rngs):
        c, f = cfg.width, cfg.mlp_dim
        self.fc1_g = Dense((c,), (f,), ("embed", "mlp"), rngs=rngs)
        self.fc1_x = Dense((c,), (f,), ("embed", "mlp"), rngs=rngs)
        self.norm = LayerNorm(f, cfg.ln_eps)
        self.fc2 = Dense((f,), (c,), ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.fc2(self.norm(jax.nn.silu(self.fc1_g(x)) * self.fc1_x(x)))


class Block(nnx.Module):
    def __init__(self, cfg: EvaConfig, *, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(cfg.width, cfg.ln_eps)
        self.attn = Attention(cfg, rngs=rngs)
        self.norm2 = LayerNorm(cfg.width, cfg.ln_eps)
        self.mlp = SwiGLU(cfg, rngs=rngs)

    def __call__(self, x: Array, sin: Array, cos: Array) -> Array:
        x = x + self.attn(self.norm1(x), sin, cos)
        return x + self.mlp(self.norm2(x))


class EvaVisionTransformer(common.PatchTower):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/14, W/14, C].

    ``out``: ``hidden_states`` (tuple of float32[B, 1 + h*w, C], CLS first; 0 = embeddings,
    i = after block i), ``last_hidden_state`` (after the final LayerNorm, CLS included).
    """

    def __init__(self, cfg: EvaConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        c = cfg.width
        self.cls_token = param(ZEROS, (c,), ("embed",))
        self.pos_embed = param(Init(std=0.02), (1 + cfg.pos_size ** 2, c), (None, "embed"), rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.norm = LayerNorm(c, cfg.ln_eps)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        b, hh, ww, _ = pixels.shape
        s = cfg.pos_size
        gh, gw = hh // cfg.patch, ww // cfg.patch
        x = self.embed_patches(pixels)
        pos = self.pos_embed[...]
        grid_pos = common.resample_grid(pos[1:].reshape(s, s, -1), (gh, gw), "bicubic_aa")
        x = (x + grid_pos.astype(x.dtype)).reshape(b, gh * gw, -1)
        cls = jnp.broadcast_to((self.cls_token[...] + pos[0]).astype(x.dtype), (b, 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1)
        sin, cos = rope_tables((gh, gw), cfg.width // cfg.heads, cfg.rope_ref, cfg.rope_theta)
        x, hidden = common.run_blocks(self.blocks, x, sin, cos)
        last = self.norm(x)
        feats, _ = features.layer_features(hidden, last, cfg.layer, 1, (gh, gw))
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last}


def _config(variant: str, image_size: int | None, layer: int | None,
            dtype: str) -> EvaConfig:
    return common.variant_config("eva_clip", EvaConfig, VARIANTS, variant, image_size=image_size,
                                 layer=layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> EvaVisionTransformer:
    """A randomly initialised EVA-02 trunk (tests, ``:runlocal``)."""
    return common.random_init(EvaVisionTransformer, _config(variant, image_size, layer, dtype),
                              rngs=rngs)


def checkpoint_layout(cfg: EvaConfig, prefix: str = "") -> dict:
    """Parameter path -> (timm tensor name, its shape, transform)."""
    c, h, f, p = cfg.width, cfg.heads, cfg.mlp_dim, cfg.patch

    def lin(ours: str, theirs: str, n_in: int, n_out: int, *, heads: bool = False,
            bias: bool = True) -> dict:
        # q / k / v kernels are [C, h, d] and their biases [h, d]
        w_t = layout.heads_in(h) if heads else layout.t_linear
        out = {f"{ours}.kernel": (f"{theirs}.weight", (n_out, n_in), w_t)}
        if bias:
            out[f"{ours}.bias"] = (f"{theirs}.bias", (n_out,),
                                   layout.heads_bias(h) if heads else None)
        return out

    norm = layout.norm_layout
    out = {"patch_embed.kernel": (prefix + "patch_embed.proj.weight", (c, 3, p, p),
                                  layout.t_conv),
           "patch_embed.bias": (prefix + "patch_embed.proj.bias", (c,), None),
           "cls_token": (prefix + "cls_token", (1, 1, c), layout.t_vec),
           "pos_embed": (prefix + "pos_embed", (1, 1 + cfg.pos_size ** 2, c), layout.t_squeeze),
           **norm("norm", prefix + "norm", c)}
    for i in range(cfg.depth):
        b, me = f"{prefix}blocks.{i}.", f"blocks.{i}."
        out |= norm(me + "norm1", b + "norm1", c) | norm(me + "norm2", b + "norm2", c)
        out |= lin(me + "attn.q", b + "attn.q_proj", c, c, heads=True)
        out |= lin(me + "attn.k", b + "attn.k_proj", c, c, heads=True, bias=False)
        out |= lin(me + "attn.v", b + "attn.v_proj", c, c, heads=True)
        out |= norm(me + "attn.norm", b + "attn.norm", c)
        out |= lin(me + "attn.out", b + "attn.proj", c, c)
        out |= lin(me + "mlp.fc1_g", b + "mlp.fc1_g", c, f)
        out |= lin(me + "mlp.fc1_x", b + "mlp.fc1_x", c, f)
        out |= norm(me + "mlp.norm", b + "mlp.norm", f)
        out |= lin(me + "mlp.fc2", b + "mlp.fc2", f, c)
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> EvaVisionTransformer:
    """From a timm Eva state dict (bare, or open_clip's ``visual.trunk.*``)."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    reader = weights.open_checkpoint(checkpoint)
    prefix = layout.find_prefix(reader, "blocks.0.attn.q_proj.weight",
                                 ("visual.trunk.", "trunk.", ""))
    return layout.fill(common.abstract(EvaVisionTransformer, cfg), checkpoint_layout(cfg, prefix),
                       reader)


def reference(src: str, px, config: EvaConfig) -> np.ndarray:
    """timm ``Eva`` built at the image size; its ``checkpoint_filter_fn`` resamples the
    positions, as timm does when it loads a checkpoint at another size."""
    import torch
    from timm.models.eva import Eva, checkpoint_filter_fn

    from cambrian.models.encoders import reference as ref

    c = config
    reader = weights.open_checkpoint(src)
    pre = layout.find_prefix(reader, "blocks.0.attn.q_proj.weight", ("visual.trunk.", "trunk.", ""))
    model = Eva(img_size=c.image_size, patch_size=c.patch, embed_dim=c.width, depth=c.depth,
                num_heads=c.heads, mlp_ratio=c.mlp_dim / c.width, qkv_fused=False,
                swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True, use_rot_pos_emb=True,
                ref_feat_shape=(c.rope_ref, c.rope_ref), global_pool="token", num_classes=0,
                norm_layer=functools.partial(torch.nn.LayerNorm, eps=c.ln_eps)).eval()
    # open_clip keeps its projection in the trunk head, which Cambrian does not use
    sd = ref.tensors(reader, pre, lambda k: not k.startswith("head."))
    ref.load_state(model, checkpoint_filter_fn(sd, model), src)
    x, rope = model._pos_embed(model.patch_embed(px))
    hidden = [model.norm_pre(x)]
    for blk in model.blocks:
        hidden.append(blk(hidden[-1], rope=rope))
    return ref.to_grid(ref.pick(hidden, model.norm(hidden[-1]), config), 1, px, c.patch)


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """open_clip's eval transform for the EVA02 towers: shortest side + centre crop, bicubic,
    OpenAI CLIP mean/std (pad colour: the CLIP mean)."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN,
                          std=CLIP_STD, resize="shortest", interpolation="bicubic")
