"""Pure selection steps of the builder: duplicates, benchmark leakage, quotas, subsampling.

Everything here works on plain keys and counts so the arithmetic can be checked by hand; the
builder (``build.py``) feeds it the scanned records.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from cambrian.data.dhash import HashIndex, hamming
from cambrian.data.recipe import Dedup, Recipe


@dataclasses.dataclass(frozen=True)
class Key:
    """What dedup and leakage look at in one record."""

    sha1s: tuple[str, ...]
    dhashes: tuple[int, ...]
    text: bytes


def find_duplicates(keys: Sequence[Key], dedup: Dedup) -> list[str | None]:
    """For each record, ``"duplicate_exact"`` / ``"duplicate_perceptual"`` if an earlier record
    is a copy of it, else None. Records without images are compared on text alone."""
    out: list[str | None] = []
    exact: set = set()
    near: dict[bytes, list[tuple[int, ...]]] = {}
    for k in keys:
        reason = None
        if dedup.exact and (k.sha1s, k.text) in exact:
            reason = "duplicate_exact"
        elif dedup.perceptual and k.dhashes:
            seen = near.get(k.text, ())
            if any(len(o) == len(k.dhashes)
                   and all(hamming(a, b) <= dedup.max_distance for a, b in zip(o, k.dhashes))
                   for o in seen):
                reason = "duplicate_perceptual"
        out.append(reason)
        if reason is None:
            exact.add((k.sha1s, k.text))
            if k.dhashes:
                near.setdefault(k.text, []).append(k.dhashes)
    return out


def find_leaks(dhashes: Sequence[tuple[int, ...]], benchmark: Sequence[tuple[int, Hashable]],
               max_distance: int) -> list[list[Hashable]]:
    """For each record's image hashes, the benchmark images (payloads) within ``max_distance``."""
    index = HashIndex(max_distance)
    index.update(benchmark)
    out = []
    for hs in dhashes:
        hits: dict[Hashable, None] = {}
        for h in hs:
            hits.update(dict.fromkeys(index.query(h)))
        out.append(list(hits))
    return out


def largest_remainder(weights: Sequence[float], total: int) -> list[int]:
    """Non-negative integers proportional to ``weights`` that sum to ``total``.

    Floors first, then one more for the largest remainders (earlier index wins ties).
    """
    s = float(sum(weights))
    if total == 0 or s == 0:
        if total:
            raise ValueError(f"cannot share {total} among zero weights")
        return [0] * len(weights)
    exact = [w * total / s for w in weights]
    base = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


@dataclasses.dataclass
class Allocation:
    quota: dict[str, int]  # per source, after remove / weight / cap
    requested: dict[str, int]  # per source, after category ratios / total
    category_requested: dict[str, int]
    shortfall: dict[str, int]  # per category: requested but not available


def allocate(recipe: Recipe, available: Mapping[str, int]) -> Allocation:
    """How many records each source contributes (see the recipe module docstring)."""
    quota = {}
    for s in recipe.sources:
        left = max(0, available[s.name] - s.remove)
        q = math.floor(s.weight * left + 0.5)
        quota[s.name] = q if s.cap is None else min(q, s.cap)
    by_cat = {c: [s.name for s in recipe.sources if s.category == c] for c in recipe.categories}
    supply = {c: sum(quota[n] for n in names) for c, names in by_cat.items()}

    if recipe.ratios is not None:
        cats = list(by_cat)
        r = [recipe.ratios[c] for c in cats]
        if recipe.total is not None:
            total = recipe.total
        else:  # the largest total every category can supply at these ratios
            total = math.floor(min(supply[c] * sum(r) / rc for c, rc in zip(cats, r)))
            while total and any(t > supply[c] for c, t in zip(cats, largest_remainder(r, total))):
                total -= 1
        cat_target = dict(zip(cats, largest_remainder(r, total)))
    elif recipe.total is not None:
        cat_target = {"*": recipe.total}
        by_cat = {"*": [s.name for s in recipe.sources]}
        supply = {"*": sum(quota.values())}
    else:
        cat_target = dict(supply)

    requested, shortfall = {}, {}
    for c, names in by_cat.items():
        take = min(cat_target[c], supply[c])
        shortfall[c] = cat_target[c] - take
        requested.update(zip(names, largest_remainder([quota[n] for n in names], take)))
    if "*" in cat_target:
        cat_target = {c: sum(requested[s.name] for s in recipe.sources if s.category == c)
                      for c in recipe.categories}
        shortfall = {c: 0 for c in recipe.categories} | {"*": shortfall["*"]}
    return Allocation(quota, requested, cat_target, shortfall)


def source_rng(seed: int, name: str) -> np.random.Generator:
    """Each source draws from its own stream: editing one source leaves the others' picks alone."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def choose(n: int, remove: int, count: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(removed indices, chosen indices with repeats) out of ``range(n)``, both sorted."""
    perm = rng.permutation(n)
    removed, rest = perm[:remove], perm[remove:]
    if count > len(rest):
        if not len(rest):
            raise ValueError(f"cannot draw {count} records from an empty source")
        reps, extra = divmod(count, len(rest))
        chosen = np.concatenate([np.tile(rest, reps), rest[:extra]])
    else:
        chosen = rest[:count]
    return np.sort(removed), np.sort(chosen)
