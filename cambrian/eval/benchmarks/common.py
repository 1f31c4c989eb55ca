"""Shared pieces of the benchmark modules: where a benchmark is downloaded from, reading the
published files, decoding images, formatting options, and applying a scorer to records.

Readers yield ``(row, where)`` with ``where`` = "file:row" so a malformed row can be named. Paths
may be local or any fsspec URL (gs://...).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator, Mapping, Sequence

import fsspec
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from cambrian.data import readers
from cambrian.eval import metrics

MCQ_SUFFIX = "Answer with the option's letter from the given choices directly."
SHORT_SUFFIX = "Answer the question using a single word or phrase."
LETTER_ONLY_SUFFIX = ("Please answer directly with only the letter of the correct option and "
                      "nothing else.")
PROFILES = metrics.HARNESSES


class DataFormatError(ValueError):
    """A benchmark file or row is malformed; the message names the file, row and field."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A benchmark's Hugging Face dataset repo and the files of it that its loader reads (glob
    patterns relative to the benchmark's folder, which holds the repo as
    ``huggingface_hub.snapshot_download(repo, repo_type="dataset", local_dir=folder)`` leaves it;
    downloading only these files keeps that layout)."""

    repo: str
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo}"

    def download_command(self, folder: str) -> str:
        """The ``hf download`` command line that puts the files in ``folder``."""
        include = " ".join(f"--include {shlex.quote(f)}" for f in self.files)
        return (f"hf download {self.repo} --repo-type dataset --local-dir {shlex.quote(folder)} "
                f"{include}")


# ---- locating and reading files ----

def _fs(path: str):
    return fsspec.core.url_to_fs(path)


def _join(root: str, *parts: str) -> str:
    return posixpath.join(root.rstrip("/"), *parts)


def find_files(root: str, patterns: Sequence[str], what: str) -> list[str]:
    """Files under ``root`` matching the first glob pattern that matches anything (``root`` may
    itself be a file). Raises ``FileNotFoundError`` naming the root and the patterns."""
    fs, path = _fs(root)
    if fs.isfile(path):
        return [root]
    protocol = root.split("://")[0] + "://" if "://" in root else ""
    for pattern in patterns:
        hits = sorted(fs.glob(_join(path, pattern)))
        if hits:
            return [protocol + h if protocol and not h.startswith(protocol) else h for h in hits]
    raise FileNotFoundError(f"{what}: no file matching {list(patterns)} under {root}. Download the "
                            "benchmark's hub repo there (its module's SOURCE; README, 'Benchmark "
                            "data').")


def split_files(root: str, split: str, what: str, config: str | None = None) -> list[str]:
    """Parquet shards of an HF dataset export: ``[config/][**/]{split}-*.parquet`` or
    ``{split}.parquet``."""
    base = f"{config}/" if config else ""
    return find_files(root, [f"{base}{split}-*.parquet", f"{base}*/{split}-*.parquet",
                             f"{base}**/{split}-*.parquet", f"{base}{split}.parquet",
                             f"{base}**/{split}.parquet"], what)


def read_parquet(paths: Sequence[str], limit: int | None = None,
                 columns: Sequence[str] | None = None) -> Iterator[tuple[dict, str]]:
    count = 0
    for path in paths:
        with fsspec.open(path, "rb") as f:
            table = pq.ParquetFile(f)
            row = 0
            for batch in table.iter_batches(batch_size=64, columns=columns):
                for rec in batch.to_pylist():
                    yield rec, f"{path}:row {row}"
                    row += 1
                    count += 1
                    if limit is not None and count >= limit:
                        return




def read_jsonl(path: str) -> Iterator[tuple[dict, str]]:
    """``(object, "path:N")`` per line of a JSONL file; a malformed line or one that is not a
    JSON object is a ``DataFormatError`` naming the file and line."""
    for rec, where in readers.read_jsonl(path):
        if isinstance(rec, readers.BadRecord):
            raise DataFormatError(str(rec))
        if not isinstance(rec, dict):
            raise DataFormatError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        yield rec, where


def field(row: Mapping, name: str, where: str, types: type | tuple[type, ...] | None = None):
    """``row[name]``, or a ``DataFormatError`` naming the file, row and field."""
    if name not in row or row[name] is None:
        raise DataFormatError(f"{where}: missing field {name!r} (has {sorted(row)})")
    value = row[name]
    if types is not None and not isinstance(value, types):
        raise DataFormatError(f"{where}: field {name!r} should be {types}, got "
                              f"{type(value).__name__}")
    return value


# ---- images ----

def _to_array(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        raise DataFormatError(f"{where}: image does not decode ({type(e).__name__}: {e})") from e


def decode_image(value, where: str, root: str | None = None) -> np.ndarray:
    """uint8[H, W, 3] from an HF image cell ({"bytes", "path"}), raw bytes, a base64 string
    (VLMEvalKit TSV), or a path relative to ``root``."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return _to_array(value["bytes"], where)
        if value.get("path") and root is not None:
            return read_image_file(_join(root, value["path"]), where)
        raise DataFormatError(f"{where}: image cell has neither bytes nor a resolvable path")
    if isinstance(value, bytes | bytearray):
        return _to_array(bytes(value), where)
    if isinstance(value, str) and root is not None:
        return read_image_file(_join(root, value), where)
    if isinstance(value, str):
        try:
            return _to_array(base64.b64decode(value, validate=True), where)
        except (binascii.Error, ValueError) as e:
            raise DataFormatError(f"{where}: image string is neither base64 nor a path") from e
    raise DataFormatError(f"{where}: unsupported image value of type {type(value).__name__}")


def read_image_file(path: str, where: str) -> np.ndarray:
    fs, p = _fs(path)
    if not fs.exists(p):
        raise DataFormatError(f"{where}: image file not found: {path}")
    with fsspec.open(path, "rb") as f:
        return _to_array(f.read(), f"{where} ({path})")


# ---- prompts ----

def letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def format_options(options: Sequence[str]) -> str:
    """"\\nA. x\\nB. y" -- the option block Cambrian appends after the question."""
    return "".join(f"\n{k}. {v}" for k, v in zip(letters(len(options)), options))


def options_in_text(text: str) -> dict[str, str]:
    """Options written as "A. x" lines inside a question text."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^\s*([A-Z])[.:]\s*(.*)$", text, flags=re.MULTILINE)}


def paren_options(text: str) -> dict[str, str]:
    """Options written inline as "(A) x (B) y"."""
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"\(([A-Z])\)\s*(.*?)(?=\s*\([A-Z]\)|\n|$)", text)}


# ---- scoring ----

def profile_name(profile: str) -> str:
    """Canonical profile (= harness) name; raises ``metrics.ScorerNotFound`` if unknown."""
    return metrics.harness_name(profile)


def apply(records: Sequence[Mapping], scorer_for: Callable[[Mapping], tuple[Callable, dict]],
          ) -> tuple[list[float | None], int]:
    """Scores every record: ``scorer_for(rec) -> (scorer, fields)``. A record on which the
    harness itself would crash counts as wrong; returns (values, number of such records)."""
    values: list[float | None] = []
    errors = 0
    for i, rec in enumerate(records):
        if "prediction" not in rec:
            raise DataFormatError(f"record #{i} (id {rec.get('id')!r}) has no 'prediction'")
        fn, fields = scorer_for(rec)
        try:
            values.append(fn(prediction=str(rec["prediction"]), **fields))
        except metrics.HarnessError:
            values.append(0.0)
            errors += 1
    return values, errors


def mean(values: Sequence[float | None]) -> float:
    """Mean with deferred (None) items counted as wrong; 0 for no items."""
    return sum(v or 0.0 for v in values) / len(values) if values else 0.0


def summary(values: Sequence[float | None], errors: int = 0, scale: float = 100.0,
            **details) -> dict:
    """{"score": scale * mean, "n", "deferred" (judge / random fallback, counted wrong),
    "harness_errors" (inputs the harness crashes on, counted wrong), **details}."""
    return {"score": scale * mean(values), "n": len(values),
            "deferred": sum(v is None for v in values), "harness_errors": errors, **details}


def by_key(records: Sequence[Mapping], values: Sequence[float | None], key: str,
           scale: float = 100.0) -> dict[str, float]:
    """Per-``key`` mean score (e.g. per category)."""
    groups: dict[str, list[float | None]] = {}
    for rec, v in zip(records, values):
        groups.setdefault(str(rec.get(key)), []).append(v)
    return {k: scale * mean(vs) for k, vs in sorted(groups.items())}


def simple_score(records: Sequence[Mapping], profile: str, scorer: str,
                 variants: Mapping[str, str | None], fields: Callable[[Mapping], dict], *,
                 by: str | None = None, keep_records: bool = False, scale: float = 100.0) -> dict:
    """Mean of one per-record scorer: ``variants`` maps each profile to the scorer variant its
    harness uses for this benchmark (a missing profile raises ``metrics.ScorerNotFound``)."""
    harness = profile_name(profile)
    if harness not in variants:
        raise metrics.ScorerNotFound(f"no {harness!r} scorer for this benchmark; profiles with "
                                     f"one: {sorted(variants)}")
    fn = metrics.scorer(scorer, harness, variants[harness])
    values, errors = apply(records, lambda rec: (fn, fields(rec)))
    out = summary(values, errors, scale)
    if by is not None:
        out[f"by_{by}"] = by_key(records, values, by, scale)
    if keep_records:
        out["record_scores"] = values
    return out


def mcq_fields(rec: Mapping) -> dict:
    return {"choices": rec["choices"], "answer": rec["answer"]}


def ref_fields(rec: Mapping) -> dict:
    refs = rec["references"] if "references" in rec else [rec["answer"]]
    return {"references": [str(r) for r in refs]}
