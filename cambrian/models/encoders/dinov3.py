"""DINOv3 ViTs (Siméoni et al. 2025): HF ``DINOv3ViTModel``, published as
``facebook/dinov3-vit{s16,s16plus,b16,l16,h16plus,7b16}-pretrain-lvd1689m`` and
``facebook/dinov3-vit{l16,7b16}-pretrain-sat493m``.

What differs from DINOv2 (checked against transformers' ``modeling_dinov3_vit.py`` and
facebookresearch/dinov3 ``dinov3/models/vision_transformer.py`` / ``dinov3/hub/backbones.py``):

* No position table. Axial RoPE on the patch tokens only (CLS and the 4 registers are not
  rotated): patch centres in [-1, 1] per axis (``normalize_coords="separate"``), head_dim / 4
  frequencies ``theta ** -(4 i / head_dim)`` with ``theta`` = 100, angles ``2 pi coord freq``
  laid out [y freqs, x freqs] and tiled twice, applied with ``rotate_half``. Any image size and
  aspect ratio runs without resampling anything; the training-time coordinate shift / jitter /
  rescale is off in eval, so it is not implemented.
* Tokens ``[CLS, 4 registers, patches]``; layer scale on both branches; key projection without
  bias (the original's ``mask_k_bias``); the 7B has no q / k / v bias at all.
* S/16, B/16, L/16: GELU MLP (ratio 4). S+/16, H+/16, 7B/16: SwiGLU (``silu(gate) * up``) with
  ``intermediate_size`` = int(2/3 ratio width) rounded up to 8 (64 for the 7B): 1536, 5120, 8192.
* ``last_hidden_state`` is the final LayerNorm over all tokens; the original applies the same
  ``norm`` to the patch tokens (``x_norm_patchtokens``), also for the 7B and SAT ViT-L whose
  separate local-crop CLS norm is training-only.

Features: ``layer=None`` (default) is ``last_hidden_state`` with CLS and registers dropped, the
patch features DINOv3's own ``forward_features`` returns and the convention Cambrian uses for
DINOv2; ``layer=k`` is HF ``hidden_states[k]`` (0 = patch embedding + prefix tokens, no final
norm). The hub safetensors name the blocks ``layer.i.*`` (transformers renames them to
``model.layer.i.*`` on load); both are read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, features, layout, vit
from cambrian.models.encoders.common import ONES, Dense, Init, LayerNorm, param
from cambrian.models.encoders.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessSpec

Array = jax.Array

# facebookresearch/dinov3 dinov3/hub/backbones.py; parameter counts in its README
_BASE = dict(patch=16, image_size=224, registers=4)
_SWIGLU = dict(gated=True, act="silu")
VARIANTS = {
    "S/16": _BASE | dict(width=384, depth=12, heads=6, mlp_dim=1536),  # 21M
    "S+/16": _BASE | _SWIGLU | dict(width=384, depth=12, heads=6, mlp_dim=1536),  # 29M
    "B/16": _BASE | dict(width=768, depth=12, heads=12, mlp_dim=3072),  # 86M
    "L/16": _BASE | dict(width=1024, depth=24, heads=16, mlp_dim=4096),  # 300M
    "H+/16": _BASE | _SWIGLU | dict(width=1280, depth=32, heads=20, mlp_dim=5120),  # 840M
    "7B/16": _BASE | _SWIGLU | dict(width=4096, depth=40, heads=32, mlp_dim=8192,  # 6,716M
                                    query_bias=False, value_bias=False),
    "runlocal": _BASE | dict(width=64, depth=2, heads=2, mlp_dim=128, image_size=64),
}
# the satellite (SAT-493M) weights: same towers, their own normalisation
VARIANTS |= {"L/16-sat": VARIANTS["L/16"], "7B/16-sat": VARIANTS["7B/16"]}
SAT_MEAN, SAT_STD = (0.430, 0.411, 0.296), (0.213, 0.156, 0.143)
DEFAULT_VARIANT = "L/16"
DEFAULT_LAYER = None  # last_hidden_state (after the final LayerNorm), prefix tokens dropped

_ACTS = {"gelu": functools.partial(jax.nn.gelu, approximate=False), "silu": jax.nn.silu}


@dataclasses.dataclass(frozen=True)
class DINOv3Config(common.TowerConfig):
    """DINOv3 ViT. ``gated``: SwiGLU MLP (``act`` on the gate) instead of ``act`` between two
    linears; ``rope_theta``: RoPE base; ``*_bias``: which projections carry a bias; ``layer``:
    HF ``hidden_states`` index (None = final output); ``dtype``: see ``common.TowerConfig``."""

    patch: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    image_size: int
    registers: int = 4
    gated: bool = False
    act: str = "gelu"
    ln_eps: float = 1e-5
    rope_theta: float = 100.0
    query_bias: bool = True
    key_bias: bool = False
    value_bias: bool = True
    proj_bias: bool = True
    mlp_bias: bool = True
    layer: int | None = None
    dtype: str = "float32"

    @property
    def num_prefix(self) -> int:
        return 1 + self.registers

    def check(self) -> DINOv3Config:
        if self.width % self.heads or (self.width // self.heads) % 4:
            raise ValueError(f"DINOv3Config: width {self.width} / {self.heads} heads must give a "
                             "head_dim divisible by 4 (two RoPE axes, sin and cos)")
        if self.act not in _ACTS:
            raise ValueError(f"DINOv3Config.act={self.act!r}; expected one of {sorted(_ACTS)}")
        self.check_tower()
        return self


def rope_tables(grid: tuple[int, int], head_dim: int, theta: float) -> tuple[Array, Array]:
    """(cos, sin) float32[h*w, head_dim] of the patch grid, row-major (HF
    ``DINOv3ViTRopePositionEmbedding`` in eval mode)."""
    h, w = grid
    inv_freq = theta ** -(np.arange(head_dim // 4) * 4 / head_dim)
    ys, xs = (np.arange(0.5, n) / n * 2.0 - 1.0 for n in (h, w))  # patch centres in [-1, 1]
    coords = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
    angles = 2 * math.pi * coords[:, :, None] * inv_freq[None, None, :]
    angles = np.tile(angles.reshape(h * w, -1), 2)
    return jnp.asarray(np.cos(angles), jnp.float32), jnp.asarray(np.sin(angles), jnp.float32)


def apply_rope(x: Array, rope: tuple[Array, Array]) -> Array:
    """Rotates the patch tokens of q or k float[B, P + N, H, D]; the P prefix tokens pass."""
    cos, sin = (t[:, None, :].astype(x.dtype) for t in rope)
    p = x.shape[1] - cos.shape[0]
    prefix, patches = x[:, :p], x[:, p:]
    a, b = jnp.split(patches, 2, axis=-1)
    rotated = patches * cos + jnp.concatenate([-b, a], axis=-1) * sin
    return jnp.concatenate([prefix, rotated], axis=1)


class Attention(nnx.Module):
    def __init__(self, cfg: DINOv3Config, *, rngs: nnx.Rngs):
        c, h = cfg.width, cfg.heads
        names = ("embed", "heads", "head_dim")
        self.q = Dense((c,), (h, c // h), names, bias=cfg.query_bias, rngs=rngs)
        self.k = Dense((c,), (h, c // h), names, bias=cfg.key_bias, rngs=rngs)
        self.v = Dense((c,), (h, c // h), names, bias=cfg.value_bias, rngs=rngs)
        self.out = Dense((h, c // h), (c,), ("heads", "head_dim", "embed"), bias=cfg.proj_bias,
                         rngs=rngs)

    def __call__(self, x: Array, rope: tuple[Array, Array]) -> Array:
        q, k = apply_rope(self.q(x), rope), apply_rope(self.k(x), rope)
        return self.out(common.attention(q, k, self.v(x)))


class Mlp(nnx.Module):
    def __init__(self, cfg: DINOv3Config, *, rngs: nnx.Rngs):
        c, f, b = cfg.width, cfg.mlp_dim, cfg.mlp_bias
        self.act = cfg.act
        self.gate = Dense((c,), (f,), ("embed", "mlp"), bias=b, rngs=rngs) if cfg.gated else None
        self.up = Dense((c,), (f,), ("embed", "mlp"), bias=b, rngs=rngs)
        self.down = Dense((f,), (c,), ("mlp", "embed"), bias=b, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        act = _ACTS[self.act]
        h = act(self.up(x)) if self.gate is None else act(self.gate(x)) * self.up(x)
        return self.down(h)


class Block(nnx.Module):
    def __init__(self, cfg: DINOv3Config, *, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(cfg.width, cfg.ln_eps)
        self.attn = Attention(cfg, rngs=rngs)
        self.ls1 = param(ONES, (cfg.width,), ("embed",))
        self.norm2 = LayerNorm(cfg.width, cfg.ln_eps)
        self.mlp = Mlp(cfg, rngs=rngs)
        self.ls2 = param(ONES, (cfg.width,), ("embed",))

    def __call__(self, x: Array, rope: tuple[Array, Array]) -> Array:
        x = x + self.attn(self.norm1(x), rope) * self.ls1[...].astype(x.dtype)
        return x + self.mlp(self.norm2(x)) * self.ls2[...].astype(x.dtype)


class DINOv3ViT(common.PatchTower):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/16, W/16, C].

    ``out``: ``hidden_states`` (tuple of float[B, 5 + h*w, C], HF indexing),
    ``last_hidden_state`` (after the final norm), ``prefix_tokens`` float[B, 5, C] (CLS,
    registers) of the chosen layer.
    """

    def __init__(self, cfg: DINOv3Config, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        c = cfg.width
        self.cls_token = param(Init(std=0.02), (c,), ("embed",), rngs)
        self.registers = (param(Init(std=0.02), (cfg.registers, c), ("length", "embed"), rngs)
                          if cfg.registers else None)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.depth)])
        self.norm = LayerNorm(c, cfg.ln_eps)

    def embed(self, pixels: Array) -> tuple[Array, tuple[int, int]]:
        """float32[B, H, W, 3] -> (float[B, P + h*w, C] in ``dtype``, patch grid (h, w))."""
        x = self.embed_patches(pixels)
        b, gh, gw, c = x.shape
        prefix = [jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, c))]
        if self.registers is not None:
            prefix.append(jnp.broadcast_to(self.registers[...].astype(x.dtype),
                                           (b, self.config.registers, c)))
        return jnp.concatenate([*prefix, x.reshape(b, gh * gw, c)], axis=1), (gh, gw)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        x, grid = self.embed(pixels)
        rope = rope_tables(grid, cfg.width // cfg.heads, cfg.rope_theta)
        x, hidden = common.run_blocks(self.blocks, x, rope)
        last = self.norm(x)
        feats, chosen = features.layer_features(hidden, last, cfg.layer, cfg.num_prefix, grid)
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last,
                       "prefix_tokens": chosen[:, :cfg.num_prefix]}


def _config(variant: str, image_size: int | None, layer: int | None, dtype: str) -> DINOv3Config:
    return common.variant_config("dinov3", DINOv3Config, VARIANTS, variant, image_size=image_size,
                                 layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs, dtype: str = "float32") -> DINOv3ViT:
    """A randomly initialised DINOv3 ViT (tests, ``:runlocal``)."""
    return common.random_init(DINOv3ViT, _config(variant, image_size, layer, dtype), rngs=rngs)


# --- checkpoint layout --------------------------------------------------------------------------

def _square(hf: Mapping, key: str, path: str) -> int:
    v = hf[key]
    if isinstance(v, list | tuple):
        if len(set(v)) != 1:
            raise weights.CheckpointError(f"{path}/config.json: {key}={v}; only square "
                                          f"{key}s are supported")
        v = v[0]
    return int(v)


def config_from_hf(hf: Mapping, path: str = "checkpoint") -> DINOv3Config:
    """The architecture a ``DINOv3ViTConfig`` dict describes (``path`` names it in errors)."""
    if hf["hidden_act"] not in _ACTS:
        raise weights.CheckpointError(f"{path}/config.json: hidden_act={hf['hidden_act']!r}; "
                                      f"DINOv3 checkpoints use one of {sorted(_ACTS)}")
    return DINOv3Config(
        patch=_square(hf, "patch_size", path), width=hf["hidden_size"],
        depth=hf["num_hidden_layers"], heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"], image_size=_square(hf, "image_size", path),
        registers=hf["num_register_tokens"], gated=hf["use_gated_mlp"], act=hf["hidden_act"],
        ln_eps=hf["layer_norm_eps"], rope_theta=hf["rope_theta"], query_bias=hf["query_bias"],
        key_bias=hf["key_bias"], value_bias=hf["value_bias"], proj_bias=hf["proj_bias"],
        mlp_bias=hf["mlp_bias"])


def checkpoint_layout(cfg: DINOv3Config, blocks: str = "layer.") -> dict:
    """Parameter path -> (HF tensor name, its shape, transform); ``blocks`` prefixes the block
    index (``layer.`` on the hub, ``model.layer.`` in transformers' own module tree)."""
    c, h, f, p = cfg.width, cfg.heads, cfg.mlp_dim, cfg.patch
    e = "embeddings."
    out = {"patch_embed.kernel": (e + "patch_embeddings.weight", (c, 3, p, p), layout.t_conv),
           "patch_embed.bias": (e + "patch_embeddings.bias", (c,), None),
           "cls_token": (e + "cls_token", (1, 1, c), layout.t_vec),
           **layout.norm_layout("norm", "norm", c)}
    if cfg.registers:
        out["registers"] = (e + "register_tokens", (1, cfg.registers, c), layout.t_squeeze)
    for i in range(cfg.depth):
        b, me = f"{blocks}{i}.", f"blocks.{i}."
        out |= {**layout.norm_layout(me + "norm1", b + "norm1", c),
                **layout.norm_layout(me + "norm2", b + "norm2", c),
                me + "ls1": (b + "layer_scale1.lambda1", (c,), None),
                me + "ls2": (b + "layer_scale2.lambda1", (c,), None),
                me + "attn.out.kernel": (b + "attention.o_proj.weight", (c, c),
                                         layout.heads_out(h))}
        if cfg.proj_bias:
            out[me + "attn.out.bias"] = (b + "attention.o_proj.bias", (c,), None)
        for x, bias in (("q", cfg.query_bias), ("k", cfg.key_bias), ("v", cfg.value_bias)):
            name = f"{b}attention.{x}_proj."
            out[f"{me}attn.{x}.kernel"] = (name + "weight", (c, c), layout.heads_in(h))
            if bias:
                out[f"{me}attn.{x}.bias"] = (name + "bias", (c,), layout.heads_bias(h))
        for ours, theirs, shape in (("up", "up_proj", (f, c)), ("down", "down_proj", (c, f)),
                                    ("gate", "gate_proj", (f, c))):
            if ours == "gate" and not cfg.gated:
                continue
            out[f"{me}mlp.{ours}.kernel"] = (f"{b}mlp.{theirs}.weight", shape, layout.t_linear)
            if cfg.mlp_bias:
                out[f"{me}mlp.{ours}.bias"] = (f"{b}mlp.{theirs}.bias", shape[:1], None)
    return out


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> DINOv3ViT:
    """From an HF DINOv3 ViT directory (``config.json`` + safetensors, as on the hub); its
    ``config.json`` defines the architecture, ``variant`` only the default image size."""
    hf = vit.hf_config(checkpoint)
    if hf is None:
        raise weights.CheckpointError(
            f"{checkpoint}: no config.json beside the weights; DINOv3 ViTs are read from the HF "
            "directories published as facebook/dinov3-vit*-pretrain-* (download the whole repo)")
    cfg = config_from_hf(hf, checkpoint)
    if image_size is None and variant is not None:
        image_size = _config(variant, None, None, dtype).image_size
    cfg = dataclasses.replace(cfg, image_size=image_size or cfg.image_size, dtype=dtype,
                              layer=DEFAULT_LAYER if layer is None else layer).check()
    reader = weights.open_checkpoint(checkpoint)
    blocks = layout.find_prefix(reader, "0.norm1.weight", ("layer.", "model.layer."))
    return layout.fill(common.abstract(DINOv3ViT, cfg), checkpoint_layout(cfg, blocks), reader)


def reference(src: str, px, config: DINOv3Config) -> np.ndarray:
    """transformers ``DINOv3ViTModel`` from ``src``: float32[B, h, w, C] of ``config.layer``."""
    from cambrian.models.encoders import reference as ref

    out = ref.hf_model(src)(pixel_values=px, output_hidden_states=True)
    tokens = ref.pick(out.hidden_states, out.last_hidden_state, config)
    return ref.to_grid(tokens, config.num_prefix, px, config.patch)


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """HF ``DINOv3ViTImageProcessor`` (the DINOv3 README's ``make_transform``): resize to the
    square size, bilinear, ImageNet mean/std; the SAT-493M weights use their own mean/std."""
    sat = variant.endswith("-sat")
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"],
                          mean=SAT_MEAN if sat else IMAGENET_MEAN,
                          std=SAT_STD if sat else IMAGENET_STD, resize="squash",
                          interpolation="bilinear")
