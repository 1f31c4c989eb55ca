"""Perception Encoder (Bolya et al. 2025, arXiv:2504.13181): PE-core, PE-lang and PE-spatial.

A pre-norm ViT (``ln_pre`` on the embeddings, no patch bias, LayerNorm eps 1e-5) with a CLS token
(all but the G towers), learned absolute positions and 2-D rotary embeddings in every attention
layer; PE-lang and PE-spatial-G add layer scale. The CLIP towers (PE-core) end in ``ln_post``,
an attention pool and a projection; the pool and projection are never read (feature maps only).

Layers (``hidden_states[0]`` = embeddings after ``ln_pre``, ``[i]`` = after block i; the
reference's ``forward_features(layer_idx=k)`` is ``hidden_states[k + 1]``). ``layer=None`` is the
tower's output: for PE-core the last block + ``ln_post`` (timm ``forward_features``), for PE-lang
and PE-spatial the last block (they have no final norm). The paper finds the best MLLM features
inside PE-core (Sec. 4) and releases them as PE-lang, which is PE-core cut at that layer and
aligned: 23 of 24 blocks for L, 47 of 50 for G (``core/vision_encoder/config.py`` of
facebookresearch/perception_models); PerceptionLM feeds PE-lang's last layer, CLS dropped, to its
projector (transformers ``PerceptionLMModel.get_image_features``). PE-spatial is aligned at its
last layer for dense tasks (model cards). So every tower's default is its output, and a PE-core
probe that follows the paper takes ``layer=-2`` (L, block 23 of 24) / ``-4`` (G, 47 of 50).

Positions (timm ``Eva`` with the ``vit_pe_*`` switches, the reference here): RoPE rotates
interleaved channel pairs, the first half of the bands with the column, the second with the row
(``rope_grid_indexing='xy'``), at positions ``(index + 1)`` when there is a CLS token (the CLS
slot is position 0, i.e. not rotated) and ``index`` otherwise, rescaled onto the pretraining grid
(``ref_feat_shape`` = ``pos_size``); the absolute grid is resampled bicubic with antialiasing
(``resample_abs_pos_embed``). At the pretraining resolution (the probe setting) this equals the
authors' code, which instead keeps integer RoPE positions and resamples the absolute grid bilinear
(``pe.py: _sample_abs_posemb``, ``rope.py: Rope2D``). Non-square images are supported.

Weights load from the timm hub layout (``timm/vit_pe_*``: ``model.safetensors``) and from the
authors' layout (``facebook/PE-*``: ``PE-*.pt``, CLIP towers under ``visual.``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, dfn_clip, features, layout, vit
from cambrian.models.encoders.preprocess import HALF, PreprocessSpec

Array = jax.Array

_BASE = dict(ln_eps=1e-5, pre_norm=True, patch_bias=False, pos_interp="bicubic_aa")
_CORE = _BASE | dict(final_norm=True)
_ALIGNED = _BASE | dict(final_norm=False)  # lang / spatial: no ln_post
_T = dict(width=192, depth=12, heads=3, mlp_dim=768, patch=16)
_S = dict(width=384, depth=12, heads=6, mlp_dim=1536, patch=16)
_B = vit.SIZES["B"] | dict(patch=16)
_L = vit.SIZES["L"] | dict(patch=14)
_G = dict(width=1536, depth=50, heads=16, mlp_dim=8960, patch=14, cls_token=False)
_AT448 = dict(image_size=448, pos_size=32)
_AT512 = dict(image_size=512, pos_size=32)
_TINY = vit.TINY | dict(patch=14, image_size=56)
VARIANTS = {
    "core-T/16@384": _CORE | _T | dict(image_size=384, pos_size=24),
    "core-S/16@384": _CORE | _S | dict(image_size=384, pos_size=24),
    "core-B/16@224": _CORE | _B | dict(image_size=224, pos_size=14),
    "core-L/14@336": _CORE | _L | dict(image_size=336, pos_size=24),
    "core-G/14@448": _CORE | _G | _AT448,
    "lang-L/14@448": _ALIGNED | _L | _AT448 | dict(depth=23, layerscale=True),
    "lang-G/14@448": _ALIGNED | _G | _AT448 | dict(depth=47, layerscale=True),
    "spatial-T/16@512": _ALIGNED | _T | _AT512,
    "spatial-S/16@512": _ALIGNED | _S | _AT512,
    "spatial-B/16@512": _ALIGNED | _B | _AT512,
    "spatial-L/14@448": _ALIGNED | _L | _AT448,
    "spatial-G/14@448": _ALIGNED | _G | _AT448 | dict(layerscale=True),
    # tiny towers with the three switch sets (lang, core, G): random weights and tests only
    "runlocal": _ALIGNED | _TINY | dict(layerscale=True),
    "runlocal-core": _CORE | _TINY,
    "runlocal-G": _ALIGNED | _TINY | dict(cls_token=False, layerscale=True),
}
DEFAULT_VARIANT = "lang-L/14@448"
DEFAULT_LAYER = None  # the tower's output (see the module docstring)


@dataclasses.dataclass(frozen=True)
class PEConfig(vit.ViTConfig):
    """``vit.ViTConfig`` plus the rotary embedding: positions are rescaled onto the
    ``pos_size`` grid, frequencies ``rope_theta ** (-k / (head_dim / 4))``."""

    rope_theta: float = 10000.0

    def check(self) -> PEConfig:
        if (self.width // self.heads) % 4:
            raise ValueError(f"PEConfig: head_dim {self.width}/{self.heads} must be a multiple of "
                             "4 for 2-D rotary embeddings")
        super().check()
        return self


def rope_tables(grid: tuple[int, int], head_dim: int, ref: int, offset: float,
                theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(sin, cos) float32[h*w, head_dim] of timm's ``RotaryEmbeddingCat`` for PE.

    Positions ``(index + offset) / side * ref`` per axis; bands ``k < head_dim/4`` take the column
    (``grid_indexing='xy'``), the next ``head_dim/4`` the row; each angle covers a channel pair.
    """
    nb = head_dim // 4
    bands = 1.0 / theta ** (np.arange(nb, dtype=np.float32) / nb)
    ty = (np.arange(grid[0], dtype=np.float32) + offset) / grid[0] * ref
    tx = (np.arange(grid[1], dtype=np.float32) + offset) / grid[1] * ref
    yy, xx = np.meshgrid(ty, tx, indexing="ij")
    ang = np.stack([xx, yy], -1)[..., None] * bands  # [h, w, 2, nb]
    ang = np.repeat(ang.reshape(grid[0] * grid[1], 2 * nb), 2, axis=-1)
    return np.sin(ang).astype(np.float32), np.cos(ang).astype(np.float32)


class Block(vit.Block):
    """A ``vit.Block`` whose attention rotates the patch tokens' queries and keys."""

    def __init__(self, cfg: PEConfig, rngs: nnx.Rngs):
        super().__init__(cfg, rngs)
        self.num_prefix: int = cfg.num_prefix

    def _attention(self, x: Array, sin: Array, cos: Array) -> Array:
        p, attn = self.num_prefix, self.attn
        q, k, v = attn.q(x), attn.k(x), attn.v(x)  # [b, n, h, d]
        q = jnp.concatenate([q[:, :p], common.rotate_pairs(q[:, p:], sin, cos)], axis=1)
        k = jnp.concatenate([k[:, :p], common.rotate_pairs(k[:, p:], sin, cos)], axis=1)
        return attn.out(common.attention(q, k, v))

    def __call__(self, x: Array, sin: Array, cos: Array) -> Array:
        a = self._attention(self.norm1(x), sin, cos)
        x = x + (a if self.ls1 is None else a * self.ls1[...].astype(a.dtype))
        m = self.mlp(self.norm2(x))
        return x + (m if self.ls2 is None else m * self.ls2[...].astype(m.dtype))


class PerceptionEncoder(vit.VisionTransformer):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/p, W/p, C].

    ``out`` as ``vit.VisionTransformer``: ``hidden_states`` (float[B, P + h*w, C], 0 = after
    ``ln_pre``), ``last_hidden_state``, ``prefix_tokens`` (the CLS token, if any).
    """

    def __init__(self, cfg: PEConfig, *, rngs: nnx.Rngs):
        super().__init__(cfg, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])

    def __call__(self, pixels: Array) -> tuple[Array, dict]:
        cfg = self.config
        grid = (pixels.shape[1] // cfg.patch, pixels.shape[2] // cfg.patch)
        sin, cos = rope_tables(grid, cfg.width // cfg.heads, cfg.pos_size,
                               float(cfg.cls_token), cfg.rope_theta)
        x, hidden = common.run_blocks(self.blocks, self.embed(pixels), sin, cos)
        last = x if self.final_norm is None else self.final_norm(x)
        feats, chosen = features.layer_features(hidden, last, cfg.layer, cfg.num_prefix, grid)
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last,
                       "prefix_tokens": chosen[:, :cfg.num_prefix]}


def _config(variant: str, image_size: int | None, layer: int | None, dtype: str) -> PEConfig:
    return common.variant_config("pe", PEConfig, VARIANTS, variant, image_size=image_size,
                                 layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> PerceptionEncoder:
    """A randomly initialised PE tower (tests, ``:runlocal``)."""
    return common.random_init(PerceptionEncoder, _config(variant, image_size, layer, dtype),
                              rngs=rngs)


# --- checkpoint layouts -------------------------------------------------------------------------

def timm_layout(cfg: PEConfig, prefix: str = "") -> dict:
    """timm ``Eva`` names (hub ``timm/vit_pe_*``); its attention pool and head are not read."""
    out = vit.embed_layout(cfg, {"patch": prefix + "patch_embed.proj", "pos": prefix + "pos_embed",
                                 "cls": prefix + "cls_token", "pre_norm": prefix + "norm_pre",
                                 "final_norm": prefix + "norm"})
    for i in range(cfg.depth):
        b = f"{prefix}blocks.{i}."
        out |= vit.block_layout(cfg, i, {
            "norm1": b + "norm1", "norm2": b + "norm2", "qkv": b + "attn.qkv",
            "out": b + "attn.proj", "fc1": b + "mlp.fc1", "fc2": b + "mlp.fc2",
            "ls1": b + "gamma_1", "ls2": b + "gamma_2"}, fused_qkv=True)
    return out


def original_layout(cfg: PEConfig, prefix: str = "") -> dict:
    """The authors' names (``facebook/PE-*``, perception_models ``VisionTransformer``): those of
    open_clip's ``VisionTransformer`` (fused ``in_proj_weight``, a 2-D ``positional_embedding``, a
    1-D ``class_embedding``)."""
    return dfn_clip.open_clip_layout(cfg, prefix)


_LAYOUTS = {  # probe tensor -> (prefixes, layout)
    "patch_embed.proj.weight": (("", "visual.trunk.", "trunk.", "model."), timm_layout),
    "conv1.weight": (("visual.", "", "module.visual.", "module."), original_layout),
}


def _detect(reader) -> tuple[str, Callable[[PEConfig, str], dict]]:
    for probe, (prefixes, make) in _LAYOUTS.items():
        pre = next((p for p in prefixes if p + probe in reader), None)
        if pre is not None:
            return pre, make
    src = getattr(reader, "source", "checkpoint")
    raise weights.CheckpointError(
        f"{src}: not a Perception Encoder checkpoint (expected timm 'patch_embed.proj.weight' or "
        f"perception_models 'conv1.weight'; first tensors: {', '.join(list(reader)[:5])})")


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> PerceptionEncoder:
    """From a timm ``vit_pe_*`` state dict or a perception_models ``PE-*.pt``, as ``variant``
    (the checkpoint's shapes are checked against it)."""
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    reader = weights.open_checkpoint(checkpoint)
    prefix, make = _detect(reader)
    return layout.fill(common.abstract(PerceptionEncoder, cfg), make(cfg, prefix), reader)


def reference(src: str, px, config: PEConfig) -> np.ndarray:
    """timm ``Eva`` with the ``vit_pe_*`` switches, at any image size (``dynamic_img_size``);
    the authors' layout goes through timm's own converter (``checkpoint_filter_fn``)."""
    import functools

    import torch
    from timm.models.eva import Eva, checkpoint_filter_fn

    from cambrian.models.encoders import reference as ref

    c = config
    model = Eva(img_size=c.pos_size * c.patch, patch_size=c.patch, embed_dim=c.width,
                depth=c.depth, num_heads=c.heads, mlp_ratio=c.mlp_dim / c.width, attn_type="rope",
                class_token=c.cls_token, use_rot_pos_emb=True, ref_feat_shape=(c.pos_size,) * 2,
                rope_grid_offset=float(c.cls_token), rope_grid_indexing="xy",
                use_pre_transformer_norm=True, use_post_transformer_norm=c.final_norm,
                use_fc_norm=False, init_values=0.1 if c.layerscale else None, global_pool="",
                num_classes=0, dynamic_img_size=True,
                norm_layer=functools.partial(torch.nn.LayerNorm, eps=c.ln_eps)).eval()
    reader = weights.open_checkpoint(src)
    prefix, make = _detect(reader)
    if make is original_layout:
        sd = checkpoint_filter_fn(ref.tensors(reader, "", lambda k: True), model)
    else:
        sd = ref.tensors(reader, prefix, lambda k: True)
    ref.load_state(model, sd, src)
    x, rope = model._pos_embed(model.patch_embed(px))
    hidden = [model.norm_pre(x)]
    for blk in model.blocks:
        hidden.append(blk(hidden[-1], rope=rope))
    return ref.to_grid(ref.pick(hidden, model.norm(hidden[-1]), c), c.num_prefix, px, c.patch)


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """perception_models ``get_image_transform``: squash to the resolution, bilinear ("we used
    bilinear during training"), mean = std = 0.5; Cambrian's pad colour is that mean."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=HALF, std=HALF,
                          resize="squash", interpolation="bilinear")
