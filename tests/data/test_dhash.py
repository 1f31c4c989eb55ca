import io

import numpy as np
import pytest
from PIL import Image

from cambrian.data.dhash import HashIndex, dhash, hamming

from .fakes import block_image, encode


def test_dhash_hand_derived():
    # A 9x8 grey image needs no resizing: even rows rise left to right (bits 1), odd rows fall (0).
    px = np.array([[100 + (10 * c if r % 2 == 0 else -10 * c) for c in range(9)]
                   for r in range(8)], np.uint8)
    assert dhash(Image.fromarray(px)) == 0xFF00FF00FF00FF00
    # Row-major, first bit most significant: only pixel [0, 1] > [0, 0] -> the top bit.
    px = np.full((8, 9), 50, np.uint8)
    px[0, 1] = 60
    assert dhash(Image.fromarray(px)) == 1 << 63
    assert dhash(Image.fromarray(np.full((8, 9), 7, np.uint8))) == 0


def test_dhash_is_stable_under_reencoding_and_resizing():
    img = block_image(3)
    h = dhash(img)
    bmp = Image.open(io.BytesIO(encode(img, "BMP")))
    assert dhash(bmp) == h  # lossless re-encoding: identical pixels
    jpeg = Image.open(io.BytesIO(encode(img, "JPEG", quality=90)))
    assert hamming(dhash(jpeg), h) <= 2
    assert hamming(dhash(img.resize((27, 24))), h) <= 2
    assert hamming(dhash(block_image(4)), h) > 8


def test_hamming():
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64


@pytest.mark.parametrize("max_distance", [0, 1, 3, 6])
def test_hash_index_matches_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    stored = [int(x) for x in rng.integers(0, 2**63, size=300, dtype=np.int64)]
    # queries: some stored hashes with a few bits flipped, some random
    queries = []
    for h in stored[:60]:
        for b in rng.choice(64, size=int(rng.integers(0, 8)), replace=False):
            h ^= 1 << int(b)
        queries.append(h)
    queries += [int(x) for x in rng.integers(0, 2**63, size=40, dtype=np.int64)]
    index = HashIndex(max_distance)
    index.update((h, i) for i, h in enumerate(stored))
    assert len(index) == len(stored)
    for q in queries:
        want = {i for i, h in enumerate(stored) if hamming(h, q) <= max_distance}
        assert set(index.query(q)) == want


def test_hash_index_rejects_bad_radius():
    with pytest.raises(ValueError, match="max_distance"):
        HashIndex(32)
