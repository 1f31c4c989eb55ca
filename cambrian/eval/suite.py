"""Benchmark suites: which benchmarks a run evaluates, and the folder each one reads.

A benchmark is found by module path, as configs are: ``"mme"`` is the module
``cambrian/eval/benchmarks/mme.py``, with ``NAME``, ``GROUP``, ``MAX_NEW_TOKENS``, ``SOURCE``
(``common.Source``: the hub repo and the files of it that are read), ``load(folder, limit=None)``
and ``score(records, profile)``. A module that defines a family of benchmarks (``synthetic``) lists
them in its ``BENCHMARKS`` table under ``<module>_<member>`` names.

Each downloaded benchmark reads its own folder, ``eval.root/<name>/`` (or ``eval.roots.<name>``),
holding the snapshot of its ``SOURCE`` repo. The synthetic benchmarks are generated into the cache.
"""

from __future__ import annotations

import importlib
import posixpath

import ml_collections as mlc

from cambrian.eval.benchmarks import synthetic

SUITES: dict[str, tuple[str, ...]] = {
    "synthetic": tuple(synthetic.BENCHMARKS),
    "cambrian": ("mme", "mmbench", "seed", "gqa", "scienceqa", "mmmu", "mathvista", "ai2d",
                 "chartqa", "ocrbench", "textvqa", "docvqa", "mmvp", "realworldqa", "cvbench"),
    "extras": ("vstar", "pope", "mmstar", "blink"),
}
# Benchmarks read from downloaded copies of their hub repos (the keys of eval.roots).
DOWNLOADED: tuple[str, ...] = SUITES["cambrian"] + SUITES["extras"]


def _module(name: str):
    if not name.isidentifier():
        return None
    try:
        return importlib.import_module(f"cambrian.eval.benchmarks.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"cambrian.eval.benchmarks.{name}":
            raise
        return None


def benchmark(name: str):
    """The benchmark called ``name`` (module ``cambrian.eval.benchmarks.<name>``, or member
    ``name`` of the family module named by its first word)."""
    module = _module(name)
    if module is not None and hasattr(module, "load"):
        return module
    family = _module(name.split("_", 1)[0])
    if family is not None and name in getattr(family, "BENCHMARKS", {}):
        return family.BENCHMARKS[name]
    raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(DOWNLOADED)}, "
                     f"{', '.join(SUITES['synthetic'])}")


def get(name: str) -> list:
    """Suite name, or comma-separated benchmark names -> benchmarks."""
    names = SUITES.get(name) or tuple(n for n in name.split(",") if n)
    if not names:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    return [benchmark(n) for n in names]


def folder(bench, config: mlc.ConfigDict) -> str:
    """The folder ``bench`` reads: ``eval.roots.<name>`` if set, else ``eval.root/<name>``; for
    a synthetic benchmark ``eval.root`` itself, or the generated data in the cache."""
    if bench.NAME in synthetic.BENCHMARKS:
        return config.eval.root or synthetic.root(config.cache_dir,
                                                  config.data.synthetic.to_dict())
    name = folder_name(bench)
    return config.eval.roots[name] or posixpath.join(config.eval.root.rstrip("/"), name)


def folder_name(bench) -> str:
    """A benchmark reads its own folder, or another's named by ``FOLDER`` (``vstar_search``
    reads ``vstar``'s)."""
    return getattr(bench, "FOLDER", bench.NAME)


def folder_field(bench, config: mlc.ConfigDict) -> str:
    """The config field that decides ``folder(bench, config)``."""
    name = folder_name(bench)
    return f"eval.roots.{name}" if config.eval.roots[name] else "eval.root"
