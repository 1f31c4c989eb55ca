"""Checking one conversation record and turning it into a ``Sample``.

A record is usable when its conversation is well formed -- an optional leading system turn, then
human / gpt turns alternating, starting with human and ending with gpt, none empty -- and the number
of ``<image>`` placeholders equals the number of images it names. Anything else raises a
``BadRecord`` whose ``reason`` is one of ``REASONS``; the builder and the training loader stop on it
or count it. Training takes one image per sample (``single_image``), as Cambrian-1 does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from cambrian.data.readers import BadRecord

IMAGE_TOKEN = "<image>"

# Keys under which bad records are counted, with what each means.
REASONS = {
    "malformed_json": "the line is not valid JSON",
    "malformed_record": "the record is not an object or its image field has the wrong type",
    "empty_conversation": "the conversation has no turns",
    "malformed_conversation": "roles do not alternate human/gpt, a turn is empty or mistyped",
    "image_token_mismatch": "the number of <image> placeholders differs from the number of images",
    "multi_image": "the record has several images; one image per sample is supported (Cambrian-1)",
    "missing_image": "an image file named by the record does not exist",
    "corrupt_image": "an image file does not decode",
}

ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt", "bot": "gpt",
         "chatgpt": "gpt", "model": "gpt", "system": "system"}


@dataclasses.dataclass(frozen=True)
class InlineImage:
    """Image bytes stored in the annotation file itself (parquet exports)."""

    data: bytes
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class Sample:
    id: str
    images: tuple[str | InlineImage, ...]
    conversations: tuple[dict, ...]

    def text_key(self) -> bytes:
        """Digest of the conversation text: equal for samples that say the same thing."""
        turns = [(t["from"], t["value"].strip()) for t in self.conversations]
        return hashlib.sha1(json.dumps(turns, ensure_ascii=False).encode()).digest()


def _images(rec: dict, where: str) -> tuple[str | InlineImage, ...]:
    v = rec.get("image")
    if v is None:
        return ()
    cells = v if isinstance(v, list) else [v]
    out = []
    for c in cells:
        if isinstance(c, str) and c:
            out.append(c)
        elif isinstance(c, dict) and "bytes" in c:
            if not c["bytes"]:
                raise BadRecord(where, "missing_image",
                                f"inline image {c.get('path')!r} has no bytes")
            out.append(InlineImage(bytes(c["bytes"]), c.get("path")))
        else:
            raise BadRecord(where, "malformed_record",
                            f"field 'image' must be a path, a list of paths or inline image bytes, "
                            f"got {type(c).__name__} {str(c)[:60]!r}")
    return tuple(out)


def _conversation(rec: dict, where: str) -> tuple[dict, ...]:
    conv = rec.get("conversations")
    if conv is None:
        raise BadRecord(where, "malformed_conversation", "record has no 'conversations' field")
    if not isinstance(conv, list):
        raise BadRecord(where, "malformed_conversation",
                        f"'conversations' must be a list of turns, got {type(conv).__name__}")
    if not conv:
        raise BadRecord(where, "empty_conversation", "'conversations' is empty")
    turns = []
    for i, t in enumerate(conv):
        if not (isinstance(t, dict) and isinstance(t.get("from"), str)
                and isinstance(t.get("value"), str)):
            raise BadRecord(where, "malformed_conversation",
                            f"turn {i} must be {{'from': str, 'value': str}}, got {str(t)[:80]!r}")
        role = ROLES.get(t["from"].lower())
        if role is None:
            raise BadRecord(where, "malformed_conversation",
                            f"turn {i} has unknown role {t['from']!r}; expected human or gpt")
        if not t["value"].strip():
            raise BadRecord(where, "malformed_conversation", f"turn {i} ({role}) is empty")
        turns.append({"from": role, "value": t["value"]})
    body = turns[1:] if turns[0]["from"] == "system" else turns
    for i, t in enumerate(body):
        want = "human" if i % 2 == 0 else "gpt"
        if t["from"] != want:
            raise BadRecord(where, "malformed_conversation",
                            f"turn {i + len(turns) - len(body)} is {t['from']!r}, expected "
                            f"{want!r} (turns must alternate human/gpt after an optional system "
                            "turn)")
    if not body:
        raise BadRecord(where, "empty_conversation", "the conversation has only a system turn")
    if body[-1]["from"] != "gpt":
        raise BadRecord(where, "malformed_conversation",
                        "the last turn is a question with no answer")
    return tuple(turns)


def single_image(sample: Sample, where: str) -> Sample:
    """``sample`` if it has at most one image; else a ``multi_image`` ``BadRecord``."""
    if len(sample.images) > 1:
        raise BadRecord(where, "multi_image",
                        f"{len(sample.images)} images; training takes one image per sample (as "
                        "Cambrian-1)")
    return sample


def parse(rec: object, where: str) -> Sample:
    """The ``Sample`` in ``rec``; raises ``BadRecord`` naming ``where`` and the reason."""
    if not isinstance(rec, dict):
        raise BadRecord(where, "malformed_record",
                        f"expected a JSON object, got {type(rec).__name__}")
    images = _images(rec, where)
    turns = _conversation(rec, where)
    n_tok = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if n_tok != len(images):
        raise BadRecord(where, "image_token_mismatch",
                        f"{n_tok} {IMAGE_TOKEN} placeholder(s) for {len(images)} image(s)")
    rid = rec.get("id")
    return Sample(str(rid) if rid is not None else where, images, turns)
