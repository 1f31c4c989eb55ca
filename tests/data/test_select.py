import numpy as np
import pytest

from cambrian.data.recipe import Dedup, Recipe, Source
from cambrian.data.select import (
    Key,
    allocate,
    choose,
    find_duplicates,
    find_leaks,
    largest_remainder,
    source_rng,
)


def _recipe(sources, **kw):
    return Recipe(name="t", sources=tuple(Source(name=n, path="x.json", category=c, **o)
                                          for n, c, o in sources), **kw)


def test_largest_remainder_by_hand():
    assert largest_remainder([5, 3, 2], 7) == [4, 2, 1]  # 3.5, 2.1, 1.4 -> floors 3, 2, 1
    assert largest_remainder([1, 1, 1], 2) == [1, 1, 0]  # ties go to the earlier entry
    assert largest_remainder([100, 50], 30) == [20, 10]
    assert largest_remainder([0, 0], 0) == [0, 0]
    with pytest.raises(ValueError):
        largest_remainder([0, 0], 1)


def test_caps_remove_and_weights():
    r = _recipe([("a", "g", {"cap": 30}), ("b", "g", {}), ("c", "o", {"remove": 5, "cap": 10}),
                 ("d", "o", {"weight": 2.5}), ("e", "o", {"weight": 0.5})])
    alloc = allocate(r, {"a": 100, "b": 50, "c": 20, "d": 10, "e": 7})
    assert alloc.quota == {"a": 30, "b": 50, "c": 10, "d": 25, "e": 4}  # e: round(3.5) = 4
    assert alloc.requested == alloc.quota
    assert alloc.category_requested == {"g": 80, "o": 39}


def test_ratios_with_total():
    r = _recipe([("g1", "general", {}), ("g2", "general", {}), ("o1", "ocr", {})],
                ratios={"general": 0.75, "ocr": 0.25}, total=40)
    alloc = allocate(r, {"g1": 100, "g2": 50, "o1": 20})
    assert alloc.category_requested == {"general": 30, "ocr": 10}
    assert alloc.requested == {"g1": 20, "g2": 10, "o1": 10}
    assert alloc.shortfall == {"general": 0, "ocr": 0}


def test_ratios_without_total_take_the_largest_feasible_total():
    r = _recipe([("g1", "general", {}), ("g2", "general", {}), ("o1", "ocr", {})],
                ratios={"general": 3, "ocr": 1})  # ratios need not sum to 1
    alloc = allocate(r, {"g1": 100, "g2": 50, "o1": 20})
    # ocr limits: 20 / 0.25 = 80 in total -> 60 general (40 + 20), 20 ocr
    assert alloc.requested == {"g1": 40, "g2": 20, "o1": 20}


def test_ratio_shortfall_is_reported():
    r = _recipe([("g1", "general", {}), ("g2", "general", {}), ("o1", "ocr", {})],
                ratios={"general": 0.75, "ocr": 0.25}, total=200)
    alloc = allocate(r, {"g1": 100, "g2": 50, "o1": 20})
    assert alloc.category_requested == {"general": 150, "ocr": 50}
    assert alloc.requested == {"g1": 100, "g2": 50, "o1": 20}
    assert alloc.shortfall == {"general": 0, "ocr": 30}


def test_total_without_ratios_scales_every_source():
    r = _recipe([("a", "g", {}), ("b", "o", {"cap": 50})], total=30)
    alloc = allocate(r, {"a": 100, "b": 80})
    assert alloc.requested == {"a": 20, "b": 10}
    assert alloc.category_requested == {"g": 20, "o": 10}


def test_choose_counts_and_determinism():
    removed, chosen = choose(10, 3, 5, source_rng(0, "a"))
    assert len(removed) == 3 and len(chosen) == 5 and not set(removed) & set(chosen)
    again = choose(10, 3, 5, source_rng(0, "a"))
    assert all((x == y).all() for x, y in zip((removed, chosen), again))
    assert not np.array_equal(choose(10, 3, 5, source_rng(1, "a"))[1], chosen)  # other seed
    assert not np.array_equal(choose(10, 3, 5, source_rng(0, "b"))[1], chosen)  # other source
    _, rep = choose(4, 0, 10, source_rng(0, "a"))  # weight > 1: every record twice, 2 thrice
    counts = np.bincount(rep, minlength=4)
    assert sorted(counts) == [2, 2, 3, 3]


def test_find_duplicates():
    t1, t2 = b"text-1", b"text-2"
    keys = [Key(("s1",), (0xF0,), t1),
            Key(("s1",), (0xF0,), t1),  # same bytes, same text
            Key(("s2",), (0xF0,), t1),  # re-encoded: other bytes, same dHash, same text
            Key(("s3",), (0xF1,), t1),  # dHash 1 bit away
            Key(("s1",), (0xF0,), t2),  # same image, other question: kept
            Key((), (), t2),  # text-only
            Key((), (), t2)]
    assert find_duplicates(keys, Dedup()) == [
        None, "duplicate_exact", "duplicate_perceptual", None, None, None, "duplicate_exact"]
    assert find_duplicates(keys, Dedup(max_distance=1))[3] == "duplicate_perceptual"
    assert find_duplicates(keys, Dedup(perceptual=False))[2] is None
    assert find_duplicates(keys, Dedup(exact=False, perceptual=False)) == [None] * 7


def test_find_leaks():
    bench = [(0b1111, ("mmvp", "1.jpg")), (0b0000, ("cvbench", "2.png"))]
    got = find_leaks([(0b1111,), (0b0111,), (), (0b0001, 0b1111)], bench, max_distance=1)
    assert got == [[("mmvp", "1.jpg")], [("mmvp", "1.jpg")], [],
                   [("cvbench", "2.png"), ("mmvp", "1.jpg")]]
    assert find_leaks([(0b0111,)], bench, max_distance=0) == [[]]
