"""The vision-encoder zoo.

One module per family (``clip``, ``siglip``, ``dinov2``, ...). Each family module exposes:

* ``VARIANTS: dict[str, dict]`` -- architecture settings per variant name (``"L/14"``), including a
  tiny ``"runlocal"`` variant used by ``:runlocal`` configs and tests (random weights only).
* ``DEFAULT_VARIANT: str`` and ``DEFAULT_LAYER: int | None`` (Cambrian's layer choice).
* ``create(variant, *, image_size=None, layer=None, rngs) -> nnx.Module`` -- randomly initialised.
* ``load(checkpoint, *, variant=None, image_size=None, layer=None) -> nnx.Module`` -- weights read
  from the family's native checkpoint layout (HF safetensors dir, timm / open_clip state dict).
* ``preprocessing(variant) -> PreprocessSpec``.

Every encoder module is called as ``feats, out = enc(pixels)``: ``pixels`` float32[B, H, W, 3]
already normalised for the family; ``feats`` float32[B, h, w, C] is the chosen layer with prefix
(CLS / register) tokens removed; ``out`` is a dict of named intermediates.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flax import nnx

from cambrian.models.encoders.preprocess import PreprocessSpec

FAMILIES = (
    "clip", "siglip", "dfn_clip", "eva_clip", "dinov2", "mae", "mocov3", "ijepa", "supvit",
    "convnext", "sam", "dpt", "sd_diffusion", "aimv2",
)


def family_module(family: str) -> ModuleType:
    """Returns the module implementing ``family``; unknown names list the known ones."""
    if family not in FAMILIES:
        raise ValueError(f"unknown encoder family {family!r}; known: {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(f"cambrian.models.encoders.{family}")
    except ModuleNotFoundError as e:
        if e.name == f"cambrian.models.encoders.{family}":
            raise NotImplementedError(f"encoder family {family!r} is not implemented yet") from e
        raise


def create(family: str, variant: str | None = None, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """A randomly initialised encoder (tests, ``:runlocal``). Never presented as pretrained."""
    mod = family_module(family)
    return mod.create(variant or mod.DEFAULT_VARIANT, image_size=image_size, layer=layer,
                      rngs=rngs if rngs is not None else nnx.Rngs(0))


def load(family: str, checkpoint: str, *, variant: str | None = None,
         image_size: int | None = None, layer: int | None = None) -> nnx.Module:
    """An encoder with weights read from ``checkpoint`` in the family's native layout."""
    return family_module(family).load(checkpoint, variant=variant, image_size=image_size,
                                      layer=layer)


def preprocessing(family: str, variant: str | None = None) -> PreprocessSpec:
    mod = family_module(family)
    return mod.preprocessing(variant or mod.DEFAULT_VARIANT)
