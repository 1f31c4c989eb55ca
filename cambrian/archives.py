"""Unpacking downloaded archives: ``.tar`` (any compression), ``.zip``, and a tar split into
pieces (``name.tar_part1..N``, ``name.tar.part-aa..``), streamed piece after piece so the whole
archive never exists on disk. Members are extracted with the ``data`` filter (nothing outside the
target folder, no device files or absolute links).
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile

from tqdm import tqdm


class ArchiveError(ValueError):
    """An archive does not read or would write outside its folder; one line."""


_SPLIT = re.compile(r"^(?P<base>.+?)(?:_part(?P<n>\d+)|\.part-?(?P<s>[a-z]{2,3}|\d+))$")


def groups(paths: list[str]) -> list[list[str]]:
    """Archives, with the pieces of a split one (``x.tar_part1..N``, ``x.tar.part-aa..``) in
    order as one group."""
    groups: dict[str, list[tuple[object, str]]] = {}
    for p in paths:
        m = _SPLIT.match(p)
        if m is None:
            groups.setdefault(p, []).append((0, p))
        else:
            key = int(m["n"]) if m["n"] is not None else (
                int(m["s"]) if m["s"].isdigit() else m["s"])
            groups.setdefault(m["base"], []).append((key, p))
    return [[p for _, p in sorted(g)] for _, g in sorted(groups.items())]


class _Concat:
    """The bytes of several files one after the other, for a streamed tar."""

    def __init__(self, paths: list[str], bar: tqdm):
        self._paths, self._bar, self._fh = list(paths), bar, None

    def read(self, n: int = -1) -> bytes:
        out = b""
        while (n < 0 or len(out) < n) and (self._fh or self._paths):
            if self._fh is None:
                self._fh = open(self._paths.pop(0), "rb")
            block = self._fh.read(-1 if n < 0 else n - len(out))
            if not block:
                self._fh.close()
                self._fh = None
                continue
            out += block
            self._bar.update(len(block))
        return out


def unpack(paths: list[str], target: str) -> set[str]:
    """Every archive (group) of ``paths`` extracted into ``target``; the top-level names found."""
    os.makedirs(target, exist_ok=True)
    tops: set[str] = set()
    for group in groups(paths):
        total = sum(os.path.getsize(p) for p in group)
        name = os.path.basename(group[0])
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"unpack {name}") as bar:
            try:
                if group[0].endswith(".zip") and len(group) == 1:
                    _unzip(group[0], target, tops, bar)
                else:
                    with tarfile.open(fileobj=_Concat(group, bar), mode="r|*") as tf:
                        for member in tf:
                            tops.add(member.name.lstrip("./").split("/")[0])
                            tf.extract(member, target, filter="data")
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
                raise ArchiveError(f"{name}: not a readable archive ({e}); delete "
                                   f"{os.path.dirname(group[0])} and rerun to download it "
                                   "again") from None
    return tops


def _unzip(path: str, target: str, tops: set[str], bar: tqdm) -> None:
    root = os.path.realpath(target) + os.sep
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not os.path.realpath(os.path.join(target, info.filename)).startswith(root):
                raise ArchiveError(f"{os.path.basename(path)}: member {info.filename!r} would "
                                   f"land outside {target}; not unpacked")
            tops.add(info.filename.split("/")[0])
            zf.extract(info, target)
            bar.update(info.compress_size)
