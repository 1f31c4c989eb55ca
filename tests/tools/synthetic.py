"""A synthetic image set with planted "A-blind" pairs, and two tiny encoders built to disagree.

Images: one coloured shape on black, with pixel noise. ``ShapeEncoder`` sees only the shape's
silhouette (blind to colour); ``ColourEncoder`` sees only a colour histogram (blind to shape).
Planted pairs: the same shape at the same place in two different colours -- similar under the
shape encoder, different under the colour encoder. Every other image has a shape/place of its own,
except "echoes": a copy of a distractor in the same colour (similar under both, so not A-blind).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image, ImageDraw

from cambrian.models.encoders.preprocess import PreprocessSpec
from cambrian.tools.features import Extractor, ImageItem

SIZE = 96
CELL = 32  # 3 x 3 places
LEVELS = (0.125, 0.375, 0.625, 0.875)  # colour channel values: centres of 4 histogram bins
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "bar")
PALETTE = [(r, g, b) for r, g, b in itertools.product(LEVELS, repeat=3) if max(r, g, b) >= 0.6]
SPEC = PreprocessSpec(image_size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                      resize="squash", interpolation="nearest")


def draw(shape: str, place: int, colour, seed: int) -> np.ndarray:
    """uint8[SIZE, SIZE, 3]: ``shape`` centred in cell ``place`` of the 3 x 3 grid."""
    img = Image.new("RGB", (SIZE, SIZE))
    d = ImageDraw.Draw(img)
    cy, cx = divmod(place, 3)
    x, y, r = cx * CELL + CELL // 2, cy * CELL + CELL // 2, 12
    fill = tuple(int(c * 255) for c in colour)
    if shape == "circle":
        d.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "square":
        d.rectangle((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "triangle":
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    elif shape == "diamond":
        d.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    elif shape == "cross":
        d.rectangle((x - r, y - 4, x + r, y + 4), fill=fill)
        d.rectangle((x - 4, y - r, x + 4, y + r), fill=fill)
    else:  # bar
        d.rectangle((x - r, y - 5, x + r, y + 5), fill=fill)
    noise = np.random.default_rng(seed).integers(-10, 11, (SIZE, SIZE, 3))
    return np.clip(np.asarray(img, np.int32) + noise, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class Planted:
    images: list[np.ndarray]
    planted: set[tuple[int, int]]  # A-blind pairs (shape encoder similar, colour different)
    echoes: set[tuple[int, int]]  # similar under both encoders


def image_set(n_planted: int = 6, n_distractors: int = 36, n_echoes: int = 3,
              seed: int = 0) -> Planted:
    """Planted pairs first, then distractors (each on a shape/place of its own), then echoes."""
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(SHAPES, range(9)))
    order = rng.permutation(len(combos))
    combos = [combos[i] for i in order]
    assert n_planted + n_distractors <= len(combos)
    images, planted, echoes = [], set(), set()
    for shape, place in combos[:n_planted]:
        c1, c2 = rng.choice(len(PALETTE), 2, replace=False)
        planted.add((len(images), len(images) + 1))
        images += [draw(shape, place, PALETTE[c1], len(images)),
                   draw(shape, place, PALETTE[c2], len(images) + 1)]
    first = len(images)
    distractor_colours = rng.choice(len(PALETTE), n_distractors)
    for (shape, place), c in zip(combos[n_planted:n_planted + n_distractors], distractor_colours):
        images.append(draw(shape, place, PALETTE[c], len(images)))
    for e in range(n_echoes):
        shape, place = combos[n_planted + e]
        echoes.add((first + e, len(images)))
        images.append(draw(shape, place, PALETTE[distractor_colours[e]], len(images)))
    return Planted(images, planted, echoes)


def _foreground(pixels):
    return (pixels.max(axis=-1) > 0.25).astype(jnp.float32)  # [B, H, W]


class ShapeEncoder(nnx.Module):
    """Silhouette on a 24 x 24 grid, centred: float32[B, 1, 1, 576]. Blind to colour."""

    def __call__(self, pixels):
        b = pixels.shape[0]
        grid = _foreground(pixels).reshape(b, 24, SIZE // 24, 24, SIZE // 24).mean((2, 4))
        f = grid.reshape(b, -1)
        return (f - f.mean(-1, keepdims=True))[:, None, None, :], {}


class ColourEncoder(nnx.Module):
    """Histogram of the foreground's colours over 4 x 4 x 4 bins: float32[B, 1, 1, 64]. Blind to
    shape (and place)."""

    def __call__(self, pixels):
        q = jnp.clip((pixels * 4).astype(jnp.int32), 0, 3)
        bins = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
        hist = (jnp.eye(64)[bins] * _foreground(pixels)[..., None]).sum((1, 2))
        return hist[:, None, None, :], {}


def extractors() -> tuple[Extractor, Extractor]:
    """(shape encoder, colour encoder) as extractors (deterministic, no weights)."""
    return (Extractor(ShapeEncoder(), SPEC, {"family": "test_shape"}, "shape (test)"),
            Extractor(ColourEncoder(), SPEC, {"family": "test_colour"}, "colour (test)"))


def items(images: list[np.ndarray], tag: str = "") -> list[ImageItem]:
    return [ImageItem(key=f"{tag}{i}", ref=f"mem:{i}", read=functools.partial(lambda im: im, im))
            for i, im in enumerate(images)]
