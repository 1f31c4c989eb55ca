"""Checks that everything a run reads exists, before any model is built.

Each problem is one line naming the config field, the path and what to do; ``check`` raises
``PreflightError`` with all of them at once (every missing benchmark of the suite included).
"""

from __future__ import annotations

import posixpath

import fsspec
import ml_collections as mlc

from cambrian.eval import suite


class PreflightError(FileNotFoundError):
    pass


def _exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def _found(folder: str, pattern: str) -> bool:
    fs, p = fsspec.core.url_to_fs(posixpath.join(folder, pattern))
    return bool(fs.glob(p))


def benchmark_problems(config: mlc.ConfigDict) -> list[str]:
    """One line per benchmark of ``eval.suite`` whose folder lacks a file its loader reads."""
    try:
        benches = suite.get(config.eval.suite)
    except ValueError as e:
        return [f"eval.suite: {e}"]
    out = []
    for bench in benches:
        if suite.folder_name(bench) not in suite.DOWNLOADED:
            continue  # generated on the fly
        folder, source = suite.folder(bench, config), bench.SOURCE
        missing = [f for f in source.files if not _found(folder, f)]
        if not missing:
            continue
        state = ("not found" if not _exists(folder)
                 else f"incomplete (nothing matches {missing[0]!r})")
        if "://" in folder:  # the hub client writes local folders only
            get = (f"{source.download_command(bench.NAME)}, then copy {bench.NAME}/ to "
                   f"{folder}")
        else:
            get = source.download_command(folder)
        out.append(f"{suite.folder_field(bench, config)}: benchmark {bench.NAME} {state} at "
                   f"{folder}; download it from {source.url}: {get} (or set "
                   f"--config.eval.roots.{suite.folder_name(bench)}=DIR)")
    return out


def problems(config: mlc.ConfigDict, *, evaluate: bool = True) -> list[str]:
    """Every problem found; ``evaluate=False`` (a run without its evaluation) skips the
    benchmarks."""
    out = []
    for alias, e in config.model.encoders.items():
        if e.init == "pretrained" and (not e.checkpoint or not _exists(e.checkpoint)):
            out.append(f"model.encoders.{alias}.checkpoint: {e.family} {e.variant} checkpoint not "
                       f"found at {e.checkpoint or '(empty)'}; download it there or set "
                       f"--config.model.encoders.{alias}.checkpoint=DIR")
    llm = config.model.llm
    if llm.init == "pretrained" and (not llm.checkpoint or not _exists(llm.checkpoint)):
        out.append(f"model.llm.checkpoint: LLM checkpoint not found at "
                   f"{llm.checkpoint or '(empty)'}; download the Hugging Face model there or set "
                   "--config.model.llm.checkpoint=DIR")
    tok = config.model.tokenizer
    if tok != "synthetic" and (not tok or not _exists(tok)):
        out.append(f"model.tokenizer: tokenizer directory not found at {tok or '(empty)'}; "
                   "set --config.model.tokenizer=DIR (usually the LLM checkpoint directory)")
    for name, st in config.stages.items():
        if st.steps > 0 and not st.data.startswith("synthetic:"):
            if not st.data or not _exists(st.data):
                out.append(f"stages.{name}.data: training data not found at {st.data or '(empty)'}"
                           f"; build it with data_recipes/build.py or set "
                           f"--config.stages.{name}.data=FILE")
            elif st.image_root and not _exists(st.image_root):
                out.append(f"stages.{name}.image_root: image folder not found at {st.image_root}")
    if config.checkpoint and not _exists(config.checkpoint):
        out.append(f"checkpoint: run directory not found at {config.checkpoint}; set "
                   "--config.checkpoint to the workdir of a finished run")
    if evaluate:
        out += benchmark_problems(config)
    return out


def check(config: mlc.ConfigDict, *, evaluate: bool = True) -> None:
    found = problems(config, evaluate=evaluate)
    if found:
        raise PreflightError("\n".join(found))
