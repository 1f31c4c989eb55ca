"""Scorer lookup: (scorer name, harness, variant) -> scoring function.

A scorer is found by module path, as benchmarks and configs are: scorer ``"anls"`` is the module
``cambrian/eval/metrics/anls.py``, whose ``SCORERS`` table maps each harness to its variants
(``{harness: {label: function}}``, aliases as further labels of the same function). The first
label of a harness is its default variant, unless the module sets ``VARIANT_REQUIRED = True``.

A scoring function takes the raw generation and the item's fields as keywords and returns a float
(0-1; MME: a 0-200 category score) or ``None`` where that harness would hand the item to an LLM
judge or a random fallback. It applies the harness's own whitespace handling itself.

Each profile reproduces one commit of its harness (``PINS``); every scoring function's docstring
cites the code it reproduces as ``repo@commit:path:function`` (``fixed``: the Cambrian function it
corrects, and what it corrects).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from types import ModuleType

HARNESSES = ("cambrian", "lmms-eval", "vlmevalkit", "fixed")


@dataclasses.dataclass(frozen=True)
class Pin:
    """The harness commit a profile reproduces."""

    repo: str
    commit: str

    @property
    def short(self) -> str:
        """``repo@commit7``, as the scorers' docstrings cite it."""
        return f"{self.repo}@{self.commit[:7]}"


_CAMBRIAN = Pin("cambrian-mllm/cambrian", "539ffc3254bba004e5d012b65c0ad6cb308897c5")
PINS = {"cambrian": _CAMBRIAN,
        "lmms-eval": Pin("EvolvingLMMs-Lab/lmms-eval", "75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3"),
        "vlmevalkit": Pin("open-compass/VLMEvalKit", "e8e78f05f3080fe28154f2130321f17951c3be94"),
        "fixed": _CAMBRIAN}
_HARNESS_ALIASES = {"cambrian": "cambrian", "lmmseval": "lmms-eval", "vlmevalkit": "vlmevalkit",
                    "fixed": "fixed"}

Scorer = Callable[..., float | None]


class ScorerNotFound(KeyError):
    """No scorer is registered for the requested (name, harness, variant)."""

    def __str__(self) -> str:
        return str(self.args[0])


class HarnessError(RuntimeError):
    """The reference harness itself raises on this input (e.g. on an empty generation)."""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def harness_name(harness: str) -> str:
    """Canonical harness name ('lmms_eval' -> 'lmms-eval'); raises ``ScorerNotFound`` if unknown."""
    key = _HARNESS_ALIASES.get(_norm(harness))
    if key is None:
        raise ScorerNotFound(f"unknown harness {harness!r}; expected one of {HARNESSES}")
    return key


def labels(entries: Mapping[str | tuple[str, ...], Scorer]) -> dict[str, Scorer]:
    """``{("name", "alias", ...): fn}`` -> ``{"name": fn, "alias": fn, ...}``."""
    out: dict[str, Scorer] = {}
    for names, fn in entries.items():
        for name in (names,) if isinstance(names, str) else names:
            out[name] = fn
    return out


def _module(name: str) -> ModuleType | None:
    if not name.isidentifier():
        return None
    try:
        module = importlib.import_module(f"cambrian.eval.metrics.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"cambrian.eval.metrics.{name}":
            raise
        return None
    return module if hasattr(module, "SCORERS") else None


@functools.cache
def _table(name: str, harness: str) -> dict[str, Scorer] | None:
    """{normalised label: function} of one scorer and harness; labels that normalise alike must
    name the same function."""
    module = _module(name)
    if module is None or harness not in module.SCORERS:
        return None
    out: dict[str, Scorer] = {}
    for label, fn in module.SCORERS[harness].items():
        if out.setdefault(_norm(label), fn) is not fn:
            raise ValueError(f"{module.__name__}: {harness} variant {label!r} clashes with "
                             "another label")
    return out


def resolve(name: str, harness: str = "cambrian", variant: str | None = None) -> Scorer:
    """The scoring function for ``name`` under ``harness`` (and ``variant``, default: primary)."""
    harness = harness_name(harness)
    table = _table(name, harness)
    if table is None:
        known = sorted(n for n, hs in available_names().items() if harness in hs)
        raise ScorerNotFound(f"no scorer {name!r} for harness {harness!r}; "
                             f"registered for it: {known}")
    module = _module(name)
    known_labels = list(module.SCORERS[harness])
    if variant is None:
        if getattr(module, "VARIANT_REQUIRED", False):
            raise ScorerNotFound(f"scorer {name!r} of {harness!r} needs a variant; "
                                 f"known variants: {known_labels}")
        return module.SCORERS[harness][known_labels[0]]
    fn = table.get(_norm(variant))
    if fn is None:
        raise ScorerNotFound(f"scorer {name!r} of {harness!r} has no variant {variant!r}; "
                             f"known variants: {known_labels}")
    return fn


@functools.cache
def available_names() -> dict[str, tuple[str, ...]]:
    """{scorer name: harnesses it has}: every module of ``cambrian/eval/metrics`` with SCORERS."""
    from cambrian.eval import metrics

    out = {}
    for info in pkgutil.iter_modules(metrics.__path__):
        module = _module(info.name)
        if module is not None:
            out[info.name] = tuple(module.SCORERS)
    return out


def available() -> dict[tuple[str, str], list[str]]:
    """{(name, harness): [variant labels]} for every scorer."""
    return {(name, h): list(_module(name).SCORERS[h])
            for name, harnesses in sorted(available_names().items()) for h in harnesses}
