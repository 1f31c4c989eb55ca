"""The data-recipe model: which sources make up a mixture, how much of each, in what proportions.

A recipe file is a Python file with ``get_recipe(arg=None)`` returning a ``Recipe`` (or a
ConfigDict / dict with the same fields). ``arg`` is the string after ``:`` in
``data_recipes/cambrian_7m.py:root=/data/cambrian,t=250000`` and is read with
``cambrian.config.parse_arg``, as a config's ``:arg`` is.

How the builder turns a recipe into counts (all deterministic given ``seed``):

1. every record is checked, exact and near duplicates are dropped, and (optionally) records whose
   image appears in a benchmark are dropped -> each source's *available* records;
2. ``remove`` records are dropped at random (Cambrian-7M's DVQA / CLEVR removals);
3. the source's *quota* is ``round(weight * remaining)``, then at most ``cap`` (the per-source
   threshold t of Cambrian-1 §4.2); a weight above 1 repeats records;
4. with ``ratios``, each category gets ``total * ratio`` records (``total`` omitted: the largest
   total every category can supply), shared among its sources in proportion to their quotas; with
   only ``total``, all quotas are scaled to it. A category that cannot supply its share keeps what
   it has and the shortfall is reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import json
import re
from collections.abc import Mapping
from typing import Any

from cambrian.config import ConfigError
from cambrian.config import parse_arg as parse_arg  # what recipe files call
from cambrian.data.prompts import PromptRule
from cambrian.data.readers import FORMATS


class RecipeError(ValueError):
    """A recipe is invalid; the message names the recipe, the source and the field."""


def _tuple(v: Any) -> tuple:
    if v is None:
        return ()
    return (v,) if isinstance(v, str) else tuple(v)


@dataclasses.dataclass(frozen=True)
class Source:
    """One data source: annotation file(s), where its images are, and how much of it to keep.

    Several sources may read the same annotation file (a mixed file such as Cambrian10M.jsonl);
    each claims the records whose ``match_field`` is in ``match`` and whose first image path starts
    with one of ``image_prefix`` (empty = no condition); ``has_image`` restricts to records with
    (True) or without (False) images. A record goes to the first source, in recipe order, that
    claims it.
    """

    name: str
    path: tuple[str, ...]
    category: str
    format: str = "llava"
    images: tuple[str, ...] = ()
    match: tuple[str, ...] = ()
    match_field: str = "source"
    image_prefix: tuple[str, ...] = ()
    has_image: bool | None = None
    remove: int = 0
    weight: float = 1.0
    cap: int | None = None
    prompts: tuple[PromptRule, ...] = ()
    case_insensitive_images: bool = False

    def __post_init__(self):
        for f in ("path", "images", "match", "image_prefix", "prompts"):
            object.__setattr__(self, f, _tuple(getattr(self, f)))
        object.__setattr__(self, "prompts", tuple(
            p if isinstance(p, PromptRule) else PromptRule(p) if isinstance(p, str)
            else PromptRule(**p) for p in self.prompts))
        where = f"source {self.name!r}"
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name or ""):
            raise RecipeError(f"{where}: name must be letters, digits, '_', '-' or '.'")
        if not self.path:
            raise RecipeError(f"{where}: 'path' names no annotation file")
        if self.format not in FORMATS:
            raise RecipeError(
                f"{where}: unknown format {self.format!r}; known: {', '.join(FORMATS)}")
        if not self.category:
            raise RecipeError(f"{where}: 'category' is empty")
        if self.remove < 0 or (self.cap is not None and self.cap < 0):
            raise RecipeError(f"{where}: 'remove' and 'cap' must be >= 0")
        if not self.weight > 0:
            raise RecipeError(f"{where}: 'weight' must be > 0, got {self.weight}")

    def claims(self, rec: dict) -> bool:
        """Whether this source takes ``rec`` (a record of one of its annotation files)."""
        if self.match and rec.get(self.match_field) not in self.match:
            return False
        img = rec.get("image")
        first = img[0] if isinstance(img, list) and img else img
        if self.has_image is not None and bool(first) != self.has_image:
            return False
        if self.image_prefix:
            return isinstance(first, str) and first.startswith(self.image_prefix)
        return True


@dataclasses.dataclass(frozen=True)
class Dedup:
    """Drop later copies of a record: same image bytes and text (exact), or same image dHash
    within ``max_distance`` bits and same text (perceptual: re-encoded or resized copies)."""

    exact: bool = True
    perceptual: bool = True
    max_distance: int = 0


@dataclasses.dataclass(frozen=True)
class Leakage:
    """Check training images against benchmark images by dHash (Cambrian-1 §4.1).

    ``benchmarks`` maps a benchmark name to its images (folder, .tar or .parquet). ``action`` is
    ``"drop"`` (remove matching records) or ``"report"`` (keep them, count them in the manifest).
    """

    benchmarks: Mapping[str, str]
    max_distance: int = 0
    action: str = "drop"

    def __post_init__(self):
        object.__setattr__(self, "benchmarks", dict(self.benchmarks))
        if self.action not in ("drop", "report"):
            raise RecipeError(f"leakage.action must be 'drop' or 'report', got {self.action!r}")
        if not self.benchmarks:
            raise RecipeError("leakage.benchmarks is empty")


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    sources: tuple[Source, ...]
    seed: int = 0
    total: int | None = None
    ratios: Mapping[str, float] | None = None
    dedup: Dedup = Dedup()
    leakage: Leakage | None = None
    shard_size: int = 10_000
    version: str = "1.0.0"
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.ratios is not None:
            object.__setattr__(self, "ratios", dict(self.ratios))
        where = f"recipe {self.name!r}"
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise RecipeError(f"{where}: name must be snake_case (it names the TFDS dataset)")
        if not self.sources:
            raise RecipeError(f"{where}: no sources")
        names = [s.name for s in self.sources]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise RecipeError(f"{where}: duplicate source names {dup}")
        if self.total is not None and self.total < 0:
            raise RecipeError(f"{where}: total must be >= 0")
        if self.shard_size < 1:
            raise RecipeError(f"{where}: shard_size must be >= 1")
        if self.ratios is not None:
            cats = {s.category for s in self.sources}
            if bad := {c: r for c, r in self.ratios.items() if not r > 0}:
                raise RecipeError(f"{where}: ratios must be > 0, got {bad}")
            if missing := sorted(cats - set(self.ratios)):
                raise RecipeError(f"{where}: categories {missing} have sources but no ratio")
            if extra := sorted(set(self.ratios) - cats):
                raise RecipeError(f"{where}: ratios name categories {extra} that no source has")

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(s.category for s in self.sources))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """sha256 of the recipe's canonical JSON: equal recipes build equal datasets."""
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def _build(cls, d: Any, where: str):
    if isinstance(d, cls):
        return d
    if hasattr(d, "to_dict"):  # ml_collections.ConfigDict
        d = d.to_dict()
    if not isinstance(d, Mapping):
        raise RecipeError(
            f"{where}: expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
    fields = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(d) - fields):
        raise RecipeError(f"{where}: unknown field(s) {unknown}; known: {sorted(fields)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise RecipeError(f"{where}: {e}") from e


def from_dict(d: Any) -> Recipe:
    """A ``Recipe`` from a dict / ConfigDict; unknown fields are errors."""
    if isinstance(d, Recipe):
        return d
    if hasattr(d, "to_dict"):
        d = d.to_dict()
    d = dict(d)
    name = d.get("name", "?")
    d["sources"] = tuple(_build(Source, s, f"recipe {name!r}: sources[{i}]")
                         for i, s in enumerate(d.get("sources", ())))
    if "dedup" in d:
        d["dedup"] = _build(Dedup, d["dedup"], f"recipe {name!r}: dedup")
    if d.get("leakage") is not None:
        d["leakage"] = _build(Leakage, d["leakage"], f"recipe {name!r}: leakage")
    return _build(Recipe, d, f"recipe {name!r}")


def load_recipe(spec: str) -> Recipe:
    """Runs ``get_recipe`` of ``path.py[:arg]`` and validates the result."""
    path, _, arg = spec.partition(".py:")
    path = path if path.endswith(".py") else path + ".py"
    try:
        mod_spec = importlib.util.spec_from_file_location("_recipe", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    except FileNotFoundError as e:
        raise RecipeError(f"recipe file not found: {path}") from e
    if not hasattr(module, "get_recipe"):
        raise RecipeError(f"{path}: defines no get_recipe(arg=None)")
    takes_arg = bool(inspect.signature(module.get_recipe).parameters)
    if arg and not takes_arg:
        raise RecipeError(f"{path}: get_recipe() takes no argument but {arg!r} was given")
    try:
        return from_dict(module.get_recipe(arg or None) if takes_arg else module.get_recipe())
    except ConfigError as e:  # a bad :arg
        raise RecipeError(f"{path}: {e}") from e
