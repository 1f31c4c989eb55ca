"""Optimizers from stage configs: AdamW, warmup + cosine, per-module LR, freezing by pattern.

Parameters are addressed by their path string (``"connector/vision_query"``). ``trainable`` is a
regex: parameters it does not match are frozen and get no optimizer state (they are not even
passed to optax). ``lr_multipliers`` maps regexes to factors on the stage LR (first match wins),
e.g. Cambrian's 1e-4 for ``vision_sampler|vision_query`` under a 1e-3 connector LR.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax
from flax import nnx


def path_str(path) -> str:
    """A pytree key path as ``"connector/vision_query"`` (an nnx Variable's own ``value``
    attribute, present in State key paths, is not part of the parameter's name)."""
    parts = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
    if parts and parts[-1] == "value" and isinstance(path[-1], jax.tree_util.GetAttrKey):
        parts.pop()
    return "/".join(parts)


def trainable_filter(pattern: str):
    rx = re.compile(pattern)
    return nnx.All(nnx.Param, lambda path, _: bool(rx.search(path_str(path))))


def schedule(stage: mlc.ConfigDict) -> optax.Schedule:
    steps = max(int(stage.steps), 1)
    warmup = int(round(stage.warmup_ratio * steps))
    if warmup == 0:  # no warmup: the first step already uses the full LR
        return optax.cosine_decay_schedule(stage.lr, steps)
    return optax.warmup_cosine_decay_schedule(0.0, stage.lr, warmup, steps, 0.0)


def lr_multipliers(params, stage: mlc.ConfigDict):
    rules = [(re.compile(k), float(v)) for k, v in stage.lr_multipliers.items()]

    def mult(path, _):
        s = path_str(path)
        return next((m for rx, m in rules if rx.search(s)), 1.0)

    return jax.tree_util.tree_map_with_path(mult, params)


def _scale_by_tree(mults) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        return jax.tree.map(lambda u, m: u * jnp.asarray(m, u.dtype), updates, mults), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def make(stage: mlc.ConfigDict, params) -> optax.GradientTransformation:
    """AdamW for one stage over the trainable ``params`` tree."""
    tx = [optax.clip_by_global_norm(stage.grad_clip)] if stage.grad_clip > 0 else []
    tx.append(optax.adamw(schedule(stage), b1=stage.b1, b2=stage.b2,
                          weight_decay=stage.weight_decay))
    if len(stage.lr_multipliers):
        tx.append(_scale_by_tree(lr_multipliers(params, stage)))
    return optax.chain(*tx)
