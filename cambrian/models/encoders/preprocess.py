"""Per-encoder image preprocessing: pad to square, resize, normalise.

Cambrian pads every image to a square with a fill colour (``image_aspect_ratio=pad``), then applies
the tower's own transform. ``apply`` does this on host (numpy/PIL) for one uint8 image;
``normalize`` is the on-device part shared by the trainer.
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


def apply(image: np.ndarray, spec: PreprocessSpec, *, pad: bool = True) -> np.ndarray:
    """uint8[H, W, 3] -> float32[S, S, 3]: pad to square (if ``pad``), resize, normalise."""
    if pad:
        image, _ = pad_to_square(image, spec.pad_color or spec.mean)
    return normalize(resize(image, spec), spec)
