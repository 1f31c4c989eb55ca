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

``FirstFit`` is the same placement online, into a fixed number of rows (a training batch fed from
a stream: the first example that fits nowhere starts the next batch); ``layout`` builds the arrays
above for a placement. ``packing_efficiency`` is the fraction of the R * T slots holding a real
token.
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


class FirstFit:
    """Online first-fit placement into at most ``max_rows`` rows of ``seq_len`` slots.

    ``place(n, k)`` puts an example of ``n`` tokens and ``k`` images into the first open row with
    room (opening a new row when none has and fewer than ``max_rows`` are open) and returns the
    row, or -1 when it fits nowhere; ``rows`` lists the placed example numbers per row.
    Placement never moves an earlier example, so the rows of a prefix of a stream do not depend
    on what comes after it.
    """

    def __init__(self, max_rows: int, seq_len: int, *, max_segments: int | None = None,
                 max_images: int | None = None):
        self.seq_len, self.max_segments, self.max_images = seq_len, max_segments, max_images
        self._fit = _FirstFit(max_rows, seq_len)
        self.rows: list[list[int]] = []
        self._used: list[int] = []
        self._imgs: list[int] = []
        self._placed = 0

    def place(self, n: int, k: int = 0) -> int:
        if n == 0 or n > self.seq_len:
            raise ValueError(f"example {self._placed} has {n} tokens; packing needs "
                             f"1..seq_len={self.seq_len}. Truncate when tokenising or raise "
                             "seq_len")
        cap = self.max_images
        if cap is not None and k > cap:
            raise ValueError(f"example {self._placed} has {k} images, more than "
                             f"max_images={cap}")
        fit = self._fit
        r = fit.find(n)
        while k and cap is not None and 0 <= r < len(self.rows) and self._imgs[r] + k > cap:
            r = fit.find(n, r + 1)
        if r < 0:
            return -1
        if r == len(self.rows):
            self.rows.append([])
            self._used.append(0)
            self._imgs.append(0)
        self.rows[r].append(self._placed)
        self._placed += 1
        self._used[r] += n
        self._imgs[r] += k
        full = self.max_segments is not None and len(self.rows[r]) >= self.max_segments
        fit.set(r, -1 if full else self.seq_len - self._used[r])
        return r


def pack(examples: Sequence[Mapping], seq_len: int, *, pad_id: int = 0,
         max_segments: int | None = None, max_images: int | None = None) -> dict:
    """Greedy first-fit packing of ``examples`` into rows of ``seq_len`` (see module docstring).

    Each example is ``{"tokens": int32[n], "loss_mask": bool[n], "positions": int32[n]
    (optional), "images": list (optional)}``. ``max_segments`` / ``max_images`` cap the examples /
    images per row (static shapes for attention bookkeeping and the image batch).
    """
    for i, ex in enumerate(examples):
        n = len(ex["tokens"])
        if len(ex["loss_mask"]) != n or ("positions" in ex and len(ex["positions"]) != n):
            raise ValueError(f"example {i}: tokens, loss_mask and positions differ in length")
    fit = FirstFit(len(examples), seq_len, max_segments=max_segments, max_images=max_images)
    for ex in examples:
        fit.place(len(ex["tokens"]), len(ex.get("images", ())))
    return layout(examples, fit.rows, seq_len, pad_id=pad_id)


def layout(examples: Sequence[Mapping], rows: Sequence[Sequence[int]], seq_len: int, *,
           pad_id: int = 0, num_rows: int | None = None) -> dict:
    """The arrays of ``pack`` for a given placement (``rows``: example numbers per row, in
    segment order); ``num_rows`` pads with empty rows up to a fixed count."""
    shape = (max(len(rows), num_rows or 0), seq_len)
    out = {"tokens": np.full(shape, pad_id, np.int32), "loss_mask": np.zeros(shape, bool),
           "segment_ids": np.zeros(shape, np.int32), "positions": np.zeros(shape, np.int32)}
    for r, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members, 1):
            ex = examples[i]
            n = len(ex["tokens"])
            out["tokens"][r, at:at + n] = ex["tokens"]
            out["loss_mask"][r, at:at + n] = ex["loss_mask"]
            out["segment_ids"][r, at:at + n] = s
            out["positions"][r, at:at + n] = ex["positions"] if "positions" in ex else np.arange(n)
            at += n
    out["examples"] = [list(m) for m in rows]
    out["images"] = [[im for i in members for im in examples[i].get("images", ())]
                     for members in rows]
    return out


def packing_efficiency(packed: Mapping) -> float:
    """Fraction of token slots that hold a real token (1.0 = no padding)."""
    seg = np.asarray(packed["segment_ids"])
    return float((seg > 0).mean()) if seg.size else 0.0
