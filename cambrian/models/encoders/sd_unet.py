"""The Stable Diffusion networks Cambrian's diffusion tower runs: the encoder half of diffusers'
``AutoencoderKL`` and the ``UNet2DConditionModel`` of SD 1.x/2.x, in NHWC.

Parameter paths follow diffusers' module names (``down_blocks.0.resnets.1.conv1.kernel``), from
which ``sd_diffusion`` derives the checkpoint tensor names; every parameter records its
``common.Init`` for ``common.random_init``.

Attention uses ``jax.nn.dot_product_attention`` (no einsums here).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.encoders.common import ONES, ZEROS, Init, fan_in

# --------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The ``AutoencoderKL`` fields the encoder half needs (diffusers names)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    in_channels: int = 3
    latent_channels: int = 4
    scaling_factor: float = 0.18215
    mid_block_add_attention: bool = True
    use_quant_conv: bool = True


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """The ``UNet2DConditionModel`` fields used here (diffusers names).

    ``attention_head_dim`` keeps diffusers' historical meaning: it is the number of heads per block.
    """

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    layers_per_block: int = 2
    attention_head_dim: tuple[int, ...] = (5, 10, 20, 20)
    cross_attention_dim: int = 1024
    use_linear_projection: bool = True
    transformer_layers_per_block: int = 1
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    in_channels: int = 4
    out_channels: int = 4
    flip_sin_to_cos: bool = True
    freq_shift: int = 0


# --------------------------------------------------------------------------- layers

_META = {"eager_sharding": False}


def _dense_args(kernel: Init, names: tuple, bias: bool) -> dict:
    """flax Conv / Linear arguments: the initializers, each also kept as ``init`` metadata."""
    kw = {"kernel_init": kernel,
          "kernel_metadata": {"sharding_names": names, "init": kernel, **_META}}
    if bias:
        kw |= {"bias_init": ZEROS, "bias_metadata": {"init": ZEROS}}
    return kw


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs, stride: int = 1, padding=None) -> nnx.Conv:
    pad = ((k // 2, k // 2),) * 2 if padding is None else padding
    return nnx.Conv(cin, cout, (k, k), strides=stride, padding=pad, rngs=rngs,
                    **_dense_args(fan_in(k * k * cin), (None, None, None, "mlp"), True))


def _linear(din: int, dout: int, rngs: nnx.Rngs, axes=("embed", "mlp"), bias=True) -> nnx.Linear:
    return nnx.Linear(din, dout, use_bias=bias, rngs=rngs,
                      **_dense_args(fan_in(din), axes, bias))


_NORM_ARGS = {"scale_init": ONES, "scale_metadata": {"init": ONES}, "bias_init": ZEROS,
              "bias_metadata": {"init": ZEROS}, "use_fast_variance": False}


def _group_norm(c: int, groups: int, eps: float, rngs: nnx.Rngs) -> nnx.GroupNorm:
    # Two-pass variance: UNet activations have large means, where E[x^2] - E[x]^2 loses digits.
    return nnx.GroupNorm(c, num_groups=groups, epsilon=eps, rngs=rngs, **_NORM_ARGS)


def _layer_norm(c: int, eps: float, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(c, epsilon=eps, rngs=rngs, **_NORM_ARGS)


def _nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """float[B, h, w, C] -> float[B, *size, C] like ``F.interpolate(mode="nearest")``."""
    h, w = x.shape[1:3]
    rows = np.minimum(np.floor(np.arange(size[0]) * (h / size[0])).astype(np.int32), h - 1)
    cols = np.minimum(np.floor(np.arange(size[1]) * (w / size[1])).astype(np.int32), w - 1)
    return x[:, rows][:, :, cols]


class ResnetBlock(nnx.Module):
    """diffusers ``ResnetBlock2D`` ("default" time shift, output scale 1)."""

    def __init__(self, cin: int, cout: int, temb: int | None, groups: int, eps: float,
                 *, rngs: nnx.Rngs):
        self.norm1 = _group_norm(cin, groups, eps, rngs)
        self.conv1 = _conv(cin, cout, 3, rngs)
        self.time_emb_proj = _linear(temb, cout, rngs) if temb else None
        self.norm2 = _group_norm(cout, groups, eps, rngs)
        self.conv2 = _conv(cout, cout, 3, rngs)
        self.conv_shortcut = _conv(cin, cout, 1, rngs) if cin != cout else None

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(jax.nn.silu(temb))[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nnx.Module):
    """Multi-head attention on float[B, T, D]; ``context`` float[B, S, Dc] for cross-attention."""

    def __init__(self, dim: int, heads: int, head_dim: int, *, context_dim: int | None = None,
                 qkv_bias: bool = False, rngs: nnx.Rngs):
        inner = heads * head_dim
        self.heads = heads
        self.to_q = _linear(dim, inner, rngs, bias=qkv_bias)
        self.to_k = _linear(context_dim or dim, inner, rngs, bias=qkv_bias)
        self.to_v = _linear(context_dim or dim, inner, rngs, bias=qkv_bias)
        self.to_out = _linear(inner, dim, rngs, axes=("mlp", "embed"))

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        ctx = x if context is None else context
        split = lambda t: t.reshape(*t.shape[:2], self.heads, -1)  # noqa: E731
        o = jax.nn.dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)),
                                         split(self.to_v(ctx)))
        return self.to_out(o.reshape(*x.shape[:2], -1))


class TransformerBlock(nnx.Module):
    """diffusers ``BasicTransformerBlock``: self-attn, cross-attn, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, context_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = _layer_norm(dim, 1e-5, rngs)
        self.attn1 = Attention(dim, heads, dim // heads, rngs=rngs)
        self.norm2 = _layer_norm(dim, 1e-5, rngs)
        self.attn2 = Attention(dim, heads, dim // heads, context_dim=context_dim, rngs=rngs)
        self.norm3 = _layer_norm(dim, 1e-5, rngs)
        self.ff_in = _linear(dim, 8 * dim, rngs)
        self.ff_out = _linear(4 * dim, dim, rngs, axes=("mlp", "embed"))

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        h, gate = jnp.split(self.ff_in(self.norm3(x)), 2, axis=-1)
        return x + self.ff_out(h * jax.nn.gelu(gate, approximate=False))


class Transformer2D(nnx.Module):
    """diffusers ``Transformer2DModel`` on a feature map; ``proj_in``/``proj_out`` are 1x1 maps
    stored as Linear (checkpoints without ``use_linear_projection`` hold them as 1x1 convs)."""

    def __init__(self, c: int, heads: int, context_dim: int, groups: int, layers: int,
                 *, rngs: nnx.Rngs):
        self.norm = _group_norm(c, groups, 1e-6, rngs)
        self.proj_in = _linear(c, c, rngs)
        self.transformer_blocks = nnx.List(
            [TransformerBlock(c, heads, context_dim, rngs=rngs) for _ in range(layers)])
        self.proj_out = _linear(c, c, rngs)

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        y = self.proj_in(self.norm(x).reshape(b, h * w, c))
        for blk in self.transformer_blocks:
            y = blk(y, context)
        return x + self.proj_out(y).reshape(b, h, w, c)


class VAEAttention(nnx.Module):
    """The VAE mid-block attention: group norm, one head over all positions, residual."""

    def __init__(self, c: int, groups: int, *, rngs: nnx.Rngs):
        self.group_norm = _group_norm(c, groups, 1e-6, rngs)
        self.attn = Attention(c, 1, c, qkv_bias=True, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        return x + self.attn(self.group_norm(x).reshape(b, h * w, c)).reshape(b, h, w, c)


class Block(nnx.Module):
    """A UNet/VAE down, mid or up block: resnets, optional attentions, optional resampler."""

    def __init__(self, resnets: list, attentions: list | None, downsample=None, upsample=None):
        self.resnets = nnx.List(resnets)
        self.attentions = nnx.List(attentions) if attentions else None
        self.downsample = downsample
        self.upsample = upsample

    def layer(self, i: int, x: jax.Array, temb: jax.Array, context: jax.Array) -> jax.Array:
        """Resnet i, then attention i when the block has attentions (UNet blocks only)."""
        x = self.resnets[i](x, temb)
        return x if self.attentions is None else self.attentions[i](x, context)


# --------------------------------------------------------------------------- VAE encoder


class VAEEncoder(nnx.Module):
    """``AutoencoderKL.encode(x).latent_dist.mean``: float32[B, H, W, 3] -> float32[B, H/f, W/f, 4].

    ``f = 2 ** (len(block_out_channels) - 1)`` (8 for SD).
    """

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        cfg = self.config = config
        ch, g, eps = cfg.block_out_channels, cfg.norm_num_groups, 1e-6
        self.latent_channels = cfg.latent_channels
        self.encoder = nnx.Module()
        enc = self.encoder
        enc.conv_in = _conv(cfg.in_channels, ch[0], 3, rngs)
        blocks, cin = [], ch[0]
        for i, c in enumerate(ch):
            res = [ResnetBlock(cin if j == 0 else c, c, None, g, eps, rngs=rngs)
                   for j in range(cfg.layers_per_block)]
            # diffusers pads right/bottom by one, then a stride-2 valid conv.
            down = (_conv(c, c, 3, rngs, stride=2, padding=((0, 1), (0, 1)))
                    if i < len(ch) - 1 else None)
            blocks.append(Block(res, None, downsample=down))
            cin = c
        enc.down_blocks = nnx.List(blocks)
        attn = [VAEAttention(ch[-1], g, rngs=rngs)] if cfg.mid_block_add_attention else None
        enc.mid_block = Block([ResnetBlock(ch[-1], ch[-1], None, g, eps, rngs=rngs)
                               for _ in range(2)], attn)
        enc.conv_norm_out = _group_norm(ch[-1], g, eps, rngs)
        enc.conv_out = _conv(ch[-1], 2 * cfg.latent_channels, 3, rngs)
        self.quant_conv = (_conv(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1, rngs)
                           if cfg.use_quant_conv else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        enc = self.encoder
        x = enc.conv_in(x)
        for blk in enc.down_blocks:
            for r in blk.resnets:
                x = r(x)
            if blk.downsample is not None:
                x = blk.downsample(x)
        mid = enc.mid_block
        x = mid.resnets[0](x)
        if mid.attentions is not None:
            x = mid.attentions[0](x)
        x = mid.resnets[1](x)
        x = enc.conv_out(jax.nn.silu(enc.conv_norm_out(x)))
        if self.quant_conv is not None:
            x = self.quant_conv(x)
        return x[..., : self.latent_channels]


# --------------------------------------------------------------------------- UNet


def timestep_embedding(t: jax.Array, dim: int, flip_sin_to_cos: bool, shift: float) -> jax.Array:
    """int|float[B] -> float32[B, dim] sinusoidal embedding (diffusers get_timestep_embedding)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / (half - shift))
    arg = t.astype(jnp.float32)[:, None] * freqs[None]
    parts = (jnp.cos(arg), jnp.sin(arg)) if flip_sin_to_cos else (jnp.sin(arg), jnp.cos(arg))
    emb = jnp.concatenate(parts, axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


class UNet(nnx.Module):
    """diffusers ``UNet2DConditionModel`` (SD 1.x/2.x layout), NHWC.

    Called as ``eps, out = unet(x, t, context)``: x float32[B, h, w, 4], t int[] or int[B],
    context float32[B, S, cross_attention_dim]; ``out["up_i"]`` is up block i's output
    float32[B, hi, wi, Ci].
    """

    def __init__(self, config: UNetConfig, *, rngs: nnx.Rngs):
        cfg = self.config = config
        ch, g, eps = cfg.block_out_channels, cfg.norm_num_groups, cfg.norm_eps
        n, lpb, ctx = len(ch), cfg.layers_per_block, cfg.cross_attention_dim
        temb = 4 * ch[0]
        self.conv_in = _conv(cfg.in_channels, ch[0], 3, rngs)
        self.time_embedding = nnx.Module()
        self.time_embedding.linear_1 = _linear(ch[0], temb, rngs)
        self.time_embedding.linear_2 = _linear(temb, temb, rngs)

        def attn(c: int, heads: int) -> Transformer2D:
            return Transformer2D(c, heads, ctx, g, cfg.transformer_layers_per_block, rngs=rngs)

        down, cin = [], ch[0]
        for i, (kind, c) in enumerate(zip(cfg.down_block_types, ch)):
            res = [ResnetBlock(cin if j == 0 else c, c, temb, g, eps, rngs=rngs)
                   for j in range(lpb)]
            att = ([attn(c, cfg.attention_head_dim[i]) for _ in range(lpb)]
                   if kind == "CrossAttnDownBlock2D" else None)
            ds = _conv(c, c, 3, rngs, stride=2) if i < n - 1 else None
            down.append(Block(res, att, downsample=ds))
            cin = c
        self.down_blocks = nnx.List(down)
        self.mid_block = Block(
            [ResnetBlock(ch[-1], ch[-1], temb, g, eps, rngs=rngs) for _ in range(2)],
            [attn(ch[-1], cfg.attention_head_dim[-1])])

        up, rch, rheads = [], ch[::-1], cfg.attention_head_dim[::-1]
        prev = rch[0]
        for i, kind in enumerate(cfg.up_block_types):
            c, skip_in = rch[i], rch[min(i + 1, n - 1)]
            res = [ResnetBlock((prev if j == 0 else c) + (skip_in if j == lpb else c), c, temb, g,
                               eps, rngs=rngs) for j in range(lpb + 1)]
            att = ([attn(c, rheads[i]) for _ in range(lpb + 1)]
                   if kind == "CrossAttnUpBlock2D" else None)
            us = _conv(c, c, 3, rngs) if i < n - 1 else None
            up.append(Block(res, att, upsample=us))
            prev = c
        self.up_blocks = nnx.List(up)
        self.conv_norm_out = _group_norm(ch[0], g, eps, rngs)
        self.conv_out = _conv(ch[0], cfg.out_channels, 3, rngs)

    def up_features(self, x: jax.Array, t, context: jax.Array, last_up: int | None = None):
        """Runs the UNet up to (and including) up block ``last_up``; returns (x, {"up_i": ...}).

        Computes in the dtype of ``x`` (the sinusoidal embedding is cast to it)."""
        cfg = self.config
        t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
        temb = timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos,
                                  cfg.freq_shift).astype(x.dtype)
        te = self.time_embedding
        temb = te.linear_2(jax.nn.silu(te.linear_1(temb)))

        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            for i in range(len(blk.resnets)):
                x = blk.layer(i, x, temb, context)
                skips.append(x)
            if blk.downsample is not None:
                x = blk.downsample(x)
                skips.append(x)
        x = self.mid_block.resnets[0](x, temb)
        x = self.mid_block.attentions[0](x, context)
        x = self.mid_block.resnets[1](x, temb)

        out = {}
        last = len(self.up_blocks) - 1 if last_up is None else last_up
        for u, blk in enumerate(self.up_blocks[: last + 1]):
            for i in range(len(blk.resnets)):
                x = jnp.concatenate([x, skips.pop()], axis=-1)
                x = blk.layer(i, x, temb, context)
            if blk.upsample is not None:
                # The next skip's size: 2x when the input divides evenly, as diffusers.
                x = blk.upsample(_nearest(x, skips[-1].shape[1:3]))
            out[f"up_{u}"] = x
        return x, out

    def __call__(self, x: jax.Array, t, context: jax.Array):
        x, out = self.up_features(x, t, context)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x))), out
