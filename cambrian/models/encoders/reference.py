"""PyTorch reference features for ``convert --verify``.

The reference is the checkpoint's own library, built from the converted config and fed the native
checkpoint: transformers when an HF ``config.json`` is present, otherwise timm (ViT, ConvNeXt,
SAM, EVA-02, AIMv2 trunks) or open_clip (``conv1.weight``). Every function returns the features
Cambrian takes, float32[B, h, w, C], for NCHW pixels already normalised for the family. Needs
torch and the reference libraries (the ``dev`` extra); nothing imports this module at load time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from cambrian.models import weights
from cambrian.models.encoders import convert, vit


def features(family: str, src: str, px, cfg) -> np.ndarray:
    """The reference features of ``family`` for ``px`` float32[B, 3, H, W] (torch, no grad)."""
    fn = _FAMILIES.get(family) or (_vit if isinstance(cfg, vit.ViTConfig) else None)
    if fn is None:
        raise NotImplementedError(f"{family}: no PyTorch reference is wired up for --verify")
    return fn(src, px, cfg)


def _numpy(t) -> np.ndarray:
    return t.detach().float().numpy()


def _pick(hidden: list, last, cfg):
    """``hidden_states[cfg.layer]`` (HF indexing), or ``last`` for ``layer=None``."""
    return last if cfg.layer is None else hidden[cfg.layer]


def _grid(tokens, num_prefix: int, px, patch: int) -> np.ndarray:
    """float[B, P + h*w, C] -> float32[B, h, w, C] for the patch grid of ``px``."""
    b, _, h, w = px.shape
    return _numpy(tokens[:, num_prefix:]).reshape(b, h // patch, w // patch, -1)


def _tensors(reader, prefix: str, keep: Callable[[str], bool],
             rename: Callable[[str], str] = lambda k: k) -> dict:
    """torch tensors of the names under ``prefix`` (prefix removed, then ``rename``d) that
    ``keep`` accepts; other tensors are never read."""
    import torch

    out = {}
    for k in reader:
        if k.startswith(prefix) and keep(name := rename(k[len(prefix):])):
            out[name] = torch.from_numpy(np.array(reader[k]))
    return out


def _load(model, state_dict: dict, src: str, optional: tuple[str, ...] = ("head.",)):
    """Loads ``state_dict`` into ``model``; every model tensor outside ``optional`` (the heads
    Cambrian does not use) must be in it."""
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state_dict and not k.startswith(optional)]
    if missing:
        raise weights.CheckpointError(f"{src}: the reference model needs tensors the checkpoint "
                                      f"lacks: {', '.join(missing[:5])}")
    model.load_state_dict({k: v for k, v in state_dict.items() if k in wanted}, strict=False)
    return model


def _timm_tokens(model, px, cfg):
    """Tokens of a timm ``VisionTransformer`` at ``cfg.layer`` (None: after the final norm)."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(px)))
    hidden = [x]
    for blk in model.blocks:
        hidden.append(blk(hidden[-1]))
    return _pick(hidden, model.norm(hidden[-1]), cfg)


def _hf_model(src: str, **kw):
    import transformers

    model = transformers.AutoModel.from_pretrained(src, **kw).eval()
    return getattr(model, "vision_model", model)


# --- ViT families -------------------------------------------------------------------------------

def _vit(src: str, px, cfg) -> np.ndarray:
    if vit.hf_config(src) is not None:
        tokens = _vit_hf(src, px, cfg)
    else:
        reader = weights.open_checkpoint(src)
        pre = next((p for p in ("", "visual.trunk.", "trunk.", "module.base_encoder.",
                                "base_encoder.", "module.", "model.")
                    if p + "patch_embed.proj.weight" in reader), None)
        if pre is not None:
            tokens = _vit_timm(reader, pre, px, cfg)
        else:
            pre = convert.find_prefix(reader, "conv1.weight", ("visual.", ""))
            tokens = _vit_open_clip(reader, pre, px, cfg)
    return _grid(tokens, cfg.num_prefix, px, cfg.patch)


def _vit_hf(src, px, cfg):
    import torch
    import transformers

    conf = transformers.AutoConfig.from_pretrained(src)
    model = _hf_model(src, **({"mask_ratio": 0.0} if conf.model_type == "vit_mae" else {}))
    b, _, h, w = px.shape
    kw = {}
    if conf.model_type == "vit_mae":  # increasing noise keeps the patch order
        n = (h // cfg.patch) * (w // cfg.patch)
        kw["noise"] = torch.arange(n, dtype=torch.float32)[None].repeat(b, 1)
    if "siglip2" in conf.model_type:
        p = cfg.patch
        px = px.reshape(b, 3, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        px = px.reshape(b, (h // p) * (w // p), -1)
        kw |= {"pixel_attention_mask": torch.ones(px.shape[:2], dtype=torch.long),
               "spatial_shapes": torch.tensor([[h // p, w // p]] * b)}
    elif conf.model_type not in ("dinov2", "dinov2_with_registers", "dpt"):
        kw["interpolate_pos_encoding"] = True
    out = model(pixel_values=px, output_hidden_states=True, **kw)
    return _pick(out.hidden_states, out.last_hidden_state, cfg)


def _vit_timm(reader, pre, px, cfg):
    import timm.models.vision_transformer as tv
    import torch

    model = tv.VisionTransformer(
        img_size=cfg.pos_size * cfg.patch, patch_size=cfg.patch, embed_dim=cfg.width,
        depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
        qkv_bias=cfg.qkv_bias, class_token=cfg.cls_token, no_embed_class=not cfg.pos_cls,
        reg_tokens=cfg.registers, pre_norm=cfg.pre_norm, init_values=1.0 if cfg.layerscale
        else None, global_pool="", num_classes=0, act_layer=cfg.act, dynamic_img_size=True,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=cfg.ln_eps)).eval()
    _load(model, _tensors(reader, pre, model.state_dict().__contains__),
          getattr(reader, "source", "checkpoint"))
    return _timm_tokens(model, px, cfg)


def _vit_open_clip(reader, pre, px, cfg):
    import open_clip
    import torch
    from open_clip.transformer import VisionTransformer

    proj = reader[pre + "proj"].shape[1] if pre + "proj" in reader else cfg.width
    act = open_clip.model.QuickGELU if cfg.act == "quick_gelu" else torch.nn.GELU
    model = VisionTransformer(image_size=px.shape[-1], patch_size=cfg.patch, width=cfg.width,
                              layers=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
                              output_dim=proj, act_layer=act, output_tokens=True).eval()
    sd = {"visual." + k: v for k, v in _tensors(reader, pre,
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
    return _pick(hidden, last, cfg)


# --- other families -----------------------------------------------------------------------------

def _convnext(src: str, px, cfg) -> np.ndarray:
    """timm ConvNeXt trunk: the used stage maps, bilinear to the output grid, concatenated."""
    import torch
    from timm.models.convnext import ConvNeXt

    reader = weights.open_checkpoint(src)
    pre = convert.find_prefix(reader, "stem.0.weight", ("visual.trunk.", "trunk.", ""))
    model = ConvNeXt(depths=cfg.depths, dims=cfg.dims, norm_eps=cfg.norm_eps,
                     num_classes=0).eval()
    _load(model, _tensors(reader, pre, model.state_dict().__contains__), src)
    x, maps = model.stem(px), []
    for stage in model.stages:
        x = stage(x)
        maps.append(x)
    used = [maps[s] for s in cfg.used_stages]
    size = tuple(used[-1].shape[-2:]) if cfg.num_tokens is None else cfg.grid
    used = [m if tuple(m.shape[-2:]) == size else torch.nn.functional.interpolate(
        m, size=size, mode="bilinear", align_corners=False) for m in used]
    return _numpy(torch.cat(used, dim=1).permute(0, 2, 3, 1))


def _sam(src: str, px, cfg) -> np.ndarray:
    """HF ``SamModel`` (its checkpoint size only) or timm ``samvit`` (original / timm names)."""
    import torch

    if vit.hf_config(src) is not None:
        model = _hf_model(src)
        hidden = model.vision_encoder(px, output_hidden_states=True).hidden_states
        return _numpy(_pick(hidden, hidden[-1], cfg))
    from timm.layers import resample_abs_pos_embed_nhwc
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    reader = weights.open_checkpoint(src)
    pre = convert.find_prefix(reader, "patch_embed.proj.weight", ("image_encoder.", ""))
    model = VisionTransformerSAM(
        img_size=cfg.pos_size * cfg.patch, patch_size=cfg.patch, embed_dim=cfg.width,
        depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio,
        global_attn_indexes=cfg.global_layers, window_size=cfg.window, use_rel_pos=True,
        neck_chans=0, num_classes=0,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=cfg.ln_eps)).eval()
    # the original layout names the MLP lin1/lin2 (timm's checkpoint_filter_fn renames them)
    _load(model, _tensors(reader, pre, model.state_dict().__contains__,
                          lambda k: k.replace("mlp.lin", "mlp.fc")), src, ("neck.", "head."))
    x = model.patch_embed(px)
    hidden = [x + resample_abs_pos_embed_nhwc(model.pos_embed, x.shape[1:3])]
    hidden += [t.permute(0, 2, 3, 1) for t in model.forward_intermediates(
        px, indices=list(range(cfg.depth)), intermediates_only=True)]
    return _numpy(_pick(hidden, hidden[-1], cfg))


def _eva_clip(src: str, px, cfg) -> np.ndarray:
    """timm ``Eva`` built at the image size; ``checkpoint_filter_fn`` resamples the positions."""
    import torch
    from timm.models.eva import Eva, checkpoint_filter_fn

    reader = weights.open_checkpoint(src)
    pre = convert.find_prefix(reader, "blocks.0.attn.q_proj.weight",
                              ("visual.trunk.", "trunk.", ""))
    model = Eva(img_size=cfg.image_size, patch_size=cfg.patch, embed_dim=cfg.width,
                depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
                qkv_fused=False, swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True,
                use_rot_pos_emb=True, ref_feat_shape=(cfg.rope_ref, cfg.rope_ref),
                global_pool="token", num_classes=0,
                norm_layer=functools.partial(torch.nn.LayerNorm, eps=cfg.ln_eps)).eval()
    # open_clip keeps its projection in the trunk head, which Cambrian does not use
    sd = _tensors(reader, pre, lambda k: not k.startswith("head."))
    _load(model, checkpoint_filter_fn(sd, model), src)
    x, rope = model._pos_embed(model.patch_embed(px))
    hidden = [model.norm_pre(x)]
    for blk in model.blocks:
        hidden.append(blk(hidden[-1], rope=rope))
    return _grid(_pick(hidden, model.norm(hidden[-1]), cfg), 1, px, cfg.patch)


def _aimv2(src: str, px, cfg) -> np.ndarray:
    """HF ``Aimv2VisionModel``, or timm's AIMv2 ``VisionTransformer`` (timm / Apple names)."""
    if vit.hf_config(src) is not None:
        out = _hf_model(src)(px, output_hidden_states=True)
        return _grid(_pick(out.hidden_states, out.last_hidden_state, cfg), 0, px, cfg.patch)
    if cfg.pos_size is None:
        raise NotImplementedError("aimv2: sin-cos (native) checkpoints without an HF config.json "
                                  "have no timm reference")
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer, _convert_aimv2

    norm = functools.partial(RmsNorm, eps=cfg.rms_eps)
    model = VisionTransformer(
        img_size=cfg.pos_size * cfg.patch, patch_size=cfg.patch, embed_dim=cfg.width,
        depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
        class_token=False, fc_norm=False, global_pool="avg", qkv_bias=cfg.qkv_bias,
        proj_bias=cfg.qkv_bias, act_layer="silu", norm_layer=norm, embed_norm_layer=norm,
        mlp_layer=SwiGLU, num_classes=0, dynamic_img_size=True).eval()
    reader = weights.open_checkpoint(src)
    if "preprocessor.patchifier.proj.weight" in reader:  # Apple's names: timm's own converter
        sd = _convert_aimv2(_tensors(reader, "", lambda k: True), model)
    else:
        pre = convert.find_prefix(reader, "patch_embed.proj.weight", ("visual.trunk.", ""))
        sd = _tensors(reader, pre, model.state_dict().__contains__)
    _load(model, sd, src)
    return _grid(_timm_tokens(model, px, cfg), 0, px, cfg.patch)


_FAMILIES: dict[str, Callable] = {
    "convnext": _convnext, "sam": _sam, "eva_clip": _eva_clip, "aimv2": _aimv2,
}
