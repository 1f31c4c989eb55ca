"""Difference hash (dHash) of images and a Hamming-radius index over such hashes.

dHash follows the common definition (the ``imagehash`` package): grey-scale, resize to
``(size + 1) x size`` with Lanczos, then bit ``[r, c]`` is ``pixel[r, c + 1] > pixel[r, c]``. Bits
are read row-major into an integer, first bit most significant, so ``f"{h:016x}"`` matches
imagehash's hex string for the default size 8.

Cambrian-1 used dHash to measure how many benchmark test images appear in its training data; the
builder uses the same hash for that leakage check and for near-duplicate removal.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
from PIL import Image

HASH_BITS = 64


def dhash(image: Image.Image, size: int = 8) -> int:
    """The ``size * size``-bit difference hash of ``image`` as a Python int."""
    grey = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    px = np.asarray(grey, dtype=np.int16)
    bits = (px[:, 1:] > px[:, :-1]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


class HashIndex:
    """Finds stored 64-bit hashes within ``max_distance`` bits of a query.

    Pigeonhole lookup: the hash is cut into ``max_distance + 1`` bit ranges; two hashes within that
    distance agree exactly on at least one range, so only hashes sharing a range are compared.
    """

    def __init__(self, max_distance: int = 0):
        if not 0 <= max_distance < HASH_BITS // 2:
            raise ValueError(f"max_distance must be in [0, {HASH_BITS // 2}), got {max_distance}")
        self.max_distance = max_distance
        n = max_distance + 1
        edges = [int(e) for e in np.linspace(0, HASH_BITS, n + 1)]
        self._masks = [(((1 << (hi - lo)) - 1) << lo, lo) for lo, hi in zip(edges[:-1], edges[1:])]
        self._tables: list[dict[int, list[tuple[int, Hashable]]]] = [{} for _ in range(n)]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, h: int, payload: Hashable) -> None:
        for (mask, shift), table in zip(self._masks, self._tables):
            table.setdefault((h & mask) >> shift, []).append((h, payload))
        self._size += 1

    def update(self, items: Iterable[tuple[int, Hashable]]) -> None:
        for h, payload in items:
            self.add(h, payload)

    def query(self, h: int) -> list[Hashable]:
        """Payloads of stored hashes within ``max_distance`` of ``h`` (each payload once)."""
        found: dict[Hashable, None] = {}
        for (mask, shift), table in zip(self._masks, self._tables):
            for other, payload in table.get((h & mask) >> shift, ()):
                if payload not in found and hamming(h, other) <= self.max_distance:
                    found[payload] = None
        return list(found)
