"""Pieces the encoder tests share: torch-side inputs and randomisation, the jitted forward, the
jit / bf16 check, Cambrian's pad-to-square, a tiny HF-named DINOv2 checkpoint, open_clip models
around timm trunks and state dicts with a tensor dropped or replaced.

torch is imported inside the functions that need it, so tests without the reference libraries can
import this module.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from cambrian.models.encoders import dinov2, vit


@functools.partial(jax.jit, static_argnums=0,
                   compiler_options={"xla_backend_optimization_level": 0})
def _apply(graphdef, state, *args):
    return nnx.merge(graphdef, state)(*args)


def forward(module: nnx.Module, *args):
    """``module(*args)``, compiled: the tiny models run faster jitted than op by op. Compilations
    are cached per module structure and input shapes across tests; LLVM's optimiser would
    double their cost on CPU for programs this small."""
    graphdef, state = nnx.split(module)
    return _apply(graphdef, state, *args)


def randomize(model, seed: int):
    """Every parameter of a torch ``model`` ~ 0.3 N(0, 1), so that norms, positions and layer
    scales (timm inits them at 1e-6, which would hide the blocks) all move the output."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model.eval()


def torch_pixels(size: int, seed: int, batch: int = 2):
    """float32[batch, 3, size, size] standard normal (torch, NCHW)."""
    import torch

    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def nhwc(t) -> np.ndarray:
    """torch NCHW -> numpy NHWC."""
    return t.permute(0, 2, 3, 1).numpy()


def param_dtypes(module: nnx.Module) -> set:
    return {v.dtype for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def check_jit_and_bf16(make, x, shape: tuple[int, ...]) -> None:
    """``make(dtype)`` builds the encoder. It runs under ``jax.jit`` (split into graph and state)
    with features of ``shape``; built in bf16 (a frozen tower), its parameters are stored in bf16
    and its features stay float32 and close to the fp32 ones."""
    enc = make("float32")
    feats = forward(enc, x)[0]
    assert feats.shape == (x.shape[0], *enc.grid, enc.out_channels) == shape
    low_enc = make("bfloat16")
    assert param_dtypes(enc) == {jnp.dtype("float32")}
    assert param_dtypes(low_enc) == {jnp.dtype("bfloat16")}
    low = forward(low_enc, x)[0]
    assert low.dtype == jnp.float32
    assert float(jnp.abs(low - feats).max()) <= 0.05 * float(jnp.abs(feats).max())


def photos(*names: str) -> dict[str, np.ndarray]:
    """scikit-image's sample photographs (uint8[H, W, 3]) by name."""
    skd = pytest.importorskip("skimage.data")
    return {name: getattr(skd, name)() for name in names}


def expand2square(img: np.ndarray, mean) -> np.ndarray:
    """LLaVA / Cambrian ``expand2square`` with ``background_color = int(x * 255) of the mean``."""
    pil = Image.fromarray(img)
    w, h = pil.size
    bg = tuple(int(x * 255) for x in mean)
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(pil.mode, (side, side), bg)
    out.paste(pil, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return np.asarray(out)


def write_hf_dinov2(path, variant="runlocal", drop=(), reshape=None, seed=0):
    """A DINOv2 checkpoint in HF tensor names (random numpy values), tensor by tensor."""
    from safetensors.numpy import save_file

    cfg = vit.config_for("dinov2", dinov2.VARIANTS, variant)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape, _ in vit.hf_vit_layout(cfg, norm_names=("norm1", "norm2"),
                                            mlp_names=("mlp.fc1", "mlp.fc2")).values():
        if name in drop:
            continue
        if reshape and name in reshape:
            shape = reshape[name]
        tensors[name] = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    os.makedirs(path, exist_ok=True)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    return path


def open_clip_with_timm_trunk(cfg_dir, name: str, cls, vision: dict, seed: int, **build_kw):
    """A randomised open_clip CLIP whose visual tower is the timm trunk ``cls(**build_kw)``,
    registered with timm as ``name`` and with open_clip as a model config written to ``cfg_dir``
    (``vision`` adds the pooling / projection / image size fields of its ``vision_cfg``)."""
    import open_clip
    import timm
    from timm.models import build_model_with_cfg, register_model

    if name not in timm.list_models(name):
        def build(pretrained=False, **kw):
            return build_model_with_cfg(cls, name, pretrained, **build_kw, **kw)
        build.__name__ = name  # timm registers a model under its function's name
        register_model(build)
    cfg = {"embed_dim": 16,
           "vision_cfg": {"timm_model_name": name, "timm_model_pretrained": False, **vision},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                        "layers": 1}}
    (cfg_dir / f"{name}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(cfg_dir))
    return randomize(open_clip.create_model(name), seed)


def save_edited(state_dict: dict, path, *, drop: str | None = None,
                replace: dict | None = None) -> str:
    """``state_dict`` without tensor ``drop`` and with the tensors of ``replace``, saved with
    ``torch.save`` to ``path``; returns the path."""
    import torch

    sd = {k: v for k, v in state_dict.items() if k != drop} | (replace or {})
    torch.save(sd, path)
    return str(path)


def cambrian_square(img: np.ndarray, mean, size: int) -> np.ndarray:
    """What Cambrian hands a tower's processor (mm_utils.py:186-201 @539ffc3): ``expand2square``,
    then one PIL resize (Pillow's default, bicubic) to the tower's ``size`` x ``size``."""
    sq = Image.fromarray(expand2square(img, mean))
    return np.asarray(sq if sq.size == (size, size) else sq.resize((size, size), Image.BICUBIC))
