"""Image sets for the research tools: a folder of images, or the images of a built recipe.

Each image is an ``ImageItem``: ``key`` names it in the feature cache, ``ref`` finds it again
(``read_ref``). A folder image's key is its path, size and modification time (re-reading every
file to hash it would cost as much I/O as embedding it); a recipe image's key is the recipe
manifest's hash and the image's position, so a rebuilt recipe never reuses stale features.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os

import fsspec
import numpy as np
from PIL import Image

from cambrian.data.images import IMAGE_EXTENSIONS
from cambrian.tools.features import ImageItem

RECIPE_SEP = "#"  # BUILT#record/image


def decode(data: bytes, where: str) -> np.ndarray:
    """Image bytes -> uint8[H, W, 3]; an undecodable file names itself."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise ValueError(f"{where}: image does not decode ({type(e).__name__}: {e}); remove "
                         "it from the image set") from e


def _read_file(path: str) -> np.ndarray:
    with fsspec.open(path, "rb") as f:
        return decode(f.read(), path)


def _key(*parts) -> str:
    return hashlib.blake2b("\0".join(map(str, parts)).encode(), digest_size=16).hexdigest()


def folder(root: str) -> list[ImageItem]:
    """Every image under ``root`` (recursively, any fsspec URL), sorted by path."""
    fs, base = fsspec.core.url_to_fs(root)
    if not fs.isdir(base):
        raise FileNotFoundError(f"--images {root}: not a folder of images")
    found = fs.find(base, detail=True)
    items = []
    proto = "" if root.startswith("/") or "://" not in root else root.split("://")[0] + "://"
    for path in sorted(found):
        info = found[path]
        if not path.lower().endswith(IMAGE_EXTENSIONS):
            continue
        ref = proto + path if proto else os.path.abspath(path)
        mtime = info.get("mtime") or info.get("updated") or info.get("LastModified")
        items.append(ImageItem(key=_key(ref, info.get("size"), mtime), ref=ref,
                               read=functools.partial(_read_file, ref)))
    if not items:
        raise FileNotFoundError(f"--images {root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return items


@functools.cache
def _recipe_source(built: str):
    from cambrian.data import output

    return output.open_dataset(built, raw_images=True)


def _read_recipe(built: str, record: int, image: int) -> np.ndarray:
    ex = _recipe_source(built)[record]
    return decode(ex["image"][image], f"{built}{RECIPE_SEP}{record}/{image}")


def recipe(built: str) -> list[ImageItem]:
    """Every image of a dataset built by ``data_recipes/build.py`` (its output folder)."""
    manifest = os.path.join(built, "manifest.json")
    if not os.path.exists(manifest):
        raise FileNotFoundError(f"--recipe {built}: no manifest.json; pass the --out folder of "
                                "data_recipes/build.py")
    with open(manifest, "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()
    source = _recipe_source(built)
    items = []
    for r in range(len(source)):
        for j in range(len(source[r]["image"])):
            items.append(ImageItem(key=_key(version, r, j), ref=f"{built}{RECIPE_SEP}{r}/{j}",
                                   read=functools.partial(_read_recipe, built, r, j)))
    if not items:
        raise FileNotFoundError(f"--recipe {built}: the built dataset holds no images")
    return items


def read_ref(ref: str) -> np.ndarray:
    """uint8[H, W, 3] of an ``ImageItem.ref``: a path / URL, or ``BUILT#record/image``."""
    built, sep, pos = ref.rpartition(RECIPE_SEP)
    if sep and os.path.isdir(built) and not os.path.exists(ref):
        record, _, image = pos.partition("/")
        return _read_recipe(built, int(record), int(image))
    return _read_file(ref)
