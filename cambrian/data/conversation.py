"""Conversation -> token ids + loss mask, with the image placeholder expanded.

Tokenisation is upstream's ``tokenizer_image_token`` (``mm_utils.py:204-223``), for training and
evaluation alike: the text between ``<image>`` placeholders is tokenised chunk by chunk with the
tokenizer's own special tokens, so its BOS comes first as the released models saw it (and a
metaspace tokenizer prefixes the first word with "\u2581"); if the first chunk starts with BOS,
that BOS is kept once and every chunk loses its first token. Loss masks are computed from
character spans: the template marks the assistant replies as trainable, and a token is trained iff
its last character lies in a trainable span. This is exact whatever the tokenizer merges across
segment boundaries.
"""

from __future__ import annotations

import numpy as np

from cambrian.data.chat_templates import IMAGE, Template
from cambrian.data.readers import DataError
from cambrian.models.tokens import IMAGE_TOKEN

_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def tokenize_segments(tokenizer, segments: list[tuple[str, bool]], num_image_tokens: int
                      ) -> tuple[list[int], list[bool]]:
    """Segments -> (ids, trainable); each ``<image>`` becomes ``num_image_tokens`` IMAGE_TOKENs."""
    text = "".join(t for t, _ in segments)
    spans, pos = [], 0
    for t, trainable in segments:
        if trainable:
            spans.append((pos, pos + len(t)))
        pos += len(t)
    chunks = text.split(IMAGE)
    encoded = [tokenizer(c, return_offsets_mapping=True) for c in chunks]
    first = encoded[0]["input_ids"]
    drop = int(bool(first) and first[0] == tokenizer.bos_token_id)
    ids: list[int] = first[:drop]
    mask: list[bool] = [False] * drop
    start = 0
    for k, (chunk, enc) in enumerate(zip(chunks, encoded)):
        if k:
            ids += [IMAGE_TOKEN] * num_image_tokens
            mask += [False] * num_image_tokens
            start += len(IMAGE)
        for tid, (a, b) in list(zip(enc["input_ids"], enc["offset_mapping"]))[drop:]:
            a, b = start + a, start + max(b, a + 1)
            ids.append(tid)
            # a token is trained iff its last character belongs to a reply: a merged " red"
            # starts on the template's space but completes the reply
            mask.append(any(lo <= b - 1 < hi for lo, hi in spans))
        start += len(chunk)
    return ids, mask


def record_turns(record: dict, where: str) -> tuple[list[tuple[str, str]], str | None]:
    """LLaVA ``conversations`` -> ([(role, text)], system override); malformed -> DataError."""
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise DataError(f"{where}: record {record.get('id', '?')!r} has no conversation")
    turns, system = [], None
    for i, t in enumerate(conv):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise DataError(f"{where}: conversations[{i}] needs 'from' and 'value' fields")
        if t["from"] == "system":
            system = t["value"]
            continue
        role = _ROLES.get(t["from"])
        if role is None:
            raise DataError(f"{where}: conversations[{i}].from = {t['from']!r}; expected human/gpt")
        turns.append((role, t["value"]))
    if not any(r == "assistant" for r, _ in turns):
        raise DataError(f"{where}: record {record.get('id', '?')!r} has no assistant reply")
    n_img = sum(v.count(IMAGE) for _, v in turns)
    image = record.get("image")
    has_image = image is not None and not (isinstance(image, str) and not image)
    if n_img != int(has_image):
        raise DataError(f"{where}: record {record.get('id', '?')!r} has {n_img} {IMAGE} "
                        f"placeholders but {'an' if has_image else 'no'} image")
    return turns, system


def encode_record(record: dict, where: str, template: Template, tokenizer,
                  num_image_tokens: int, max_len: int, system: str | None = None) -> dict:
    """A LLaVA record -> ``{"tokens": int32[T], "loss_mask": bool[T]}`` with T <= max_len.

    The system prompt is the record's own ``system`` turn, else ``system``, else the template's.
    """
    turns, own = record_turns(record, where)
    system = own if own is not None else system
    ids, mask = tokenize_segments(tokenizer, template.render(turns, system=system),
                                  num_image_tokens)
    if len(ids) > max_len:
        if IMAGE_TOKEN in ids[max_len:]:
            raise DataError(f"{where}: record {record.get('id', '?')!r} needs {len(ids)} tokens; "
                            f"its image tokens do not fit model.max_len={max_len}")
        ids, mask = ids[:max_len], mask[:max_len]
    return {"tokens": np.asarray(ids, np.int32), "loss_mask": np.asarray(mask, bool)}


def encode_prompt(prompt: str, template: Template, tokenizer, num_image_tokens: int,
                  with_image: bool = True, system: str | None = None) -> np.ndarray:
    """An eval question -> int32 prompt ids ending with the assistant's generation prompt."""
    text = (IMAGE + "\n" + prompt) if with_image else prompt
    segments = template.render([("user", text)], add_generation_prompt=True, system=system)
    ids, _ = tokenize_segments(tokenizer, segments, num_image_tokens)
    return np.asarray(ids, np.int32)
