"""Packing several tokenised conversations into each fixed-length row (greedy first-fit).

``pack(examples, seq_len)`` places each example, in the given order, into the first row that still
has room for all its tokens (and, if limited, a free segment and enough image slots), opening a new
row when none has. Every token is kept exactly once; nothing is truncated. Per row it returns::

    tokens       int32[R, T]   pad_id where no example sits
    loss_mask    bool[R, T]    the examples' own masks; False on padding
    segment_ids  int32[R, T]   1, 2, ... per example in the row; 0 on padding. Attention must stay
                               within a segment: mask[q, k] = seg[q] == seg[k] != 0 and k <= q
    positions    int32[R, T]   restart at each example (its own "positions" if given, e.g. the
                               compacted positions of padded image tokens, else 0..n-1)
    examples     list[list[int]]  input indices per row; segment s is examples[row][s - 1]
    images       list[list]       per row, the examples' "images" entries in segment order

``packing_efficiency`` is the fraction of the R * T slots holding a real token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class _FirstFit:
    """Max segment tree over the free space of rows; unopened rows count as empty."""

    def __init__(self, n: int, space: int):
        self.size = 1 << max(0, (n - 1).bit_length())
        self.t = np.full(2 * self.size, -1, dtype=np.int64)
        self.t[self.size:self.size + n] = space
        for i in range(self.size - 1, 0, -1):
            self.t[i] = max(self.t[2 * i], self.t[2 * i + 1])

    def find(self, need: int, lo: int = 0) -> int:
        """Leftmost row >= lo with at least ``need`` free slots, or -1."""
        def go(node: int, left: int, right: int) -> int:
            if right <= lo or self.t[node] < need:
                return -1
            if right - left == 1:
                return left
            mid = (left + right) // 2
            hit = go(2 * node, left, mid)
            return hit if hit >= 0 else go(2 * node + 1, mid, right)

        return go(1, 0, self.size)

    def set(self, row: int, space: int) -> None:
        i = row + self.size
        self.t[i] = space
        while i > 1:
            i //= 2
            self.t[i] = max(self.t[2 * i], self.t[2 * i + 1])


def pack(examples: Sequence[Mapping], seq_len: int, *, pad_id: int = 0,
         max_segments: int | None = None, max_images: int | None = None) -> dict:
    """Greedy first-fit packing of ``examples`` into rows of ``seq_len`` (see module docstring).

    Each example is ``{"tokens": int32[n], "loss_mask": bool[n], "positions": int32[n]
    (optional), "images": list (optional)}``. ``max_segments`` / ``max_images`` cap the examples /
    images per row (static shapes for attention bookkeeping and the image batch).
    """
    lengths, n_images = [], []
    for i, ex in enumerate(examples):
        n = len(ex["tokens"])
        if len(ex["loss_mask"]) != n or ("positions" in ex and len(ex["positions"]) != n):
            raise ValueError(f"example {i}: tokens, loss_mask and positions differ in length")
        if n == 0 or n > seq_len:
            raise ValueError(f"example {i} has {n} tokens; packing needs 1..seq_len={seq_len}. "
                             "Truncate when tokenising or raise seq_len")
        k = len(ex.get("images", ()))
        if max_images is not None and k > max_images:
            raise ValueError(f"example {i} has {k} images, more than max_images={max_images}")
        lengths.append(n)
        n_images.append(k)

    fit = _FirstFit(len(examples), seq_len)
    rows: list[list[int]] = []
    used: list[int] = []
    imgs: list[int] = []
    for i, (n, k) in enumerate(zip(lengths, n_images)):
        r = fit.find(n)
        while k and max_images is not None and 0 <= r < len(rows) and imgs[r] + k > max_images:
            r = fit.find(n, r + 1)
        if r == len(rows):
            rows.append([])
            used.append(0)
            imgs.append(0)
        rows[r].append(i)
        used[r] += n
        imgs[r] += k
        full = max_segments is not None and len(rows[r]) >= max_segments
        fit.set(r, -1 if full else seq_len - used[r])

    shape = (len(rows), seq_len)
    out = {"tokens": np.full(shape, pad_id, np.int32), "loss_mask": np.zeros(shape, bool),
           "segment_ids": np.zeros(shape, np.int32), "positions": np.zeros(shape, np.int32)}
    for r, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members, 1):
            ex, n = examples[i], lengths[i]
            out["tokens"][r, at:at + n] = ex["tokens"]
            out["loss_mask"][r, at:at + n] = ex["loss_mask"]
            out["segment_ids"][r, at:at + n] = s
            out["positions"][r, at:at + n] = ex["positions"] if "positions" in ex else np.arange(n)
            at += n
    out["examples"] = rows
    out["images"] = [[im for i in members for im in examples[i].get("images", ())]
                     for members in rows]
    return out


def packing_efficiency(packed: Mapping) -> float:
    """Fraction of token slots that hold a real token (1.0 = no padding)."""
    seg = np.asarray(packed["segment_ids"])
    return float((seg > 0).mean()) if seg.size else 0.0
