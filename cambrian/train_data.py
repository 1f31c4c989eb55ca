"""A training stage's batches, from its config: the grain loader over the stage's data, a log of
how full the first batches are, and the per-batch counts the run record reports."""

from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import ml_collections as mlc

from cambrian import feature_cache, fileio, sharding
from cambrian.data import chat_templates, loader
from cambrian.models import vlm

log = logging.getLogger("cambrian")

# what ends the one-line message of a data error
FIX = ("fix or remove that record, or set --config.data.skip_bad=True to skip bad records (each "
       "is logged), then rerun the same command")


def stage_data(config: mlc.ConfigDict, name: str, model: vlm.Cambrian, tokenizer, mesh,
               workdir: str) -> loader.Peek:
    """The stage's batch iterator (this process's rows of each global batch); logs how full
    its first batches are and writes ``<stage>_data.json``."""
    stage = config.stages[name]
    div = sharding.batch_divisor(mesh) * stage.grad_accum
    if stage.batch_size % div:
        raise ValueError(
            f"stages.{name}.batch_size={stage.batch_size} must be a multiple of {div} (mesh "
            f"data*fsdp={sharding.batch_divisor(mesh)} x grad_accum={stage.grad_accum})")
    path, image_root = loader.resolve(stage.data, stage.image_root, config.cache_dir,
                                      config.data.synthetic.to_dict())
    enc = loader.Encoder(
        template=chat_templates.get(config.model.template), tokenizer=tokenizer,
        num_image_tokens=model.num_image_tokens, max_len=config.model.max_len,
        images=model.host_images(), image_root=image_root, skip_bad=config.data.skip_bad,
        system=config.model.system_prompt)
    data = config.data
    ds = loader.dataset(loader.load_records(path), enc, batch_size=stage.batch_size,
                        num_batches=stage.steps,
                        seed=config.seed * 1000 + list(config.stages).index(name),
                        num_workers=data.num_workers, pack=data.pack,
                        max_images_per_row=data.max_images_per_row)
    caches = feature_cache.open_caches(config)
    if caches:  # frozen towers' features read from model.feature_cache instead of computed
        ds = ds.map(feature_cache.Attach(caches))
    it = loader.Peek(iter(ds), min(data.efficiency_batches, stage.steps))
    _log_efficiency(config, name, workdir, loader.efficiency(it.head()))
    return it


def _log_efficiency(config: mlc.ConfigDict, name: str, workdir: str, eff: dict) -> None:
    """Logs how full the stage's first batches are; writes ``<stage>_data.json``."""
    eff = {"pack": config.data.pack, **eff}
    if eff["batches"]:
        log.info("%s data (first %d batches, %s): %.1f%% of token slots real, %.1f%% "
                 "supervised, %.2f examples/row, %.1f%% of image slots used", name,
                 eff["batches"], "packed" if eff["pack"] else "one example per row",
                 100 * eff["token_efficiency"], 100 * eff["supervised_efficiency"],
                 eff["examples_per_row"], 100 * eff["image_slot_use"])
    if jax.process_index() == 0:
        fileio.write_text(fileio.join(workdir, f"{name}_data.json"), json.dumps(eff, indent=2))


def batch_counts(segment_ids: jax.Array) -> dict[str, jax.Array]:
    """int32[B, T] segment ids (0 = padding, 1..m = the row's conversations) -> int32 scalars
    ``tokens`` (real token slots) and ``examples`` (conversations)."""
    return {"tokens": jnp.sum(segment_ids > 0, dtype=jnp.int32),
            "examples": jnp.sum(jnp.max(segment_ids, axis=1), dtype=jnp.int32)}


