"""Checkpoint layouts: filling an encoder from a public checkpoint, and converted directories.

A layout maps each parameter path of a module (``"blocks.3.attn.q.kernel"``) to an ``Entry``:
(checkpoint tensor name, its shape in the checkpoint, transform to our shape). ``fill`` streams
the tensors into an abstract (never randomly initialised) module; ``find_prefix`` finds where a
state dict nests the model. The ``t_*`` / ``heads_*`` transforms and ``norm_layout`` are the
pieces the families' layouts are made of.

A converted directory (written by ``save``, read back by ``restore``) holds ``encoder.json``
(family, module, config) and ``params.safetensors`` (one tensor per parameter path).
``encoders.load`` tries ``restore`` before the family's own ``load``, so every family whose module
is built as ``Module(config, rngs=...)`` from a JSON-serialisable dataclass ``config`` can be
converted once with ``python -m cambrian.models.encoders.convert``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable, Iterable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import weights
from cambrian.models.encoders import common

MARKER = "encoder.json"
PARAMS = "params.safetensors"

Entry = tuple[str, tuple[int, ...], Callable[[np.ndarray], np.ndarray] | None]


# --- filling a module from a checkpoint, tensor by tensor ---------------------------------------

def param_paths(module: nnx.Module) -> dict[str, tuple[int, ...]]:
    """``"blocks.0.attn.q.kernel" -> shape`` for every parameter of ``module``."""
    return {".".join(map(str, path)): tuple(v.shape)
            for path, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def fill(module: nnx.Module, layout: Mapping[str, Entry],
         reader: Mapping[str, np.ndarray]) -> nnx.Module:
    """Returns ``module`` with every parameter read from ``reader`` as ``layout`` says, stored
    in ``module.config.dtype``.

    Each tensor is checked (name, shape) by ``weights.take``, transformed and moved to a jax
    array before the next is read, so the checkpoint is never held twice in host memory.
    """
    dtype = module.config.dtype
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
        var.set_value(jnp.asarray(np.ascontiguousarray(x), dtype=dtype))
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


# --- transforms from torch layouts to ours ------------------------------------------------------

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


# --- converted directories ----------------------------------------------------------------------

def is_converted(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, MARKER))


def _import(ref: str):
    mod, name = ref.split(":")
    return getattr(importlib.import_module(mod), name)


def save(encoder: nnx.Module, dst: str, *, family: str, variant: str | None = None) -> None:
    """Writes ``encoder`` to ``dst`` (float32 parameters; the config as JSON).

    Only modules that ``restore`` can rebuild are accepted: a dataclass ``config`` that survives
    JSON, and no state besides parameters.
    """
    from safetensors.numpy import save_file

    cfg = getattr(encoder, "config", None)
    why = None
    if not dataclasses.is_dataclass(cfg):
        why = "has no `config` dataclass"
    elif type(cfg)(**json.loads(json.dumps(dataclasses.asdict(cfg)))) != cfg:
        why = f"has a config ({type(cfg).__name__}) that does not survive JSON"
    elif len(nnx.to_flat_state(nnx.state(encoder, nnx.Param))) != len(
            nnx.to_flat_state(nnx.state(encoder))):
        why = "holds state besides its parameters"
    if why:
        raise TypeError(f"{family}: {type(encoder).__name__} {why}, so it cannot be rebuilt from "
                        "a converted directory; load its native checkpoint instead")
    os.makedirs(dst, exist_ok=True)
    tensors = {".".join(map(str, path)): np.asarray(v.get_value(), np.float32)
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


def restore(path: str, family: str, *, image_size: int | None = None, layer: int | None = None,
            dtype: str = "float32") -> nnx.Module | None:
    """The encoder stored in converted directory ``path``; None when ``path`` is not one.

    ``image_size`` / ``layer`` override the stored ones (position embeddings are kept at their
    native grid, so a new size is resampled exactly as the reference does it); parameters are
    stored and computed in ``dtype``.
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
    cfg = dataclasses.replace(cfg, dtype=dtype, **{k: v for k, v in (("image_size", image_size),
                                                                     ("layer", layer))
                                                   if v is not None})
    module = common.abstract(_import(meta["module"]), cfg)
    entries = {k: (k, shape, None) for k, shape in param_paths(module).items()}
    return fill(module, entries, weights.open_checkpoint(os.path.join(path, PARAMS)))
