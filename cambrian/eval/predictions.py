"""Prediction files: ``<workdir>/predictions/<benchmark>.jsonl``, one JSON object per line (the
sample's fields without the image, plus "prediction").

While a benchmark is decoded every prediction is appended as soon as its batch finishes; with
several hosts each appends to its own part file ``<benchmark>.jsonl.part<k>-of-<n>``. When the
benchmark ends, process 0 merges the file and the parts into ``<benchmark>.jsonl`` in item order
and removes the parts. A rerun reads every saved prediction (file and parts, from any number of
hosts) and decodes only the rest; a last line cut by a killed process is decoded again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import fsspec
import numpy as np

from cambrian import fileio
from cambrian.data import readers
from cambrian.eval.benchmarks import common

PART = ".part{k}-of-{n}"


def part_path(path: str, host: int, hosts: int) -> str:
    """The file host ``host`` of ``hosts`` appends to: the merged file itself on one host."""
    return path + (PART.format(k=host, n=hosts) if hosts > 1 else "")


def part_files(path: str) -> list[str]:
    """Part files of ``path`` left by any number of hosts, sorted by name."""
    fs, p = fsspec.core.url_to_fs(path)
    folder = path.rsplit("/", 1)[0]
    return [fileio.join(folder, f.rsplit("/", 1)[-1])
            for f in sorted(fs.glob(p + PART.format(k="*", n="*")))]


def read(path: str) -> list[dict]:
    """Every record of a finished predictions file; a malformed line, or one without a
    "prediction", is a ``DataFormatError`` naming the file and line."""
    records = []
    for rec, where in common.read_jsonl(path):
        if "prediction" not in rec:
            raise common.DataFormatError(f"{where}: expected an object with a 'prediction' field")
        records.append(rec)
    return records


def _read_resumable(path: str) -> dict[str, dict]:
    """{id: record} of one file being appended to; its cut last line is left out."""
    if not fileio.exists(path):
        return {}
    done = {}
    for rec, where in readers.read_jsonl(path, cut_last_line=True):
        if isinstance(rec, readers.BadRecord):
            raise ValueError(f"{rec}; delete the line to decode that item again")
        if not isinstance(rec, dict) or "id" not in rec:
            raise ValueError(f"{where}: expected a JSON object with an 'id'; delete the line to "
                             "decode that item again")
        done[str(rec["id"])] = rec
    return done


def saved(path: str) -> dict[str, dict]:
    """{id: record} of every saved prediction of one benchmark: its file and all part files."""
    done: dict[str, dict] = {}
    for f in [path, *part_files(path)]:
        done.update(_read_resumable(f))
    return done


def merge(path: str, done: dict[str, dict], ids: Sequence[str]) -> None:
    """Writes ``done`` to ``path`` in the order of ``ids`` (then any other saved ids), atomically,
    and removes the part files."""
    fs, p = fsspec.core.url_to_fs(path)
    parts = part_files(path)
    order = list(dict.fromkeys([*ids, *done]))  # this run's items first, then older extras
    _write(path + ".tmp", (done[i] for i in order if i in done), "w")
    fs.mv(p + ".tmp", p)
    for f in parts:
        fs.rm(fsspec.core.url_to_fs(f)[1])


class Writer:
    """Saves one file's predictions as each batch finishes: appended locally; on gs:// (no
    appends) the file is rewritten."""

    def __init__(self, path: str):
        self.path = path
        self.records = _read_resumable(path)
        self.remote = fileio.is_remote(path)
        if not _ends_with_newline(path):
            # rewrite without the cut line, or the next append would be glued to it
            _write(path, self.records.values(), "w")

    def add(self, records: list[dict]) -> None:
        for rec in records:
            self.records[str(rec["id"])] = rec
        if self.remote:
            _write(self.path, self.records.values(), "w")
        else:
            _write(self.path, records, "a")


def _ends_with_newline(path: str) -> bool:
    """Whether ``path`` is absent, empty, or ends with a complete line."""
    if not fileio.exists(path):
        return True
    with fsspec.open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            return True
        f.seek(size - 1)
        return f.read(1) == b"\n"


def _write(path: str, rows: Iterable[dict], mode: str) -> None:
    with fileio.open_file(path, mode) as fh:
        for rec in rows:
            fh.write(json.dumps(rec, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")
