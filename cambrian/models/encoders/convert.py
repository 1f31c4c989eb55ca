"""Convert a public encoder checkpoint once into a ready-to-load Flax directory.

    python -m cambrian.models.encoders.convert --family dinov2 --src ckpts/dinov2-large \\
        --dst ckpts/flax/dinov2-large [--variant L/14] [--verify photo.jpg]

The converted directory holds ``encoder.json`` (family, module, config) and ``params.safetensors``
(one tensor per parameter path, e.g. ``blocks.3.attn.q.kernel``). Every family's ``load()`` calls
``restore`` first, so ``encoders.load(family, dst)`` accepts a converted directory as well as the
native checkpoint. ``--verify IMAGE`` runs the family's PyTorch reference (``reference.py``; every
family with a config dataclass) on the image and prints the max abs feature error.

Any family can use this: its encoder must be built as ``Module(config, rngs=...)`` from a
dataclass ``config`` (with ``image_size`` / ``layer`` fields) kept as ``module.config``, and its
``load()`` must call ``restore`` first. ``fill`` / ``find_prefix`` are the shared streaming loader;
the ``t_*`` / ``heads_*`` transforms and ``norm_layout`` are the pieces layouts are made of.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from cambrian.models.encoders import common

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


# Transforms from torch layouts to ours.
def t_linear(x: np.ndarray) -> np.ndarray:  # torch Linear [out, in] -> [in, out]
    return x.T


def t_conv(x: np.ndarray) -> np.ndarray:  # torch Conv2d [O, I, kh, kw] -> [kh, kw, I, O]
    return x.transpose(2, 3, 1, 0)


def t_squeeze(x: np.ndarray) -> np.ndarray:  # [1, N, C] -> [N, C]
    return x.reshape(x.shape[1:])


def t_vec(x: np.ndarray) -> np.ndarray:  # [1, 1, C] -> [C]
    return x.reshape(-1)


def heads_in(h: int, part: slice | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """torch q/k/v weight [H*D, C] (or rows ``part`` of a fused [3*H*D, C]) -> [C, H, D]."""
    def f(x: np.ndarray) -> np.ndarray:
        x = x if part is None else x[part]
        return x.T.reshape(x.shape[1], h, -1)
    return f


def heads_bias(h: int, part: slice | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """torch q/k/v bias [H*D] (or entries ``part`` of a fused [3*H*D]) -> [H, D]."""
    def f(x: np.ndarray) -> np.ndarray:
        x = x if part is None else x[part]
        return x.reshape(h, -1)
    return f


def heads_out(h: int) -> Callable[[np.ndarray], np.ndarray]:
    """torch output projection weight [C, H*D] -> [H, D, C]."""
    def f(x: np.ndarray) -> np.ndarray:
        return x.T.reshape(h, -1, x.shape[0])
    return f


def qkv_part(j: int, width: int) -> slice:
    """Rows of q (0), k (1) or v (2) in a fused [3*C, ...] projection."""
    return slice(j * width, (j + 1) * width)


def norm_layout(ours: str, theirs: str, n: int, *, bias: bool = True) -> dict:
    """Entries of a norm: ``ours.scale`` <- ``theirs.weight`` (and ``.bias``), float[n]."""
    out = {f"{ours}.scale": (f"{theirs}.weight", (n,), None)}
    if bias:
        out[f"{ours}.bias"] = (f"{theirs}.bias", (n,), None)
    return out


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
    module = common.abstract(_import(meta["module"]), cfg)
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
    n = sum(int(np.prod(s)) for s in param_paths(enc).values())
    print(f"converted {args.family} {args.src} -> {args.dst} ({n / 1e6:.1f}M parameters)")
    if args.verify:
        err = verify(args.family, args.src, args.dst, args.verify, variant=args.variant,
                     image_size=args.image_size)
        print(f"verify {args.verify}: max abs feature error vs reference = {err:.3e}")
    return 0


def verify(family: str, src: str, dst: str, image_path: str, *, variant: str | None = None,
           image_size: int | None = None) -> float:
    """Max abs difference between the converted encoder in ``dst`` and the family's PyTorch
    reference built from the native checkpoint ``src``, on the image ``image_path``."""
    import torch
    from PIL import Image

    from cambrian.models import encoders
    from cambrian.models.encoders import preprocess, reference

    enc = encoders.load(family, dst, image_size=image_size)
    spec = encoders.preprocessing(family, variant).with_size(enc.config.image_size)
    x = preprocess.apply(np.asarray(Image.open(image_path).convert("RGB")), spec)[None]
    ours = np.asarray(nnx.jit(lambda m, x: m(x)[0])(enc, jnp.asarray(x)))
    px = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        want = reference.features(family, src, px, enc.config)
    if want.shape != ours.shape:
        raise RuntimeError(f"{family}: reference features {want.shape} vs ours {ours.shape}")
    return float(np.abs(ours - want).max())


if __name__ == "__main__":
    sys.exit(main())
