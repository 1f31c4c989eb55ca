"""Scorer registry: (scorer name, harness) -> variant -> scoring function.

A scoring function takes the raw generation and the item's fields as keywords and returns a float
(0-1; MME: a 0-200 category score) or ``None`` where that harness would hand the item to an LLM
judge or a random fallback. It applies the harness's own whitespace handling itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable

HARNESSES = ("cambrian", "lmms-eval", "vlmevalkit", "fixed")
_HARNESS_ALIASES = {"cambrian": "cambrian", "cb": "cambrian", "lmmseval": "lmms-eval",
                    "le": "lmms-eval", "vlmevalkit": "vlmevalkit", "vk": "vlmevalkit",
                    "fixed": "fixed"}

Scorer = Callable[..., float | None]


class ScorerNotFound(KeyError):
    """No scorer is registered for the requested (name, harness, variant)."""

    def __str__(self) -> str:
        return str(self.args[0])


class HarnessError(RuntimeError):
    """The reference harness itself raises on this input (e.g. on an empty generation)."""


_VARIANTS: dict[tuple[str, str], dict[str, Scorer]] = {}
_DEFAULTS: dict[tuple[str, str], str] = {}
_LABELS: dict[tuple[str, str], list[str]] = {}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def harness_name(harness: str) -> str:
    """Canonical harness name ('lmms_eval' -> 'lmms-eval'); raises ``ScorerNotFound`` if unknown."""
    key = _HARNESS_ALIASES.get(_norm(harness))
    if key is None:
        raise ScorerNotFound(f"unknown harness {harness!r}; expected one of {HARNESSES}")
    return key


def register(name: str, harness: str, variant: str, *aliases: str,
             default: bool = False) -> Callable[[Scorer], Scorer]:
    """Registers ``fn`` as scorer ``name`` of ``harness`` under ``variant`` and its aliases."""

    def wrap(fn: Scorer) -> Scorer:
        key = (name, harness_name(harness))
        table = _VARIANTS.setdefault(key, {})
        for label in (variant, *aliases):
            norm = _norm(label)
            if norm in table and table[norm] is not fn:
                raise ValueError(f"scorer {key} variant {label!r} registered twice")
            table[norm] = fn
        _LABELS.setdefault(key, []).append(variant)
        if default:
            _DEFAULTS[key] = _norm(variant)
        return fn

    return wrap


def resolve(name: str, harness: str = "cambrian", variant: str | None = None) -> Scorer:
    """The scoring function for ``name`` under ``harness`` (and ``variant``, default: primary)."""
    key = (name, harness_name(harness))
    if key not in _VARIANTS:
        known = sorted({n for n, h in _VARIANTS if h == key[1]})
        raise ScorerNotFound(f"no scorer {name!r} for harness {key[1]!r}; "
                             f"registered for it: {known}")
    table = _VARIANTS[key]
    if variant is None and key not in _DEFAULTS:
        raise ScorerNotFound(f"scorer {name!r} of {key[1]!r} needs a variant; "
                             f"known variants: {_LABELS[key]}")
    fn = table.get(_DEFAULTS[key] if variant is None else _norm(variant))
    if fn is None:
        raise ScorerNotFound(f"scorer {name!r} of {key[1]!r} has no variant {variant!r}; "
                             f"known variants: {_LABELS[key]}")
    return fn


def available() -> dict[tuple[str, str], list[str]]:
    """{(name, harness): [variant labels]} for every registered scorer."""
    return {k: list(v) for k, v in sorted(_LABELS.items())}
