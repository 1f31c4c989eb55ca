"""C-RADIO (NVIDIA; RADIO-Amplified, arXiv:2412.07679) as transformers' ``RadioModel`` has it.

A plain ViT trunk (timm ``vit_{base,large,huge,giant}_patch16_224``: pre-norm blocks, GELU MLP, no
layer scale, no final norm) behind RADIO's "CPE" patch generator: a bias-free Linear on
channel-major patches, a learned position table for the largest input (``max_img_size`` 2048 ->
128x128), and prefix tokens -- one summary (CLS) token per teacher plus registers -- that get no
position. Cambrian takes the spatial ``features``: ``last_hidden_state`` with every prefix token
dropped (summary and registers; their number is read from the checkpoint). ``layer=k`` is
``hidden_states[k]`` (0 = embeddings, i = after block i; the model has no final norm).

Resolution rules (transformers ``RadioPatchEmbeddings``, RADIO ``ViTPatchGenerator``): both sides
must be multiples of the patch size (RADIO's ``min_resolution_step``); the position table is
resized bilinearly (no antialias) to the square of the larger grid side and its top-left h x w
window is used, so non-square images keep the square's aspect. Preferred resolution 512 for
C-RADIOv3 / v4 (768 for v2; ``radio/common.py`` ``RESOURCE_MAP``).

Normalisation: the model's input conditioner maps [0, 1] pixels with the OpenAI CLIP mean / std
(stored in the checkpoint, checked on load); the encoder here takes already-normalised pixels like
every family. The original wrapper's optional feature normaliser (PHI-S) is not applied, as in the
transformers port.

Weights load from a transformers ``RadioModel`` directory (``save_pretrained``; transformers
documents ``nvidia/C-RADIOv4-H`` with it) or the published remote-code layout
(``nvidia/C-RADIOv3-*``: ``radio_model.model.*`` with fused ``attn.qkv``, which transformers
converts on load).
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common, layout, vit
from cambrian.models.encoders.preprocess import CLIP_MEAN, CLIP_STD, PreprocessSpec

Array = jax.Array

_BASE = dict(patch=16, pos_size=128, image_size=512, ln_eps=1e-6, cls_token=True, pos_cls=False,
             final_norm=False, patch_bias=False, pos_interp="bilinear", registers=7)
VARIANTS = {
    "B/16": _BASE | vit.SIZES["B"],
    "L/16": _BASE | vit.SIZES["L"],
    "H/16": _BASE | vit.SIZES["H"],
    "g/16": _BASE | dict(width=1536, depth=40, heads=24, mlp_dim=6144),
    "runlocal": _BASE | vit.TINY | dict(patch=8, pos_size=16, image_size=48, registers=3),
}
DEFAULT_VARIANT = "H/16"
DEFAULT_LAYER = None  # the last block's output (the model has no final norm)


@dataclasses.dataclass(frozen=True)
class RadioConfig(vit.ViTConfig):
    """``vit.ViTConfig`` of a C-RADIO trunk: ``pos_size`` is the side of the CPE table
    (``max_img_size // patch``); the prefix is one CLS row plus ``registers`` rows of RADIO's
    ``cls_register_token`` (which holds all summary tokens and registers)."""

    def check(self) -> RadioConfig:
        if self.image_size % self.patch:
            raise ValueError(f"RadioConfig: image_size {self.image_size} is not a multiple of the "
                             f"patch size {self.patch} (RADIO's min_resolution_step); use "
                             f"{self.image_size // self.patch * self.patch}")
        super().check()
        return self


class Radio(vit.VisionTransformer):
    """``feats, out = enc(pixels)``: float32[B, H, W, 3] -> float32[B, H/16, W/16, C] (H and W
    multiples of the patch). ``out`` as ``vit.VisionTransformer`` (``prefix_tokens``: the summary
    tokens and registers of the chosen layer)."""

    def embed(self, pixels: Array) -> Array:
        """float32[B, H, W, 3] -> float[B, P + h*w, C]: CPE positions on the patches, then the
        prefix rows (no positions)."""
        cfg = self.config
        b, hh, ww, _ = pixels.shape
        if hh % cfg.patch or ww % cfg.patch:
            raise ValueError(f"radio: input {hh}x{ww} is not a multiple of the patch size "
                             f"{cfg.patch}; resize to multiples of {cfg.patch}")
        gh, gw = hh // cfg.patch, ww // cfg.patch
        x = self.embed_patches(pixels)
        s, m = cfg.pos_size, max(gh, gw)
        table = self.pos_embed[...].reshape(s, s, -1)
        pos = common.resample_grid(table, (m, m), cfg.pos_interp)[:gh, :gw]
        x = (x + pos.astype(x.dtype)).reshape(b, gh * gw, -1)
        rows = [self.cls_token[...][None]]
        if self.registers is not None:
            rows.append(self.registers[...])
        prefix = jnp.concatenate(rows, axis=0).astype(x.dtype)
        prefix = jnp.broadcast_to(prefix, (b, *prefix.shape))
        return jnp.concatenate([prefix, x], axis=1)


def _config(variant: str, image_size: int | None, layer: int | None, dtype: str,
            **overrides) -> RadioConfig:
    return common.variant_config("radio", RadioConfig, VARIANTS, variant, image_size=image_size,
                                 layer=DEFAULT_LAYER if layer is None else layer, dtype=dtype,
                                 **overrides)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs, dtype: str = "float32") -> Radio:
    """A randomly initialised C-RADIO trunk (tests, ``:runlocal``)."""
    return common.random_init(Radio, _config(variant, image_size, layer, dtype), rngs=rngs)


# --- checkpoint layouts -------------------------------------------------------------------------

def _patch(c: int, p: int):
    """Linear weight [C, 3*p*p] over (channel, row, column)-flattened patches -> [p, p, 3, C]."""
    return lambda w: w.reshape(c, 3, p, p).transpose(2, 3, 1, 0)


def _embed(cfg: RadioConfig, patch: str, pos: str, prefix_rows: str) -> dict:
    c, n = cfg.width, cfg.num_prefix
    return {"patch_embed.kernel": (patch, (c, 3 * cfg.patch ** 2), _patch(c, cfg.patch)),
            "pos_embed": (pos, (1, cfg.pos_size ** 2, c), layout.t_squeeze),
            "cls_token": (prefix_rows, (n, c), lambda x: x[0]),
            "registers": (prefix_rows, (n, c), lambda x: x[1:])}


def hf_layout(cfg: RadioConfig, pre: str = "") -> dict:
    """transformers ``RadioModel`` names."""
    e = pre + "embeddings."
    out = _embed(cfg, e + "patch_projection.weight", e + "position_embedding",
                 e + "cls_register_token")
    for i in range(cfg.depth):
        b = f"{pre}encoder.layer.{i}."
        a = b + "attention."
        out |= vit.block_layout(cfg, i, {
            "norm1": b + "norm1", "norm2": b + "norm2", "q": a + "q_proj", "k": a + "k_proj",
            "v": a + "v_proj", "out": a + "o_proj", "fc1": b + "mlp.fc1", "fc2": b + "mlp.fc2"},
            fused_qkv=False)
    return out


def original_layout(cfg: RadioConfig, pre: str = "radio_model.") -> dict:
    """The published HF layout (RADIO's timm ViT with the CPE patch generator)."""
    g = pre + "model.patch_generator."
    out = _embed(cfg, g + "embedder.weight", g + "pos_embed", g + "cls_token.token")
    for i in range(cfg.depth):
        b = f"{pre}model.blocks.{i}."
        out |= vit.block_layout(cfg, i, {
            "norm1": b + "norm1", "norm2": b + "norm2", "qkv": b + "attn.qkv",
            "out": b + "attn.proj", "fc1": b + "mlp.fc1", "fc2": b + "mlp.fc2"}, fused_qkv=True)
    return out


# probe tensor -> (prefixes, layout, the prefix-token rows)
_LAYOUTS = {
    "embeddings.patch_projection.weight": (("", "model."), hf_layout,
                                           "embeddings.cls_register_token"),
    "model.patch_generator.embedder.weight": (("radio_model.", ""), original_layout,
                                              "model.patch_generator.cls_token.token"),
}


def _detect(reader):
    """(prefix, layout function, name of the prefix-token tensor) of the checkpoint."""
    for probe, (prefixes, make, rows) in _LAYOUTS.items():
        pre = next((p for p in prefixes if p + probe in reader), None)
        if pre is not None:
            return pre, make, pre + rows
    src = getattr(reader, "source", "checkpoint")
    raise weights.CheckpointError(
        f"{src}: not a C-RADIO checkpoint (expected transformers 'embeddings.patch_projection."
        f"weight' or RADIO 'radio_model.model.patch_generator.embedder.weight'; first tensors: "
        f"{', '.join(list(reader)[:5])})")


def _unsupported(reader, src: str) -> None:
    """Raises for checkpoint parts the transformers port (and so this module) does not model."""
    names = list(reader)
    for part, what in ((".mlp.norm.", "an MLP LayerNorm (timm '*_mlpnorm' trunk)"),
                       ("patch_generator.patch_normalizer.", "a patch LayerNorm"),
                       ("model.norm.", "a final norm (args.model_norm)"),
                       ("mlp.gate_proj.", "a SwiGLU MLP")):
        hit = next((n for n in names if part in n), None)
        if hit is not None:
            raise weights.CheckpointError(
                f"{src}: tensor {hit!r} means the tower has {what}, which transformers' RadioModel "
                "(the reference this family follows) does not have; this checkpoint is not "
                "supported")
    for n in names:  # C-RADIO has no layer scale: transformers keeps it at 1
        if "layer_scale" in n and not np.all(reader[n] == 1):
            raise weights.CheckpointError(
                f"{src}: tensor {n!r} is a layer scale other than 1; C-RADIO towers have none, "
                "so this checkpoint is not supported")


def _check_conditioner(reader, pre: str, src: str) -> None:
    """The checkpoint's input normalisation must be the one ``preprocessing`` applies."""
    for name, want in (("norm_mean", CLIP_MEAN), ("norm_std", CLIP_STD)):
        key = pre + name
        if key in reader and not np.allclose(np.ravel(reader[key]), want, atol=1e-6):
            raise weights.CheckpointError(
                f"{src}: {key} is {np.ravel(reader[key]).tolist()}, but radio.preprocessing "
                f"normalises with the OpenAI CLIP {name[5:]} {list(want)}; this checkpoint needs "
                "its own preprocessing spec")


def _hf_json(checkpoint: str) -> dict | None:
    """transformers' native ``RadioConfig`` beside the weights (None for the remote-code config
    of the published repos, which has no architecture fields)."""
    path = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    f = os.path.join(path, "config.json")
    if not os.path.exists(f):
        return None
    with open(f) as fh:
        hf = json.load(fh)
    return hf if "hidden_size" in hf else None


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32") -> Radio:
    """From a transformers ``RadioModel`` directory (its ``config.json`` defines the tower) or the
    published layout (``variant`` defines it; the prefix-token count is read from the weights)."""
    reader = weights.open_checkpoint(checkpoint)
    src = getattr(reader, "source", checkpoint)
    pre, make, rows = _detect(reader)
    _unsupported(reader, src)
    _check_conditioner(reader, pre + "input_conditioner.", src)
    n_prefix = int(weights.take(reader, rows).shape[0])
    hf = _hf_json(checkpoint)
    variant = variant or DEFAULT_VARIANT
    if hf is not None:
        if hf.get("use_swiglu_ffn"):
            raise weights.CheckpointError(f"{src}: SwiGLU C-RADIO towers are not supported")
        patch = hf.get("patch_size", 16)
        arch = dict(width=hf["hidden_size"], depth=hf["num_hidden_layers"],
                    heads=hf["num_attention_heads"], patch=patch,
                    mlp_dim=int(hf["hidden_size"] * hf.get("mlp_ratio", 4.0)),
                    pos_size=hf.get("max_img_size", 2048) // patch,
                    ln_eps=hf.get("layer_norm_eps", 1e-6))
    else:
        arch = {}
    cfg = _config(variant, image_size, layer, dtype, registers=n_prefix - 1, **arch)
    return layout.fill(common.abstract(Radio, cfg), make(cfg, pre), reader)


def reference(src: str, px, config: RadioConfig) -> np.ndarray:
    """transformers ``RadioModel`` with its input conditioner made external (``px`` is already
    normalised); a published-layout checkpoint is given a native config built from ``config``
    and read through transformers' own key conversion."""
    import tempfile

    import torch
    import transformers

    from cambrian.models.encoders import reference as ref

    with tempfile.TemporaryDirectory() as tmp:
        path = src if os.path.isdir(src) else os.path.dirname(src)
        if _hf_json(src) is None:
            # the weights (and shard index) under transformers' names, beside a native config
            links = ({src: "model.safetensors"} if not os.path.isdir(src) else
                     {os.path.join(src, f): f for f in os.listdir(src)
                      if f.endswith((".safetensors", ".safetensors.index.json"))})
            c = config
            reader = weights.open_checkpoint(src)
            idxs = next((reader[k] for k in reader if k.endswith("summary_idxs")), [0])
            transformers.RadioConfig(
                hidden_size=c.width, num_hidden_layers=c.depth, num_attention_heads=c.heads,
                mlp_ratio=c.mlp_dim / c.width, patch_size=c.patch, image_size=c.image_size,
                max_img_size=c.pos_size * c.patch, layer_norm_eps=c.ln_eps,
                # only the prefix length matters for the features
                num_cls_tokens=c.num_prefix, num_registers=0,
                summary_idxs=[int(i) for i in np.ravel(idxs)],
                ).save_pretrained(tmp)
            for f, name in links.items():
                os.symlink(os.path.abspath(f), os.path.join(tmp, name))
            path = tmp
        model = transformers.RadioModel.from_pretrained(path).eval()
        model.make_preprocessor_external()
        with torch.no_grad():
            out = model(px, output_hidden_states=True)
    tokens = ref.pick(out.hidden_states, out.last_hidden_state, config)
    return ref.to_grid(tokens, config.num_prefix, px, config.patch)


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """RADIO's input conditioner (OpenAI CLIP mean / std on [0, 1] pixels) at the variant's
    resolution; resized bilinearly as RADIO's examples do (``F.interpolate`` to the nearest
    supported resolution). Cambrian's pad colour is that mean."""
    return PreprocessSpec(image_size=VARIANTS[variant]["image_size"], mean=CLIP_MEAN,
                          std=CLIP_STD, resize="squash", interpolation="bilinear")
