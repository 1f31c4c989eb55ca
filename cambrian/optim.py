"""Optimizers from stage configs: AdamW, warmup + cosine, per-module LR, freezing by pattern.

Parameters are addressed by their path string (``"connector/vision_query"``). ``trainable`` is a
regex: parameters it does not match are frozen and get no optimizer state (they are not even
passed to optax). ``lr_multipliers`` maps regexes to factors on the stage LR (first match wins),
e.g. Cambrian's 1e-4 for ``vision_sampler|vision_query`` under a 1e-3 connector LR. The
parameters under one multiplier are an LR group named by its pattern; the rest are ``"base"``.
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


BASE_GROUP = "base"


def _group_of(stage: mlc.ConfigDict):
    """path -> (group name, LR multiplier): the first matching ``lr_multipliers`` pattern."""
    rules = [(k, re.compile(k), float(v)) for k, v in stage.lr_multipliers.items()]

    def group(path) -> tuple[str, float]:
        s = path_str(path)
        return next(((k, m) for k, rx, m in rules if rx.search(s)), (BASE_GROUP, 1.0))

    return group


def lr_multipliers(params, stage: mlc.ConfigDict):
    group = _group_of(stage)
    return jax.tree_util.tree_map_with_path(lambda path, _: group(path)[1], params)


def lr_groups(params, stage: mlc.ConfigDict) -> dict[str, float]:
    """{group name: LR multiplier} of the groups that hold some of ``params``, base first."""
    group = _group_of(stage)
    used = dict(group(path) for path, _ in jax.tree_util.tree_leaves_with_path(params))
    order = [BASE_GROUP, *stage.lr_multipliers.keys()]
    return {k: used[k] for k in order if k in used}


def learning_rates(stage: mlc.ConfigDict, groups: dict[str, float], stage_step: int
                   ) -> dict[str, float]:
    """The LR of each group in the update of ``stage_step`` (1 = the stage's first step, which
    optax's schedule sees as count 0)."""
    lr = float(schedule(stage)(stage_step - 1))
    return {k: lr * m for k, m in groups.items()}


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
