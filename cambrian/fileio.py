"""Files on local disk or ``gs://``: run-directory files, and local copies of remote inputs.

Arrays go through orbax/tensorstore (``cambrian/checkpoint.py``); every small text file goes
through fsspec, so a workdir may be ``gs://bucket/run`` (gcsfs) or, in tests, ``memory://run``.
Inputs that libraries read from local disk only (checkpoint folders, built datasets, tokenizers)
are copied once per host into a shared cache by ``local_copy``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import posixpath
import shutil
from collections.abc import Sequence
from typing import IO

import fsspec
from tqdm import tqdm


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def absolute(path: str) -> str:
    """Local paths made absolute (orbax wants them); URLs are returned as they are."""
    return path if is_remote(path) else os.path.abspath(path)


def join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/"), *(p.strip("/") for p in parts[1:])])


def makedirs(path: str) -> None:
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(p, exist_ok=True)


def exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def open_file(path: str, mode: str = "r") -> IO:
    """``open()`` for local paths and URLs; parent folders are created for writes."""
    if any(c in mode for c in "wa"):
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        makedirs(parent)
    return fsspec.open(path, mode).open()


def write_text(path: str, text: str) -> None:
    with open_file(path, "w") as fh:
        fh.write(text)


def read_text(path: str) -> str:
    with open_file(path, "r") as fh:
        return fh.read()


# ---------------------------------------------------------------------------- local cache


def isdir(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.isdir(p)


def cache_root(cache_dir: str | None = None) -> str:
    """``cache_dir``, else ``$CAMBRIAN_CACHE``, else ``~/.cache/cambrian`` (as the config's)."""
    return os.path.expanduser(cache_dir or os.environ.get("CAMBRIAN_CACHE")
                              or "~/.cache/cambrian")


def _version(info: dict) -> str:
    # gcsfs reports the object generation; other filesystems an etag, a hash or a time
    for key in ("generation", "etag", "md5Hash", "ETag", "mtime", "updated", "created"):
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    return ""


def local_copy(path: str, cache_dir: str | None = None, *, only: Sequence[str] = ()) -> str:
    """A local path with the content of ``path``: ``path`` itself when it is local; for a URL
    (``gs://...``) a copy of the file or folder in ``<cache>/remote/``, downloaded once and shared
    by every process of the host.

    The copy is keyed by the URL and by the size and version (GCS generation, else etag / mtime)
    of every file, so a changed object is downloaded again. It is written in a temporary folder
    and renamed into place under a file lock: concurrent workers wait for the first one instead
    of writing the same files, and a crash never leaves a partial copy that looks complete.
    ``only`` keeps the files whose names match one of these glob patterns (e.g. the tokenizer
    files of a checkpoint folder).
    """
    if not is_remote(path):
        return path
    import filelock

    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        raise FileNotFoundError(f"{path} does not exist")
    is_dir = fs.isdir(p)
    listing = fs.find(p, detail=True) if is_dir else {p: fs.info(p)}
    files = {}
    for name, info in sorted(listing.items()):
        rel = posixpath.relpath(name, p) if is_dir else posixpath.basename(p)
        if only and not any(fnmatch.fnmatch(posixpath.basename(rel), pat) for pat in only):
            continue
        files[rel] = (name, int(info.get("size") or 0), _version(info))
    key = hashlib.sha256(json.dumps([path, list(only)]).encode()).hexdigest()[:20]
    version = hashlib.sha256(json.dumps(
        [(rel, size, v) for rel, (_, size, v) in files.items()]).encode()).hexdigest()[:20]
    base = os.path.join(cache_root(cache_dir), "remote", key)
    final = os.path.join(base, version)
    result = final if is_dir else os.path.join(final, posixpath.basename(p))
    if os.path.isdir(final):
        return result
    os.makedirs(base, exist_ok=True)
    with filelock.FileLock(base + ".lock"):
        if os.path.isdir(final):  # another worker finished it while we waited
            return result
        for stale in os.listdir(base):  # left by a crash: nobody else holds the lock
            if stale.endswith(".partial"):
                shutil.rmtree(os.path.join(base, stale))
        tmp = final + ".partial"
        total = sum(size for _, size, _ in files.values())
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"cache {path}",
                  disable=total < (1 << 24)) as bar:
            for rel, (name, _, _) in files.items():
                dest = os.path.join(tmp, *rel.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with fs.open(name, "rb") as src, open(dest, "wb") as out:
                    for block in iter(lambda: src.read(1 << 23), b""):  # noqa: B023
                        out.write(block)
                        bar.update(len(block))
        os.rename(tmp, final)
    return result
