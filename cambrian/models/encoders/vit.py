"""One Vision Transformer for every ViT-shaped encoder family of the zoo.

CLIP (HF and open_clip), SigLIP, DINOv2 (+ registers, layer scale, SwiGLU), I-JEPA, MAE, MoCo v3,
supervised timm ViTs and DPT's ViT backbone differ only in the switches of ``ViTConfig``; each
family file holds its variant table, its checkpoint loader and its preprocessing. The layouts
shared by several families (timm, HF ``ViTModel``-style) live here.

Tokens are ``[prefix (CLS, registers), patches]``. ``out["hidden_states"][0]`` is the embedding
(after the CLIP pre-norm), ``[i]`` the output of block ``i`` -- indexed like HF's
``output_hidden_states`` -- and ``layer=None`` means the final output (final norm applied where the
reference applies it to the tokens).

Layers, random initialisation and position-grid resampling shared with the other families live in
``common``; the checkpoint-layout transforms in ``layout``; the PyTorch reference (HF, timm or
open_clip, whichever layout the checkpoint has) in ``vit_reference``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, features, layout
from cambrian.models.encoders.common import (
    ONES,
    ZEROS,
    Dense,
    Init,
    LayerNorm,
    param,
    resample_grid,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ViTConfig(common.TowerConfig):
    """Architecture of one ViT encoder.

    image_size: input side in pixels the module is built for (sets ``grid``).
    pos_size: side of the position-embedding grid stored in the checkpoint; other grids are
      resampled from it with ``pos_interp``: "bicubic" (HF CLIP/SigLIP/DINOv2/I-JEPA/ViTMAE
      ``interpolate_pos_encoding``), "bicubic_aa" (timm ``resample_abs_pos_embed``, open_clip
      ``resize_pos_embed``, HF DINOv2-with-registers), "bilinear" (HF DPT ``_resize_pos_embed``),
      "bilinear_aa" (HF SigLIP2), "bicubic_scale" (HF DINOv2 as of transformers 4.37, which the
      released Cambrian-1 models ran: ``scale_factor=(n + 0.1) / N`` instead of ``size=n``).
    act: "gelu" (erf) | "quick_gelu" | "gelu_tanh"; mlp: "mlp" | "swiglu" (DINOv2-g).
    pre_norm: CLIP's LayerNorm on the embeddings; final_norm: LayerNorm applied to the final
      tokens (``layer=None``).
    pos_cls: the position table has a slot for the CLS token. Registers never get positions.
    layer: which ``hidden_states`` entry becomes the features (HF indexing, negative allowed);
      None = final output.
    dtype: parameter and compute dtype ("float32" | "bfloat16"; Cambrian runs frozen towers in
      bf16). Norms and softmax stay in float32; features are float32.
    """

    patch: int
    width: int
    depth: int
    heads: int
    mlp_dim: int
    image_size: int
    pos_size: int
    act: str = "gelu"
    mlp: str = "mlp"
    ln_eps: float = 1e-6
    pre_norm: bool = False
    final_norm: bool = True
    cls_token: bool = True
    registers: int = 0
    layerscale: bool = False
    qkv_bias: bool = True
    patch_bias: bool = True
    pos_cls: bool = True
    pos_interp: str = "bicubic"
    layer: int | None = None
    dtype: str = "float32"

    @property
    def num_prefix(self) -> int:
        return int(self.cls_token) + self.registers

    def replace(self, **kw) -> ViTConfig:
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})

    def check(self) -> ViTConfig:
        if self.width % self.heads:
            raise ValueError(f"ViTConfig: width {self.width} is not divisible by heads "
                             f"{self.heads}")
        for field, allowed in (("act", _ACTS), ("mlp", ("mlp", "swiglu")),
                               ("pos_interp", common.RESAMPLERS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"ViTConfig.{field}={getattr(self, field)!r}; expected one of "
                                 f"{sorted(allowed)}")
        self.check_tower()
        return self


_ACTS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
}


# --- modules ------------------------------------------------------------------------------------

class Mlp(nnx.Module):
    def __init__(self, cfg: ViTConfig, rngs: nnx.Rngs):
        gated = cfg.mlp == "swiglu"
        hidden = cfg.mlp_dim * (2 if gated else 1)
        self.gated = gated
        self.act = cfg.act
        self.fc1 = Dense((cfg.width,), (hidden,), ("embed", "mlp"), rngs=rngs)
        self.fc2 = Dense((cfg.mlp_dim,), (cfg.width,), ("mlp", "embed"), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        h = self.fc1(x)
        if self.gated:  # DINOv2 SwiGLU: first half gates the second
            a, b = jnp.split(h, 2, axis=-1)
            h = jax.nn.silu(a) * b
        else:
            h = _ACTS[self.act](h)
        return self.fc2(h)


class Block(nnx.Module):
    def __init__(self, cfg: ViTConfig, rngs: nnx.Rngs):
        self.norm1 = LayerNorm(cfg.width, cfg.ln_eps)
        self.attn = common.Attention(cfg.width, cfg.heads, qkv_bias=cfg.qkv_bias, rngs=rngs)
        self.norm2 = LayerNorm(cfg.width, cfg.ln_eps)
        self.mlp = Mlp(cfg, rngs)
        if cfg.layerscale:
            self.ls1 = param(ONES, (cfg.width,), ("embed",))
            self.ls2 = param(ONES, (cfg.width,), ("embed",))
        else:
            self.ls1 = self.ls2 = None

    def __call__(self, x: Array) -> Array:
        a = self.attn(self.norm1(x))
        x = x + (a if self.ls1 is None else a * self.ls1[...].astype(a.dtype))
        m = self.mlp(self.norm2(x))
        return x + (m if self.ls2 is None else m * self.ls2[...].astype(m.dtype))


class VisionTransformer(common.PatchTower):
    """``feats, out = vit(pixels)``: float32[B, H, W, 3] -> float32[B, h, w, C] and intermediates.

    ``out``: ``hidden_states`` (tuple of float[B, N, C], HF indexing), ``last_hidden_state``
    (final output incl. prefix tokens), ``prefix_tokens`` float[B, P, C] of the chosen layer.
    """

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs, patch_bias=cfg.patch_bias)
        self.num_prefix: int = cfg.num_prefix
        c = cfg.width
        n_pos = cfg.pos_size ** 2 + (1 if cfg.cls_token and cfg.pos_cls else 0)
        self.pos_embed = param(Init(std=0.02), (n_pos, c), ("length", "embed"), rngs)
        self.cls_token = param(ZEROS, (c,), ("embed",)) if cfg.cls_token else None
        self.registers = (param(ZEROS, (cfg.registers, c), ("length", "embed"))
                          if cfg.registers else None)
        self.pre_norm = LayerNorm(c, cfg.ln_eps) if cfg.pre_norm else None
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])
        self.final_norm = LayerNorm(c, cfg.ln_eps) if cfg.final_norm else None

    def _positions(self, gh: int, gw: int) -> tuple[Array | None, Array]:
        cfg = self.config
        pos = self.pos_embed[...]
        cls_pos = pos[0] if cfg.cls_token and cfg.pos_cls else None
        grid = pos[len(pos) - cfg.pos_size ** 2:].reshape(cfg.pos_size, cfg.pos_size, -1)
        return cls_pos, resample_grid(grid, (gh, gw), cfg.pos_interp)

    def embed(self, pixels: Array) -> Array:
        """float32[B, H, W, 3] -> float[B, P + h*w, C] (before the blocks), in ``dtype``."""
        cfg = self.config
        b, hh, ww, _ = pixels.shape
        gh, gw = hh // cfg.patch, ww // cfg.patch
        x = self.embed_patches(pixels)  # [B, gh, gw, C]
        cls_pos, grid_pos = self._positions(gh, gw)
        x = (x + grid_pos.astype(x.dtype)).reshape(b, gh * gw, -1)
        prefix = []
        if self.cls_token is not None:
            cls = self.cls_token[...]
            cls = cls if cls_pos is None else cls + cls_pos
            prefix.append(jnp.broadcast_to(cls.astype(x.dtype), (b, 1, x.shape[-1])))
        if self.registers is not None:
            prefix.append(jnp.broadcast_to(self.registers[...].astype(x.dtype),
                                           (b, cfg.registers, x.shape[-1])))
        x = jnp.concatenate([*prefix, x], axis=1) if prefix else x
        return x if self.pre_norm is None else self.pre_norm(x)

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        grid = (pixels.shape[1] // cfg.patch, pixels.shape[2] // cfg.patch)
        x, hidden = common.run_blocks(self.blocks, self.embed(pixels))
        last = x if self.final_norm is None else self.final_norm(x)
        feats, chosen = features.layer_features(hidden, last, cfg.layer, cfg.num_prefix, grid)
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last,
                       "prefix_tokens": chosen[:, :cfg.num_prefix]}


# --- checkpoint layouts -------------------------------------------------------------------------
# A layout maps each parameter path of VisionTransformer ("blocks.3.attn.q.kernel") to
# (checkpoint tensor name, its shape in the checkpoint, transform to our shape);
# ``layout.fill`` streams the tensors into an abstract module.

def abstract(cfg: ViTConfig) -> VisionTransformer:
    """The module with shapes only: nothing allocated until ``fill`` puts checkpoint tensors in."""
    return common.abstract(VisionTransformer, cfg)


def block_layout(cfg: ViTConfig, i: int, names: Mapping[str, str], fused_qkv: bool) -> dict:
    """Layout entries of block ``i``; ``names`` gives the checkpoint name of each piece."""
    c, h, f = cfg.width, cfg.heads, cfg.mlp_dim
    f1 = 2 * f if cfg.mlp == "swiglu" else f
    me = f"blocks.{i}."
    out = layout.norm_layout(me + "norm1", names["norm1"], c)
    out |= layout.norm_layout(me + "norm2", names["norm2"], c)
    out |= {
        me + "attn.out.kernel": (names["out"] + ".weight", (c, c), layout.heads_out(h)),
        me + "attn.out.bias": (names["out"] + ".bias", (c,), None),
        me + "mlp.fc1.kernel": (names["fc1"] + ".weight", (f1, c), layout.t_linear),
        me + "mlp.fc1.bias": (names["fc1"] + ".bias", (f1,), None),
        me + "mlp.fc2.kernel": (names["fc2"] + ".weight", (c, f), layout.t_linear),
        me + "mlp.fc2.bias": (names["fc2"] + ".bias", (c,), None),
    }
    for j, qkv in enumerate("qkv"):
        if fused_qkv:
            part = layout.qkv_part(j, c)
            out[me + f"attn.{qkv}.kernel"] = (names["qkv"] + ".weight", (3 * c, c),
                                             layout.heads_in(h, part))
            if cfg.qkv_bias:
                out[me + f"attn.{qkv}.bias"] = (names["qkv"] + ".bias", (3 * c,),
                                               layout.heads_bias(h, part))
        else:
            out[me + f"attn.{qkv}.kernel"] = (names[qkv] + ".weight", (c, c), layout.heads_in(h))
            if cfg.qkv_bias:
                out[me + f"attn.{qkv}.bias"] = (names[qkv] + ".bias", (c,), layout.heads_bias(h))
    if cfg.layerscale:
        out[me + "ls1"] = (names["ls1"], (c,), None)
        out[me + "ls2"] = (names["ls2"], (c,), None)
    return out


def embed_layout(cfg: ViTConfig, names: Mapping[str, str]) -> dict:
    """Layout entries of the stem and the final norm; ``names`` as in ``block_layout``."""
    c, p = cfg.width, cfg.patch
    n_pos = cfg.pos_size ** 2 + (1 if cfg.cls_token and cfg.pos_cls else 0)
    pos_shape = tuple(names.get("pos_shape", (1, n_pos, c)))
    out = {
        "patch_embed.kernel": (names["patch"] + ".weight", (c, 3, p, p), layout.t_conv),
        "pos_embed": (names["pos"], pos_shape, layout.t_squeeze if len(pos_shape) == 3 else None),
    }
    if cfg.patch_bias:
        out["patch_embed.bias"] = (names["patch"] + ".bias", (c,), None)
    if cfg.cls_token:
        cls_shape = tuple(names.get("cls_shape", (1, 1, c)))
        out["cls_token"] = (names["cls"], cls_shape, layout.t_vec)
    if cfg.registers:
        out["registers"] = (names["registers"], (1, cfg.registers, c), layout.t_squeeze)
    for norm in ("pre_norm", "final_norm"):
        if getattr(cfg, norm):
            out |= layout.norm_layout(norm, names[norm], c)
    return out


def timm_layout(cfg: ViTConfig, prefix: str = "") -> dict:
    """timm ``VisionTransformer`` state dict (MAE, MoCo v3, supervised ViT, SigLIP trunks)."""
    out = embed_layout(cfg, {"patch": prefix + "patch_embed.proj", "pos": prefix + "pos_embed",
                             "cls": prefix + "cls_token", "registers": prefix + "reg_token",
                             "pre_norm": prefix + "norm_pre", "final_norm": prefix + "norm"})
    for i in range(cfg.depth):
        b = f"{prefix}blocks.{i}."
        out |= block_layout(cfg, i, {
            "norm1": b + "norm1", "norm2": b + "norm2", "qkv": b + "attn.qkv",
            "out": b + "attn.proj", "fc1": b + "mlp.fc1", "fc2": b + "mlp.fc2",
            "ls1": b + "ls1.gamma", "ls2": b + "ls2.gamma"}, fused_qkv=True)
    return out


def hf_clip_blocks_layout(cfg: ViTConfig, prefix: str = "") -> dict:
    """The blocks of HF ``CLIPVisionModel`` / ``SiglipVisionModel`` (``encoder.layers.i``)."""
    out = {}
    for i in range(cfg.depth):
        b = f"{prefix}encoder.layers.{i}."
        out |= block_layout(cfg, i, {
            "norm1": b + "layer_norm1", "norm2": b + "layer_norm2", "q": b + "self_attn.q_proj",
            "k": b + "self_attn.k_proj", "v": b + "self_attn.v_proj",
            "out": b + "self_attn.out_proj", "fc1": b + "mlp.fc1", "fc2": b + "mlp.fc2"},
            fused_qkv=False)
    return out


def hf_vit_layout(cfg: ViTConfig, prefix: str = "", *, norm_names=("layernorm_before",
                  "layernorm_after"), mlp_names=("intermediate.dense", "output.dense")) -> dict:
    """HF ``ViTModel``-style layout shared by DINOv2, I-JEPA, ViTMAE and DPT."""
    e = prefix + "embeddings."
    out = embed_layout(cfg, {"patch": e + "patch_embeddings.projection",
                             "pos": e + "position_embeddings", "cls": e + "cls_token",
                             "registers": e + "register_tokens",
                             "final_norm": prefix + "layernorm"})
    for i in range(cfg.depth):
        b = f"{prefix}encoder.layer.{i}."
        out |= block_layout(cfg, i, {
            "norm1": b + norm_names[0], "norm2": b + norm_names[1],
            "q": b + "attention.attention.query", "k": b + "attention.attention.key",
            "v": b + "attention.attention.value", "out": b + "attention.output.dense",
            "fc1": b + mlp_names[0], "fc2": b + mlp_names[1],
            "ls1": b + "layer_scale1.lambda1", "ls2": b + "layer_scale2.lambda1"}, fused_qkv=False)
    return out


def timm_shapes(cfg: ViTConfig, reader: Mapping[str, np.ndarray], prefix: str) -> ViTConfig:
    """``cfg`` with the sizes a timm ViT state dict under ``prefix`` has (patch, width, depth,
    MLP width, position grid); the rest (heads, activation, norms) stays the variant's, so any
    size of that architecture loads."""
    pw = reader[prefix + "patch_embed.proj.weight"]
    depth = 0
    while f"{prefix}blocks.{depth}.norm1.weight" in reader:
        depth += 1
    n_pos = reader[prefix + "pos_embed"].shape[-2] - int(cfg.cls_token and cfg.pos_cls)
    side = int(round(n_pos ** 0.5))
    width = int(pw.shape[0])
    if width % cfg.heads or side * side != n_pos:
        raise weights.CheckpointError(
            f"{getattr(reader, 'source', 'checkpoint')}: width {width} / {n_pos} positions do not "
            f"fit this variant ({cfg.heads} heads, a square position grid); pick the variant of "
            "the checkpoint")
    return dataclasses.replace(
        cfg, patch=int(pw.shape[-1]), width=width, depth=depth,
        mlp_dim=int(reader[prefix + "blocks.0.mlp.fc1.weight"].shape[0]), pos_size=side).check()


def set_pos_interp(tower: nnx.Module, method: str, what: str = "pos_interp") -> None:
    """Makes ViT ``tower`` resize its position table with ``method`` (a ``common.RESAMPLERS``
    name) instead of its checkpoint library's rule; ``what`` names the setting in errors."""
    if not isinstance(tower, VisionTransformer):
        raise ValueError(f"{what}={method!r}: only ViT towers have a position table to resize "
                         f"({type(tower).__name__} has none); leave it empty")
    if method not in common.RESAMPLERS:
        raise ValueError(f"{what}={method!r}; expected one of {sorted(common.RESAMPLERS)}")
    tower.config = dataclasses.replace(tower.config, pos_interp=method)


def load_layout(cfg: ViTConfig, reader: Mapping[str, np.ndarray],
                entries: Mapping[str, layout.Entry]) -> VisionTransformer:
    """A VisionTransformer for ``cfg`` with weights from ``reader`` laid out as ``entries``."""
    return layout.fill(abstract(cfg), entries, reader)


# --- helpers shared by the family modules -------------------------------------------------------

# The standard ViT sizes (Dosovitskiy et al. Table 1), shared by every family's variant table.
SIZES = {"B": dict(width=768, depth=12, heads=12, mlp_dim=3072),
         "L": dict(width=1024, depth=24, heads=16, mlp_dim=4096),
         "H": dict(width=1280, depth=32, heads=16, mlp_dim=5120)}

# The tiny ViT of every family's "runlocal" variant (random weights only: CPU runs and tests).
TINY = dict(width=64, depth=2, heads=2, mlp_dim=256, pos_size=4)

# timm ``vit_*_224`` towers (MAE, supervised in21k and MoCo v3 share them).
_TIMM = dict(act="gelu", ln_eps=1e-6, pos_interp="bicubic_aa")
TIMM_VARIANTS = {
    "B/16": _TIMM | SIZES["B"] | dict(patch=16, image_size=224, pos_size=14),
    "L/16": _TIMM | SIZES["L"] | dict(patch=16, image_size=224, pos_size=14),
    "H/14": _TIMM | SIZES["H"] | dict(patch=14, image_size=224, pos_size=16),
    "runlocal": _TIMM | TINY | dict(patch=16, image_size=64),
}


def config_for(family: str, variants: Mapping[str, Mapping], variant: str, *,
               image_size: int | None = None, layer: int | None = None,
               default_layer: int | None = None, dtype: str = "float32") -> ViTConfig:
    """``ViTConfig`` of ``variants[variant]`` at ``image_size``; ``layer=None`` -> the default."""
    return common.variant_config(family, ViTConfig, variants, variant, image_size=image_size,
                                 layer=default_layer if layer is None else layer, dtype=dtype)


def create(family: str, variants: Mapping[str, Mapping], variant: str, *,
           image_size: int | None, layer: int | None, default_layer: int | None,
           rngs: nnx.Rngs, dtype: str) -> VisionTransformer:
    """A randomly initialised ``variants[variant]`` (a family module's ``create``)."""
    cfg = config_for(family, variants, variant, image_size=image_size, layer=layer,
                     default_layer=default_layer, dtype=dtype)
    return common.random_init(VisionTransformer, cfg, rngs=rngs)


def hf_config(checkpoint: str) -> dict | None:
    """The vision config beside an HF checkpoint, with transformers' defaults filled in (hub
    ``config.json`` files often store only non-default fields); None when there is none."""
    path = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    if not os.path.exists(os.path.join(path, "config.json")):
        return None
    import transformers

    conf = transformers.AutoConfig.from_pretrained(path)
    return (getattr(conf, "vision_config", None) or conf).to_dict()


def hf_common(hf: Mapping, **kw) -> ViTConfig:
    """ViTConfig fields every HF vision config spells the same way, plus ``kw``."""
    patch, size = hf["patch_size"], hf["image_size"]
    act = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}.get(hf["hidden_act"],
                                                                          hf["hidden_act"])
    base = dict(patch=patch, width=hf["hidden_size"], depth=hf["num_hidden_layers"],
                heads=hf["num_attention_heads"], mlp_dim=hf["intermediate_size"],
                image_size=size, pos_size=size // patch, act=act, ln_eps=hf["layer_norm_eps"])
    return ViTConfig(**(base | kw))


def pick_config(family: str, variants: Mapping[str, Mapping], checkpoint: str, *,
                variant: str | None, default_variant: str, image_size: int | None,
                layer: int | None, default_layer: int | None, dtype: str,
                from_hf: Callable[[dict], ViTConfig] | None = None) -> ViTConfig:
    """The architecture of a checkpoint being loaded.

    An HF ``config.json`` beside the weights defines it (``variant`` then only gives the default
    image size); otherwise ``variants[variant or default_variant]`` does.
    """
    hf = hf_config(checkpoint) if from_hf is not None else None
    if hf is not None:
        cfg = from_hf(hf)
        if image_size is None and variant is not None:
            image_size = config_for(family, variants, variant).image_size
    else:
        cfg = config_for(family, variants, variant or default_variant)
    return dataclasses.replace(cfg, image_size=image_size or cfg.image_size, dtype=dtype,
                               layer=default_layer if layer is None else layer).check()


def load_timm(family: str, variants: Mapping[str, Mapping], checkpoint: str, *,
              variant: str | None, default_variant: str, image_size: int | None,
              layer: int | None, default_layer: int | None, dtype: str,
              prefixes: Iterable[str] = ("", "model.", "module.")) -> VisionTransformer:
    """A timm ``VisionTransformer`` state dict (under any of ``prefixes``) as
    ``variants[variant]``.

    Other image sizes use timm's ``resample_abs_pos_embed`` rule (bicubic, antialiased).
    """
    reader = weights.open_checkpoint(checkpoint)
    pre = layout.find_prefix(reader, "patch_embed.proj.weight", prefixes)
    cfg = config_for(family, variants, variant or default_variant, image_size=image_size,
                     layer=layer, default_layer=default_layer, dtype=dtype)
    cfg = dataclasses.replace(cfg, pos_interp="bicubic_aa")
    return load_layout(cfg, reader, timm_layout(cfg, pre))


def reference(src: str, px, config: ViTConfig):
    """The PyTorch reference features of the ViT checkpoint ``src`` (HF, timm or open_clip
    layout) for NCHW ``px``: float32[B, h, w, C] as numpy (``vit_reference``; needs torch)."""
    from cambrian.models.encoders import vit_reference

    return vit_reference.features(src, px, config)
