"""Where a source's images live (folders, tar shards), and checking / storing image bytes.

A source lists image roots: folders or uncompressed ``.tar`` shards (globs allowed), local or any
fsspec URL. A record's image path is looked up in each root in order. Tar shards are indexed once
(member name -> byte range) and read by seeking, so images are never extracted.

``inspect(data)`` fully decodes an image (a truncated or corrupt file fails here, not at training
time) and returns its content hash, dHash and size. ``stored_bytes`` is what the dataset keeps: the
original bytes when they are an RGB JPEG / PNG, otherwise the image converted to RGB (as LLaVA's
loader does with ``convert("RGB")``) and saved as PNG, so every stored image decodes to 3 channels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import posixpath
import tarfile
from collections.abc import Iterator, Sequence

import fsspec
from PIL import Image

from cambrian.data.dhash import dhash
from cambrian.data.readers import DataError, expand, inline_image, iter_records

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_KEEP_AS_IS = {("JPEG", "RGB"), ("PNG", "RGB")}


class ImageError(ValueError):
    """An image is missing (``reason="missing_image"``) or does not decode (``"corrupt_image"``)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    sha1: str
    dhash: int
    width: int
    height: int
    convert: bool  # stored as RGB PNG instead of the original bytes


def inspect(data: bytes) -> ImageInfo:
    """Decodes ``data`` completely; raises ``ImageError("corrupt_image")`` if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            info = ImageInfo(hashlib.sha1(data).hexdigest(), dhash(im), im.width, im.height,
                             (im.format, im.mode) not in _KEEP_AS_IS)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError
        raise ImageError("corrupt_image", f"image does not decode ({type(e).__name__}: {e})") from e
    return info


def stored_bytes(data: bytes, convert: bool) -> bytes:
    """The bytes written to the dataset for an image ``inspect`` accepted."""
    if not convert:
        return data
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


class FolderImages:
    """Images under a folder; names are paths relative to it."""

    def __init__(self, root: str, case_insensitive: bool = False):
        self.root = root.rstrip("/")
        self.case_insensitive = case_insensitive
        self._listing: dict[str, dict[str, str]] = {}
        self._fs_root = None

    def _fs(self):
        if self._fs_root is None:
            self._fs_root = fsspec.core.url_to_fs(self.root)
        return self._fs_root

    def _case_fold(self, name: str) -> str | None:
        fs, root = self._fs()
        parent, base = posixpath.split(name)
        if parent not in self._listing:
            try:
                entries = fs.ls(posixpath.join(root, parent), detail=False)
            except FileNotFoundError:
                entries = []
            self._listing[parent] = {posixpath.basename(e).lower(): posixpath.basename(e)
                                     for e in entries}
        hit = self._listing[parent].get(base.lower())
        return posixpath.join(parent, hit) if hit else None

    def read(self, name: str) -> bytes | None:
        fs, root = self._fs()
        try:
            with fs.open(posixpath.join(root, name), "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError):
            pass
        if self.case_insensitive and (real := self._case_fold(name)) is not None:
            with fs.open(posixpath.join(root, real), "rb") as f:
                return f.read()
        return None

    def __getstate__(self):
        return {**self.__dict__, "_listing": {}, "_fs_root": None}


class TarImages:
    """Images inside uncompressed tar shards, found through a member index built on first use."""

    def __init__(self, shards: Sequence[str], case_insensitive: bool = False):
        self.shards = list(shards)
        self.case_insensitive = case_insensitive
        self._index: dict[str, tuple[int, int, int]] | None = None
        self._folded: dict[str, str] = {}
        self._handles: dict[int, object] = {}

    def index(self) -> dict[str, tuple[int, int, int]]:
        if self._index is None:
            idx: dict[str, tuple[int, int, int]] = {}
            for k, shard in enumerate(self.shards):
                with fsspec.open(shard, "rb") as f:
                    try:
                        with tarfile.open(fileobj=f, mode="r:") as tf:
                            for m in tf:
                                if m.isfile():
                                    name = m.name[2:] if m.name.startswith("./") else m.name
                                    idx.setdefault(name, (k, m.offset_data, m.size))
                    except tarfile.TarError as e:
                        raise DataError(f"{shard}: not a readable uncompressed tar ({e})") from e
            self._index = idx
            if self.case_insensitive:
                self._folded = {n.lower(): n for n in idx}
        return self._index

    def read(self, name: str) -> bytes | None:
        idx = self.index()
        hit = idx.get(name)
        if hit is None and self.case_insensitive and name.lower() in self._folded:
            hit = idx[self._folded[name.lower()]]
        if hit is None:
            return None
        k, offset, size = hit
        if k not in self._handles:
            self._handles[k] = fsspec.open(self.shards[k], "rb").open()
        f = self._handles[k]
        f.seek(offset)
        return f.read(size)

    def __getstate__(self):
        return {**self.__dict__, "_handles": {}}


def _is_compressed_tar(path: str) -> bool:
    return any(s in path for s in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst"))


class ImageRoots:
    """Looks an image name up in each root in order; ``read`` raises ``ImageError`` if absent."""

    def __init__(self, roots: Sequence[str], case_insensitive: bool = False):
        self.roots = list(roots)
        self.stores: list[FolderImages | TarImages] = []
        for r in self.roots:
            if _is_compressed_tar(r):
                raise DataError(
                    f"{r}: compressed tar archives cannot be read by seeking; merge any split "
                    "parts and extract it (tar -xf) or repack it as an uncompressed .tar, then "
                    "point the recipe at the folder or the .tar")
            if r.endswith(".tar") or any(c in r for c in "*?["):
                self.stores.append(TarImages(expand(r), case_insensitive))
            else:
                self.stores.append(FolderImages(r, case_insensitive))

    def read(self, name: str) -> bytes:
        for s in self.stores:
            data = s.read(name)
            if data is not None:
                return data
        raise ImageError("missing_image", f"image {name!r} not found under {', '.join(self.roots)}")


def iter_image_files(path: str) -> Iterator[tuple[str, bytes]]:
    """Every image in a folder (recursively), a tar shard or a parquet file (image columns)."""
    if path.endswith(".parquet"):
        for rec, where in iter_records(path, "parquet"):
            for col, v in rec.items():
                for cell in v if isinstance(v, list) else [v]:
                    cell = inline_image(cell)
                    if isinstance(cell, dict) and isinstance(cell.get("bytes"), bytes):
                        yield f"{where}/{col}", cell["bytes"]
        return
    if path.endswith(".tar"):
        store = TarImages([path])
        for name in store.index():
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield name, store.read(name)
        return
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise DataError(f"benchmark image path not found: {path}")
    for p in sorted(fs.find(root)):
        if p.lower().endswith(IMAGE_EXTENSIONS):
            with fs.open(p, "rb") as f:
                yield posixpath.relpath(p, root), f.read()
