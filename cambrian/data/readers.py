"""Readers for the formats instruction-tuning data is published in.

A record is a LLaVA-style dict: ``{"id": str, "image": str | None (path relative to the image
root), "conversations": [{"from": "human" | "gpt" | "system", "value": str}, ...]}``. Readers yield
``(record, where)`` pairs, where ``where`` is ``"file:line"`` (or ``"file:#index"``) so any error
about a record can name it.

Formats (``FORMATS``, selected by a recipe source's ``format``):

* ``llava`` -- LLaVA JSON (a list of records) or JSONL (one record per line).
* ``sharegpt`` -- the same files with ShareGPT / chat-message fields: ``conversations`` or
  ``messages``, turns keyed ``from``/``value`` or ``role``/``content`` (content may be a list of
  ``{"type": "text" | "image", ...}`` parts; image parts become ``<image>``), images in ``images``.
* ``parquet`` -- Hugging Face dataset exports: one row per record, images stored inline as
  ``{"bytes": ..., "path": ...}`` structs (or raw binary), conversation columns as above.

Every path may be local or any fsspec URL (``gs://bucket/...``). ``iter_records`` yields a
``BadRecord`` in place of a record it cannot parse (a malformed JSON line) so a caller can either
stop or skip and count; problems with a whole file (missing, not JSON) raise ``DataError``.
``read_jsonl`` is the project's one JSONL reader (training data, benchmark files, predictions).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence

import fsspec

log = logging.getLogger("cambrian")


class DataError(ValueError):
    """A data file or record is malformed; the message names the file and the record."""


class BadRecord(DataError):
    """One unusable record. ``reason`` is the short key the builder counts it under."""

    def __init__(self, where: str, reason: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.where, self.reason, self.detail = where, reason, detail


def _check_exists(path: str) -> None:
    if not fsspec.core.url_to_fs(path)[0].exists(path):
        raise DataError(
            f"data file not found: {path}. Build or download it first (see README, 'Data').")


def read_jsonl(path: str, *, cut_last_line: bool = False) -> Iterator[tuple[object, str]]:
    """``(record, "path:N")`` for each non-blank line N of a JSONL file, local or any fsspec URL:
    the one JSONL reader of the project.

    A line that is not JSON yields a ``BadRecord`` in place of its record, so the caller can stop
    or skip and count. With ``cut_last_line``, a malformed last line without its newline -- what a
    process killed in the middle of an append leaves behind -- ends the file instead (logged).
    """
    with fsspec.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if cut_last_line and not line.endswith("\n"):
                    log.warning("%s:%d: ignoring the unfinished last line", path, i)
                    return
                yield BadRecord(f"{path}:{i}", "malformed_json",
                                f"malformed JSON line ({e.msg})"), f"{path}:{i}"
                continue
            yield rec, f"{path}:{i}"


def _json_records(path: str) -> Iterator[tuple[object, str]]:
    """Records of a JSON list or JSONL file; a malformed JSONL line yields a ``BadRecord``."""
    _check_exists(path)
    if path.endswith(".jsonl"):
        yield from read_jsonl(path)
        return
    with fsspec.open(path, "rt", encoding="utf-8") as f:
        try:
            recs = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from e
    if not isinstance(recs, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(recs).__name__}")
    for i, rec in enumerate(recs):
        yield rec, f"{path}:#{i}"


def read_llava(path: str) -> Iterator[tuple[dict, str]]:
    """LLaVA JSON (a list of records) or JSONL (one record per line), local or gs://."""
    for rec, where in _json_records(path):
        if isinstance(rec, BadRecord):
            raise rec
        yield rec, where


# --- chat-style records -------------------------------------------------------------------------

_TURN_KEYS = (("from", "role"), ("value", "content"))


def _part_text(parts: list) -> str | list:
    """OpenAI-style content parts -> text with ``<image>`` where image parts were."""
    out = []
    for p in parts:
        if not isinstance(p, dict):
            return parts  # left for validation to reject
        if p.get("type") in ("image", "image_url"):
            out.append("<image>")
        elif p.get("type") == "text":
            out.append(p.get("text", ""))
        else:
            return parts
    return "\n".join(out)


def _normalize_chat(rec: object) -> object:
    """ShareGPT / chat-message field names -> LLaVA field names. Non-dicts pass through."""
    if not isinstance(rec, dict):
        return rec
    rec = dict(rec)
    if "conversations" not in rec and "messages" in rec:
        rec["conversations"] = rec.pop("messages")
    if "image" not in rec and "images" in rec:
        rec["image"] = rec.pop("images")
    conv = rec.get("conversations")
    if isinstance(conv, list):
        turns = []
        for t in conv:
            if isinstance(t, dict):
                t = dict(t)
                for llava_key, chat_key in _TURN_KEYS:
                    if llava_key not in t and chat_key in t:
                        t[llava_key] = t.pop(chat_key)
                if isinstance(t.get("value"), list):
                    t["value"] = _part_text(t["value"])
            turns.append(t)
        rec["conversations"] = turns
    return rec


def _sharegpt(path: str) -> Iterator[tuple[object, str]]:
    for rec, where in _json_records(path):
        yield (rec if isinstance(rec, BadRecord) else _normalize_chat(rec)), where


def inline_image(v: object) -> object:
    """A parquet image cell -> ``{"bytes", "path"}`` (inline) or a path string."""
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": bytes(v), "path": None}
    if isinstance(v, dict) and "bytes" in v:
        return {"bytes": v["bytes"], "path": v.get("path")}
    return v


def _parquet(path: str, batch_size: int = 64) -> Iterator[tuple[object, str]]:
    import pyarrow.parquet as pq

    _check_exists(path)
    row = 0
    with fsspec.open(path, "rb") as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # pyarrow raises several types for non-parquet input
            raise DataError(f"{path}: not a readable parquet file ({e})") from e
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                rec = _normalize_chat(rec)
                img = rec.get("image")
                if isinstance(img, list):
                    rec["image"] = [inline_image(v) for v in img]
                elif img is not None:
                    rec["image"] = inline_image(img)
                yield rec, f"{path}:#{row}"
                row += 1


FORMATS: dict[str, Callable[[str], Iterator[tuple[object, str]]]] = {
    "llava": _json_records,
    "sharegpt": _sharegpt,
    "parquet": _parquet,
}


def iter_records(path: str, fmt: str) -> Iterator[tuple[object, str]]:
    """``(record, where)`` of one annotation file; a ``BadRecord`` stands for an unparsable one."""
    if fmt not in FORMATS:
        raise DataError(
            f"unknown data format {fmt!r} for {path}; known formats: {', '.join(FORMATS)}")
    return FORMATS[fmt](path)


def expand(paths: str | Sequence[str]) -> list[str]:
    """Paths with glob patterns expanded (sorted); a pattern matching nothing is an error."""
    out = []
    for p in [paths] if isinstance(paths, str) else paths:
        if not any(c in p for c in "*?["):
            out.append(p)
            continue
        fs, _ = fsspec.core.url_to_fs(p)
        hits = sorted(fs.glob(p))
        if not hits:
            raise DataError(f"no file matches {p}; check the path in the recipe")
        out.extend(fs.unstrip_protocol(h) if "://" in p else h for h in hits)
    return out
