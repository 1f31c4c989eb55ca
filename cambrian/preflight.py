"""Checks that everything a run reads exists, before any model is built.

Each problem is one line naming the config field, the path and what to do; ``check`` raises
``PreflightError`` with all of them at once.
"""

from __future__ import annotations

import fsspec
import ml_collections as mlc


class PreflightError(FileNotFoundError):
    pass


def _exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def problems(config: mlc.ConfigDict) -> list[str]:
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
    if config.eval.suite != "synthetic" and config.eval.root and not _exists(config.eval.root):
        out.append(f"eval.root: benchmark folder not found at {config.eval.root}; download the "
                   "benchmarks there (README, 'Benchmarks') or set --config.eval.root=DIR")
    return out


def check(config: mlc.ConfigDict) -> None:
    found = problems(config)
    if found:
        raise PreflightError("\n".join(found))
