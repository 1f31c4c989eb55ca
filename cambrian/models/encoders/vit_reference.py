"""PyTorch reference features of the ViT families (``vit.reference``; needs torch).

The reference is the checkpoint's own library, built from the checkpoint and the loaded config:
transformers when an HF ``config.json`` is present, otherwise timm (``patch_embed.proj.weight``
under a known prefix) or open_clip (``conv1.weight``). Nothing imports this module at load time.
"""

from __future__ import annotations

import functools

import numpy as np

from cambrian.models import weights
from cambrian.models.encoders import layout, vit
from cambrian.models.encoders import reference as ref

TIMM_PREFIXES = ("", "visual.trunk.", "trunk.", "module.base_encoder.", "base_encoder.", "module.",
                 "model.")


def features(src: str, px, config: vit.ViTConfig) -> np.ndarray:
    """float32[B, h, w, C] features of ``config.layer`` for NCHW ``px`` (torch, no grad)."""
    if vit.hf_config(src) is not None:
        tokens = hf_tokens(src, px, config)
    else:
        reader = weights.open_checkpoint(src)
        pre = next((p for p in TIMM_PREFIXES if p + "patch_embed.proj.weight" in reader), None)
        if pre is not None:
            tokens = timm_tokens(reader, pre, px, config)
        else:
            pre = layout.find_prefix(reader, "conv1.weight", ("visual.", ""))
            tokens = open_clip_tokens(reader, pre, px, config)
    return ref.to_grid(tokens, config.num_prefix, px, config.patch)


def hf_tokens(src: str, px, config: vit.ViTConfig):
    """Tokens of the HF model in ``src`` (CLIP, SigLIP / SigLIP2, DINOv2, I-JEPA, ViTMAE, DPT)."""
    import torch
    import transformers

    kind = transformers.AutoConfig.from_pretrained(src).model_type
    model = ref.hf_model(src, **({"mask_ratio": 0.0} if kind == "vit_mae" else {}))
    b, _, h, w = px.shape
    p = config.patch
    kw = {}
    if kind == "vit_mae":  # increasing noise keeps the patch order
        kw["noise"] = torch.arange((h // p) * (w // p), dtype=torch.float32)[None].repeat(b, 1)
    if "siglip2" in kind:  # patches flattened (row, column, channel), with their grid shape
        px = px.reshape(b, 3, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        px = px.reshape(b, (h // p) * (w // p), -1)
        kw |= {"pixel_attention_mask": torch.ones(px.shape[:2], dtype=torch.long),
               "spatial_shapes": torch.tensor([[h // p, w // p]] * b)}
    elif kind not in ("dinov2", "dinov2_with_registers", "dpt"):
        kw["interpolate_pos_encoding"] = True
    out = model(pixel_values=px, output_hidden_states=True, **kw)
    return ref.pick(out.hidden_states, out.last_hidden_state, config)


def timm_tokens(reader, pre: str, px, config: vit.ViTConfig):
    """Tokens of a timm ``VisionTransformer`` built from ``config``, weights under ``pre``."""
    import timm.models.vision_transformer as tv
    import torch

    c = config
    model = tv.VisionTransformer(
        img_size=c.pos_size * c.patch, patch_size=c.patch, embed_dim=c.width, depth=c.depth,
        num_heads=c.heads, mlp_ratio=c.mlp_dim / c.width, qkv_bias=c.qkv_bias,
        class_token=c.cls_token, no_embed_class=not c.pos_cls, reg_tokens=c.registers,
        pre_norm=c.pre_norm, init_values=1.0 if c.layerscale else None, global_pool="",
        num_classes=0, act_layer=c.act, dynamic_img_size=True,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=c.ln_eps)).eval()
    ref.load_state(model, ref.tensors(reader, pre, model.state_dict().__contains__),
                   getattr(reader, "source", "checkpoint"))
    return ref.timm_tokens(model, px, config)


def open_clip_tokens(reader, pre: str, px, config: vit.ViTConfig):
    """Tokens of an open_clip ``VisionTransformer`` built at the size of ``px``; its position
    table is resized by open_clip's own ``resize_pos_embed``, as open_clip loads it."""
    import open_clip
    import torch
    from open_clip.transformer import VisionTransformer

    c = config
    proj = reader[pre + "proj"].shape[1] if pre + "proj" in reader else c.width
    act = open_clip.model.QuickGELU if c.act == "quick_gelu" else torch.nn.GELU
    model = VisionTransformer(image_size=px.shape[-1], patch_size=c.patch, width=c.width,
                              layers=c.depth, heads=c.heads, mlp_ratio=c.mlp_dim / c.width,
                              output_dim=proj, act_layer=act, output_tokens=True).eval()
    sd = {"visual." + k: v for k, v in ref.tensors(reader, pre,
                                                   model.state_dict().__contains__).items()}

    class _Holder:  # resize_pos_embed expects a CLIP model with .visual
        visual = model
    open_clip.model.resize_pos_embed(sd, _Holder)
    model.load_state_dict({k[len("visual."):]: v for k, v in sd.items()})
    hidden = []
    hooks = [model.ln_pre.register_forward_hook(lambda m, i, o: hidden.append(o))]
    hooks += [b.register_forward_hook(lambda m, i, o: hidden.append(o))
              for b in model.transformer.resblocks]
    _, tokens = model(px)
    for h in hooks:
        h.remove()
    last = torch.cat([hidden[-1][:, :1], tokens], dim=1)  # tokens are after ln_post
    return ref.pick(hidden, last, config)
