"""Convert a public encoder checkpoint once into a ready-to-load Flax directory.

    python -m cambrian.models.encoders.convert --family dinov2 --src ckpts/dinov2-large \\
        --dst ckpts/flax/dinov2-large [--variant L/14] [--verify photo.jpg]

The converted directory holds ``encoder.json`` (family, module, config) and ``params.safetensors``
(one tensor per parameter path, e.g. ``blocks.3.attn.q.kernel``). Every family's ``load()`` calls
``restore`` first, so ``encoders.load(family, dst)`` accepts a converted directory as well as the
native checkpoint. ``--verify IMAGE`` runs the family's PyTorch reference (when the reference
library is installed) on the image and prints the max abs feature error.

Any family can use this: its encoder must be built as ``Module(config, rngs=...)`` from a
dataclass ``config`` (with ``image_size`` / ``layer`` fields) kept as ``module.config``, and its
``load()`` must call ``restore`` first. ``fill`` / ``find_prefix`` are the shared streaming loader.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights

MARKER = "encoder.json"
PARAMS = "params.safetensors"


# --- filling a module from a checkpoint, tensor by tensor ---------------------------------------
# A layout maps each parameter path of a module ("blocks.3.attn.q.kernel") to (checkpoint tensor
# name, its shape in the checkpoint, transform to our shape). ``fill`` streams the tensors into an
# abstract (never randomly initialised) module.

Entry = tuple[str, tuple[int, ...], Callable[[np.ndarray], np.ndarray] | None]


def param_paths(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    """``"blocks.0.attn.q.kernel" -> shape`` for every parameter of ``module``."""
    return {".".join(map(str, path)): tuple(v.shape)
            for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def fill(module: nnx.Module, layout: Mapping[str, Entry], reader: Mapping[str, np.ndarray],
         put: Callable[[np.ndarray], jax.Array] | None = None) -> nnx.Module:
    """Returns ``module`` with every parameter read from ``reader`` as ``layout`` says.

    Each tensor is checked (name, shape) by ``weights.take``, transformed and moved to a jax
    array before the next is read, so the checkpoint is never held twice in host memory.
    """
    put = put or (lambda x: jnp.asarray(x, dtype=jnp.float32))
    expected = param_paths(module)
    missing = sorted(set(expected) - set(layout))
    if missing:  # a bug in a layout, not in the checkpoint
        raise RuntimeError(f"checkpoint layout has no entry for parameters {missing}")
    graphdef, state = nnx.split(module)
    flat = dict(nnx.to_flat_state(state))
    cache: tuple[str, np.ndarray] | None = None
    for path, var in flat.items():
        key = ".".join(map(str, path))
        if key not in expected:
            continue
        name, src_shape, transform = layout[key]
        if cache is None or cache[0] != name:  # fused qkv tensors are read once for q, k and v
            cache = (name, weights.take(reader, name, src_shape))
        x = cache[1] if transform is None else transform(cache[1])
        if tuple(x.shape) != expected[key]:
            raise weights.CheckpointError(
                f"{getattr(reader, 'source', 'checkpoint')}: tensor {name!r} converts to shape "
                f"{tuple(x.shape)} for {key}, expected {expected[key]}")
        var.set_value(put(np.ascontiguousarray(x)))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def find_prefix(reader: Mapping[str, np.ndarray], probe: str, prefixes: Iterable[str]) -> str:
    """The first of ``prefixes`` under which ``probe`` exists (state dicts nest models
    variously)."""
    prefixes = tuple(prefixes)
    for pre in prefixes:
        if pre + probe in reader:
            return pre
    src = getattr(reader, "source", "checkpoint")
    some = ", ".join(list(reader)[:5])
    raise weights.CheckpointError(
        f"{src}: tensor {probe!r} not found under any of the prefixes {list(prefixes)} "
        f"(first tensors in the file: {some}); is this checkpoint of the right family?")


def is_converted(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, MARKER))


def _import(ref: str):
    mod, name = ref.split(":")
    return getattr(importlib.import_module(mod), name)


def save(encoder: nnx.Module, dst: str, *, family: str, variant: str | None = None) -> None:
    """Writes ``encoder`` (a module built from a ``config`` dataclass) to ``dst``."""
    from safetensors.numpy import save_file

    cfg = getattr(encoder, "config", None)
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{family}: {type(encoder).__name__} has no `config` dataclass, so it "
                        "cannot be rebuilt from a converted directory; load its native checkpoint")
    os.makedirs(dst, exist_ok=True)
    tensors = {".".join(map(str, path)): np.asarray(v.get_value())
               for path, v in nnx.to_flat_state(nnx.state(encoder, nnx.Param))}
    tmp = os.path.join(dst, PARAMS + ".tmp")
    save_file(tensors, tmp)
    os.replace(tmp, os.path.join(dst, PARAMS))
    meta = {"family": family, "variant": variant,
            "module": f"{type(encoder).__module__}:{type(encoder).__qualname__}",
            "config_class": f"{type(cfg).__module__}:{type(cfg).__qualname__}",
            "config": dataclasses.asdict(cfg)}
    with open(os.path.join(dst, MARKER), "w") as f:
        json.dump(meta, f, indent=1)


def restore(path: str, family: str, *, image_size: int | None = None,
            layer: int | None = None) -> nnx.Module | None:
    """The encoder stored in converted directory ``path``; None when ``path`` is not one.

    ``image_size`` / ``layer`` override the stored ones (position embeddings are kept at their
    native grid, so a new size is resampled exactly as the reference does it).
    """
    if not is_converted(os.fspath(path)):
        return None
    with open(os.path.join(path, MARKER)) as f:
        meta = json.load(f)
    if meta["family"] != family:
        raise weights.CheckpointError(
            f"{path}: converted for encoder family {meta['family']!r}, but loaded as {family!r}; "
            f"load it with family={meta['family']!r}")
    cfg = _import(meta["config_class"])(**meta["config"])
    cfg = dataclasses.replace(cfg, **{k: v for k, v in (("image_size", image_size),
                                                        ("layer", layer)) if v is not None})
    cls = _import(meta["module"])
    module = nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0)))
    layout = {k: (k, shape, None) for k, shape in param_paths(module).items()}
    return fill(module, layout, weights.open_checkpoint(os.path.join(path, PARAMS)))


def main(argv: list[str] | None = None) -> int:
    from cambrian.models import encoders

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", required=True, choices=encoders.FAMILIES)
    ap.add_argument("--src", required=True, help="native checkpoint (file or directory)")
    ap.add_argument("--dst", required=True, help="output directory")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--verify", default=None, metavar="IMAGE",
                    help="compare against the PyTorch reference on this image")
    args = ap.parse_args(argv)
    enc = encoders.load(args.family, args.src, variant=args.variant, image_size=args.image_size)
    save(enc, args.dst, family=args.family, variant=args.variant)
    n = sum(int(np.prod(s)) for s in _param_shapes(enc))
    print(f"converted {args.family} {args.src} -> {args.dst} ({n / 1e6:.1f}M parameters)")
    if args.verify:
        err = verify(args.family, args.src, args.dst, args.verify, variant=args.variant,
                     image_size=args.image_size)
        print(f"verify {args.verify}: max abs feature error vs reference = {err:.3e}")
    return 0


def _param_shapes(module: nnx.Module):
    return [v.shape for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param))]


if __name__ == "__main__":
    sys.exit(main())


# --- --verify: the PyTorch reference on one image -------------------------------------------
# The reference is the checkpoint's own library: transformers when an HF config.json is present,
# otherwise timm (``patch_embed.proj.weight``) or open_clip (``conv1.weight``) built from the
# converted config.

def verify(family: str, src: str, dst: str, image_path: str, *, variant: str | None = None,
           image_size: int | None = None) -> float:
    """Max abs difference between the converted encoder and the reference on ``image_path``."""
    import jax.numpy as jnp
    import torch
    from PIL import Image

    from cambrian.models import encoders
    from cambrian.models.encoders import preprocess, vit

    enc = encoders.load(family, dst, image_size=image_size)
    cfg = enc.config
    spec = encoders.preprocessing(family, variant).with_size(cfg.image_size)
    x = preprocess.apply(np.asarray(Image.open(image_path).convert("RGB")), spec)[None]
    ours = np.asarray(enc(jnp.asarray(x))[0])
    px = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    if vit.hf_config(src) is not None:
        tokens = _hf_reference(src, px, cfg)
    else:
        reader = weights.open_checkpoint(src)
        pre = next((p for p in ("", "visual.trunk.", "trunk.", "module.base_encoder.",
                                "base_encoder.", "module.", "model.")
                    if p + "patch_embed.proj.weight" in reader), None)
        if pre is not None:
            tokens = _timm_reference(reader, pre, px, cfg)
        else:
            tokens = _open_clip_reference(reader, find_prefix(reader, "conv1.weight",
                                                                  ("visual.", "")), px, cfg)
    want = tokens[:, cfg.num_prefix:].reshape(ours.shape)
    return float(np.abs(ours - want).max())


def _pick(hidden, last, cfg):
    out = last if cfg.layer is None else hidden[cfg.layer]
    return out.detach().float().numpy()


def _hf_reference(src, px, cfg):
    import torch
    import transformers

    conf = transformers.AutoConfig.from_pretrained(src)
    extra = {"mask_ratio": 0.0} if conf.model_type == "vit_mae" else {}
    model = transformers.AutoModel.from_pretrained(src, **extra).eval()
    model = getattr(model, "vision_model", model)
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
    with torch.no_grad():
        out = model(pixel_values=px, output_hidden_states=True, **kw)
    return _pick(out.hidden_states, out.last_hidden_state, cfg)


def _timm_reference(reader, pre, px, cfg):
    import timm.models.vision_transformer as tv
    import torch

    act = {"gelu": "gelu", "gelu_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}[cfg.act]
    model = tv.VisionTransformer(
        img_size=cfg.pos_size * cfg.patch, patch_size=cfg.patch, embed_dim=cfg.width,
        depth=cfg.depth, num_heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
        qkv_bias=cfg.qkv_bias, class_token=cfg.cls_token, no_embed_class=not cfg.pos_cls,
        reg_tokens=cfg.registers, pre_norm=cfg.pre_norm, init_values=1.0 if cfg.layerscale
        else None, global_pool="", num_classes=0, act_layer=act, dynamic_img_size=True,
        norm_layer=functools.partial(torch.nn.LayerNorm, eps=cfg.ln_eps)).eval()
    wanted = model.state_dict()
    sd = {k[len(pre):]: torch.from_numpy(np.array(reader[k])) for k in reader
          if k.startswith(pre) and k[len(pre):] in wanted}
    model.load_state_dict(sd)
    with torch.no_grad():
        x = model.norm_pre(model._pos_embed(model.patch_embed(px)))
        hidden = [x]
        for blk in model.blocks:
            hidden.append(blk(hidden[-1]))
        return _pick(hidden, model.norm(hidden[-1]), cfg)


def _open_clip_reference(reader, pre, px, cfg):
    import open_clip
    import torch
    from open_clip.transformer import VisionTransformer

    proj = reader[pre + "proj"].shape[1] if pre + "proj" in reader else cfg.width
    act = open_clip.model.QuickGELU if cfg.act == "quick_gelu" else torch.nn.GELU
    model = VisionTransformer(image_size=px.shape[-1], patch_size=cfg.patch, width=cfg.width,
                              layers=cfg.depth, heads=cfg.heads, mlp_ratio=cfg.mlp_dim / cfg.width,
                              output_dim=proj, act_layer=act, output_tokens=True).eval()
    wanted = model.state_dict()
    sd = {"visual." + k[len(pre):]: torch.from_numpy(np.array(reader[k])) for k in reader
          if k.startswith(pre) and k[len(pre):] in wanted}

    class _Holder:  # resize_pos_embed expects a CLIP model with .visual
        visual = model
    open_clip.model.resize_pos_embed(sd, _Holder)
    model.load_state_dict({k[len("visual."):]: v for k, v in sd.items()})
    hidden = []
    hooks = [model.ln_pre.register_forward_hook(lambda m, i, o: hidden.append(o))]
    hooks += [b.register_forward_hook(lambda m, i, o: hidden.append(o))
              for b in model.transformer.resblocks]
    with torch.no_grad():
        _, tokens = model(px)
    for h in hooks:
        h.remove()
    last = torch.cat([hidden[-1][:, :1], tokens], dim=1)  # tokens are after ln_post
    return _pick(hidden, last, cfg)
