"""Per-encoder image preprocessing: pad to square, resize, normalise; the letter-box geometry.

Cambrian's ``process_images`` (``mm_utils.py:186-201``), per tower: pad the image to a square with
that tower's fill colour (its processor's mean as ``int(mean * 255)``), one PIL bicubic resize of
the padded original to the tower's size, then the tower's own transform (a shortest-side resize +
centre crop with ``crop_pct`` for MoCo v3, MAE, SupViT; the identity for the released towers) and
normalisation. ``tower_image`` is the host part (uint8 out), ``normalize`` the on-device part;
``HostImages`` makes the model's whole host input for one image (every encoder's own pixels and
``letterbox``, the padded rows/columns of every grid the model masks).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

_RESAMPLE = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


@dataclasses.dataclass(frozen=True)
class PreprocessSpec:
    """How one encoder family turns an image into its input.

    image_size: output side in pixels (square output).
    resize: "shortest" (shortest side to image_size / crop_pct, then centre crop to image_size)
      or "squash" (both sides to image_size).
    interpolation: "bicubic" | "bilinear" | "nearest" (PIL resampling, as the reference processors).
    mean, std: per-channel normalisation applied to [0, 1] pixels.
    pad_color: fill for pad-to-square, in [0, 1] per channel (Cambrian: the processor's mean).
    crop_pct: timm's eval crop fraction (resize to floor(image_size / crop_pct) first).
    """

    image_size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    resize: str = "shortest"
    interpolation: str = "bicubic"
    pad_color: tuple[float, float, float] | None = None
    crop_pct: float = 1.0

    def with_size(self, image_size: int) -> PreprocessSpec:
        return dataclasses.replace(self, image_size=image_size)


def pad_to_square(image: np.ndarray, color: tuple[float, float, float]) -> tuple[np.ndarray, tuple]:
    """uint8[H, W, 3] -> (uint8[S, S, 3], valid box (top, left, h, w)); the image is centred."""
    h, w = image.shape[:2]
    s = max(h, w)
    fill = np.array([int(c * 255) for c in color], dtype=np.uint8)
    out = np.empty((s, s, 3), dtype=np.uint8)
    out[...] = fill
    top, left = (s - h) // 2, (s - w) // 2
    out[top:top + h, left:left + w] = image
    return out, (top, left, h, w)


def resize(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[S, S, 3] with S = spec.image_size, following ``spec.resize``."""
    pil = Image.fromarray(image)
    s = spec.image_size
    resample = _RESAMPLE[spec.interpolation]
    if spec.resize == "squash":
        return np.asarray(pil.resize((s, s), resample=resample))
    if spec.resize != "shortest":
        raise ValueError(f"unknown resize rule {spec.resize!r}: expected 'shortest' or 'squash'")
    # sizes and crop offsets as torchvision / HF: long side truncated, offsets rounded
    w, h = pil.size
    short = math.floor(s / spec.crop_pct)
    if w <= h:
        nw, nh = short, int(short * h / w)
    else:
        nw, nh = int(short * w / h), short
    if (nw, nh) != (w, h):
        pil = pil.resize((nw, nh), resample=resample)
    left, top = int(round((nw - s) / 2.0)), int(round((nh - s) / 2.0))
    return np.asarray(pil.crop((left, top, left + s, top + s)))


def normalize(pixels, spec: PreprocessSpec):
    """uint8 or [0,255] float [..., 3] -> float32 normalised (works on numpy and jax arrays)."""
    mean = np.asarray(spec.mean, np.float32) * 255.0
    std = np.asarray(spec.std, np.float32) * 255.0
    return (pixels.astype(np.float32) - mean) / std


def tower_image(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8[H, W, 3] -> uint8[S, S, 3], S = spec.image_size: pad to square with the spec's fill,
    one PIL bicubic resize to S x S, then the spec's own transform (``resize``)."""
    sq, _ = pad_to_square(image, spec.pad_color or spec.mean)
    s = spec.image_size
    if sq.shape[0] != s:
        sq = np.asarray(Image.fromarray(sq).resize((s, s), Image.BICUBIC))
    return resize(sq, spec)


def apply(image: np.ndarray, spec: PreprocessSpec, *, pad: bool = True) -> np.ndarray:
    """uint8[H, W, 3] -> float32[S, S, 3]: ``tower_image`` then ``normalize``; ``pad=False``
    applies the spec's own transform to the image as it is (the tower's processor alone)."""
    return normalize(tower_image(image, spec) if pad else resize(image, spec), spec)


def letterbox(width: int, height: int, side: int) -> tuple[int, int]:
    """Cambrian's letter-box rule on a side x side grid of a ``width`` x ``height`` image padded
    to a square (``cambrian_arch.py:203-256``): (axis, pad), where ``pad`` rows (axis 0: a wide
    image) or columns (axis 1) at each end are padding. Python floats, as upstream computes it
    (55 x 88 on 24 cells: 55 * (24 / 88) = 14.999..., so 14 cells and pad 5)."""
    if width / height > 1.0:
        return 0, (side - int(height * (side / width))) // 2
    return 1, (side - int(width * (side / height))) // 2


@dataclasses.dataclass(frozen=True)
class HostImages:
    """The model's host input for one image (picklable: grain workers build it).

    specs: (alias, PreprocessSpec) per encoder, in encoder order; sides: the grid sides whose
    letter-box rows / columns the model masks (every encoder's feature grid, the connector's
    token grid).

    ``self(image)`` -> {"image": {alias: uint8[S_k, S_k, 3]}, "letterbox": int32[G, 2] ((axis,
    pad) per side), "has_image": bool}; ``image=None`` gives zeros, pads 0 and has_image False.
    """

    specs: tuple[tuple[str, PreprocessSpec], ...]
    sides: tuple[int, ...]

    def __call__(self, image: np.ndarray | None) -> dict:
        if image is None:
            return self.empty()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"an image must be uint8[H, W, 3], got {image.dtype}"
                             f"{list(image.shape)}")
        h, w = image.shape[:2]
        return {"image": {a: tower_image(image, spec) for a, spec in self.specs},
                "letterbox": np.asarray([letterbox(w, h, s) for s in self.sides], np.int32),
                "has_image": np.bool_(True)}

    def empty(self) -> dict:
        return {"image": {a: np.zeros((spec.image_size,) * 2 + (3,), np.uint8)
                          for a, spec in self.specs},
                "letterbox": np.asarray([(1, 0)] * len(self.sides), np.int32),
                "has_image": np.bool_(False)}

    def shapes(self, *lead: int) -> dict:
        """(shape, dtype) of every leaf of a batch of them with leading dims ``lead``."""
        return {"image": {a: ((*lead, spec.image_size, spec.image_size, 3), np.uint8)
                          for a, spec in self.specs},
                "letterbox": ((*lead, len(self.sides), 2), np.int32),
                "has_image": (lead, np.bool_)}

    def batch(self, images: list[np.ndarray | None], size: int | None = None) -> dict:
        """A batch of ``size`` rows (default ``len(images)``): the images, then empty rows."""
        rows = [self(im) for im in images]
        rows += [self.empty()] * ((size or len(images)) - len(images))
        return stack(rows)


def stack(rows: list[dict]) -> dict:
    """Per-example dicts (nested) -> one dict of arrays with a leading batch axis."""
    first = rows[0]
    if isinstance(first, dict):
        return {k: stack([r[k] for r in rows]) for k in first}
    return np.stack(rows)
