"""The vision-encoder zoo: one module per family, found by its module path.

``encoders.create("dinov2", "L/14", ...)`` imports ``cambrian.models.encoders.dinov2``; there is no
list to edit. Every encoder module is called as ``feats, out = enc(pixels)``: ``pixels``
float32[B, H, W, 3] already normalised for the family; ``feats`` float32[B, h, w, C] is the chosen
layer with prefix (CLS / register) tokens removed; ``out`` is a dict of named intermediates. It has
``config`` (a frozen dataclass with at least ``image_size``, ``layer`` and ``dtype``),
``out_channels`` (C) and ``grid`` ((h, w) at ``config.image_size``).

Adding a family = one file ``<family>.py`` here + one config under ``configs/encoders/``. The file
defines (with these names and signatures, checked by ``family_module``):

* ``VARIANTS: dict[str, dict]`` -- architecture per variant name (``"L/14"``), including a tiny
  ``"runlocal"`` variant for ``:runlocal`` configs and tests (random weights only).
* ``DEFAULT_VARIANT: str`` and ``DEFAULT_LAYER: int | None`` (Cambrian's layer choice).
* ``create(variant, *, image_size=None, layer=None, rngs, dtype="float32") -> nnx.Module``:
  randomly initialised, built with ``common.random_init(Module, config, rngs=rngs)``.
* ``load(checkpoint, *, variant=None, image_size=None, layer=None, dtype="float32")``: weights
  from the family's native checkpoint layout (HF safetensors dir, timm / open_clip state dict),
  usually ``layout.fill(common.abstract(Module, config), entries, weights.open_checkpoint(...))``
  with ``entries`` mapping each parameter path to its checkpoint tensor.
* ``preprocessing(variant) -> PreprocessSpec``.
* ``reference(src, px, config) -> np.ndarray``: the same features computed by the checkpoint's
  own PyTorch library from ``src`` for NCHW torch ``px``, float32[B, h, w, C]. Import torch and
  the library inside the function (nothing may import torch at load time); ``reference.py`` has
  the shared pieces. ``convert --verify`` and the parity tests call it.

``dtype`` ("float32" | "bfloat16") is stored in ``config.dtype``: parameters are stored in it
(``random_init`` and ``fill`` read it from the config) and the blocks compute in it, while norms,
softmax and the returned features stay float32. ViT-shaped families reuse ``vit``
(``ViTConfig`` switches + a layout + ``reference = vit.reference``); other families build from the
layers in ``common``. A family whose module is ``Module(config, rngs=...)`` with a JSON-friendly
config gets converted directories (``convert``, ``layout.save`` / ``restore``) for free:
``load`` below tries them first.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from flax import nnx

from cambrian.models.encoders import features, layout  # noqa: F401  (encoders.features.*)
from cambrian.models.encoders.preprocess import PreprocessSpec

_CONTRACT = ("VARIANTS", "DEFAULT_VARIANT", "DEFAULT_LAYER", "create", "load", "preprocessing",
             "reference")


def _missing(mod: ModuleType) -> list[str]:
    return [name for name in _CONTRACT if not hasattr(mod, name)]


@functools.cache
def families() -> tuple[str, ...]:
    """The names of the family modules in this package (those that define the contract)."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if not _missing(mod):
            names.append(info.name)
    return tuple(sorted(names))


def family_module(family: str) -> ModuleType:
    """The module implementing ``family``; unknown names list the known ones."""
    if not family.isidentifier():
        raise ValueError(f"unknown encoder family {family!r}; known: {', '.join(families())}")
    try:
        mod = importlib.import_module(f"{__name__}.{family}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{family}":
            raise
        raise ValueError(f"unknown encoder family {family!r}; known: "
                         f"{', '.join(families())}") from None
    if missing := _missing(mod):
        raise ValueError(f"{mod.__name__} is not an encoder family module: it lacks "
                         f"{', '.join(missing)} (see the {__name__} docstring); known families: "
                         f"{', '.join(families())}")
    return mod


def create(family: str, variant: str | None = None, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs | None = None,
           dtype: str = "float32") -> nnx.Module:
    """A randomly initialised encoder (tests, ``:runlocal``). Never presented as pretrained."""
    mod = family_module(family)
    return mod.create(variant or mod.DEFAULT_VARIANT, image_size=image_size, layer=layer,
                      rngs=rngs if rngs is not None else nnx.Rngs(0), dtype=dtype)


def load(family: str, checkpoint: str, *, variant: str | None = None,
         image_size: int | None = None, layer: int | None = None,
         dtype: str = "float32") -> nnx.Module:
    """An encoder with weights read from ``checkpoint``: a converted directory (``convert``) or
    the family's native layout."""
    mod = family_module(family)
    restored = layout.restore(checkpoint, family, image_size=image_size, layer=layer, dtype=dtype)
    if restored is not None:
        return restored
    return mod.load(checkpoint, variant=variant, image_size=image_size, layer=layer, dtype=dtype)


def preprocessing(family: str, variant: str | None = None) -> PreprocessSpec:
    mod = family_module(family)
    return mod.preprocessing(variant or mod.DEFAULT_VARIANT)
