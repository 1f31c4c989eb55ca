"""Run-directory files (config, losses, reports, predictions) on local disk or ``gs://``.

Arrays go through orbax/tensorstore (``cambrian/checkpoint.py``); every small text file goes
through fsspec, so a workdir may be ``gs://bucket/run`` (gcsfs) or, in tests, ``memory://run``.
"""

from __future__ import annotations

import os
from typing import IO

import fsspec


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
