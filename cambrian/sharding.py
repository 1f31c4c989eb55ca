"""Meshes and shardings from configuration.

The mesh has three axes: ``data`` (pure data parallel), ``fsdp`` (data parallel with weights and
optimizer state sharded) and ``tensor`` (tensor parallel). ``config.mesh.{data,fsdp,tensor}`` are
the sizes within one slice (-1 = the remaining devices); ``config.mesh.dcn`` the number of slices
along each axis for multi-slice pods (slices talk over the data-centre network, so put only
``data`` -- or ``fsdp`` for very large models -- there).

Weights carry logical axis names (``embed``, ``mlp``, ``heads``, ``kv_heads``, ``vocab``, ...); a
rule preset maps them to mesh axes. Activations use the same names (``batch``, ``length``,
``embed``, ...) but their own rules: a weight's ``embed`` dimension is sharded over ``fsdp``
while an activation's batch already is. A logical axis whose size does not divide its mesh axes
is replicated instead (tiny runlocal models on 8 devices).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import jax
import ml_collections as mlc
import numpy as np
from flax import nnx
from flax.core import spmd
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH = ("data", "fsdp")

_TP = {"mlp": "tensor", "heads": "tensor", "kv_heads": "tensor", "vocab": "tensor"}

# preset -> (weight rules, activation rules); a name not listed is replicated.
PRESETS: dict[str, tuple[dict, dict]] = {
    "dp": ({}, {"batch": BATCH}),
    "fsdp": ({"embed": "fsdp"}, {"batch": BATCH}),
    "fsdp_tp": ({"embed": "fsdp", **_TP}, {"batch": BATCH, **_TP}),
}


class Rules:
    """Logical-axis rules of one run: ``params`` for weights, ``acts`` for activations."""

    def __init__(self, params: dict, acts: dict):
        self.params, self.acts = params, acts

    @classmethod
    def from_config(cls, config: mlc.ConfigDict) -> Rules:
        """``config.sharding`` (preset) + ``config.sharding_rules`` ((name, axis) pairs that
        override the preset's weight rules; axis None replicates)."""
        if config.sharding not in PRESETS:
            raise ValueError(f"config.sharding={config.sharding!r} is not a preset; known: "
                             f"{', '.join(PRESETS)}")
        params, acts = PRESETS[config.sharding]
        params = dict(params)
        for pair in config.sharding_rules:
            if len(pair) != 2:
                raise ValueError(f"config.sharding_rules entry {pair!r}: expected (logical_name, "
                                 "mesh_axis or None)")
            name, axis = pair
            for a in (axis if isinstance(axis, tuple | list) else (axis,)):
                if a is not None and a not in MESH_AXES:
                    raise ValueError(f"config.sharding_rules: {name!r} -> {axis!r}; mesh axes "
                                     f"are {MESH_AXES}")
            params[name] = tuple(axis) if isinstance(axis, list) else axis
        return cls(params, dict(acts))

    @contextlib.contextmanager
    def activations(self, mesh: Mesh) -> Iterator[None]:
        """Context in which ``constrain`` applies the activation rules on ``mesh``."""
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), \
                spmd.logical_axis_rules(list(self.acts.items())):
            yield


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    """Constrains an activation's sharding by logical axis names when a mesh and rules are set.

    Without an active mesh or logical-axis rules (``Rules.activations``) this is the identity,
    so single-device code needs no mesh context.
    """
    rules = dict(spmd.get_logical_axis_rules())
    if not rules or jax.sharding.get_abstract_mesh().empty:
        return x
    spec = PartitionSpec(*(rules.get(n) if n else None for n in names))
    return jax.lax.with_sharding_constraint(x, spec)


# ------------------------------------------------------------------------------------- mesh


def mesh_shape(cfg: mlc.ConfigDict, num_devices: int) -> tuple[list[int], list[int]]:
    """(per-slice sizes, dcn sizes) of ``config.mesh`` for ``num_devices`` devices."""
    dcn = [int(cfg.dcn[a]) for a in MESH_AXES]
    sizes = [int(cfg[a]) for a in MESH_AXES]
    shown = {**dict(zip(MESH_AXES, sizes)), "dcn": dict(zip(MESH_AXES, dcn))}
    if min(dcn) < 1:
        raise ValueError(f"config.mesh.dcn sizes must be >= 1, got {shown['dcn']}")
    per_slice, rem = divmod(num_devices, math.prod(dcn))
    if rem:
        raise ValueError(f"config.mesh.dcn {shown['dcn']} ({math.prod(dcn)} slices) does not "
                         f"divide {num_devices} devices")
    if sizes.count(-1) > 1:
        raise ValueError(f"config.mesh: at most one axis may be -1, got {shown}")
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        if per_slice % known:
            raise ValueError(f"config.mesh {shown} does not divide {per_slice} devices per slice")
        sizes[sizes.index(-1)] = per_slice // known
    if math.prod(sizes) != per_slice:
        raise ValueError(f"config.mesh {shown} needs {math.prod(sizes) * math.prod(dcn)} "
                         f"devices, {num_devices} are available")
    return sizes, dcn


def make_mesh(cfg: mlc.ConfigDict, devices=None) -> Mesh:
    """``config.mesh`` -> Mesh(data, fsdp, tensor) over ``devices`` (default: all).

    Multi-slice (any dcn size > 1) groups devices by slice on TPU and by process elsewhere, so
    the dcn axes cross slices/hosts and the per-slice axes stay on the fast interconnect.
    """
    devices = list(devices if devices is not None else jax.devices())
    ici, dcn = mesh_shape(cfg, len(devices))
    if math.prod(dcn) > 1:
        by_process = not hasattr(devices[0], "slice_index")
        arr = mesh_utils.create_hybrid_device_mesh(ici, dcn, devices,
                                                   process_is_granule=by_process)
    else:
        try:
            arr = mesh_utils.create_device_mesh(ici, devices)
        except (ValueError, NotImplementedError):  # odd TPU sub-shapes: plain order still works
            arr = np.asarray(devices).reshape(ici)
    return Mesh(arr, MESH_AXES)


# ------------------------------------------------------------------------------- shardings


def logical_spec(names, shape, mesh: Mesh, rules: dict) -> PartitionSpec:
    """Logical names of one array -> PartitionSpec; non-dividing or reused mesh axes replicate."""
    out, used = [], set()
    for name, dim in zip(names or (), shape):
        axis = rules.get(name) if name else None
        axes = () if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        axes = tuple(a for a in axes if mesh.shape[a] > 1)
        size = math.prod(mesh.shape[a] for a in axes)
        if not axes or used & set(axes) or dim % size:
            out.append(None)
        else:
            out.append(axes[0] if len(axes) == 1 else axes)
            used |= set(axes)
    return PartitionSpec(*out)


def _names(v) -> tuple | None:
    return getattr(v, "out_sharding", None) or getattr(v, "sharding_names", None)


def state_shardings(state, mesh: Mesh, rules: Rules | str):
    """NamedSharding for every Variable of an nnx State (abstract or concrete), from its names."""
    if isinstance(rules, str):
        if rules not in PRESETS:
            raise ValueError(f"unknown sharding preset {rules!r}; known: {', '.join(PRESETS)}")
        rules = Rules(*PRESETS[rules])

    def one(v):
        shape = v.shape if hasattr(v, "shape") else np.shape(v[...])
        return NamedSharding(mesh, logical_spec(_names(v), shape, mesh, rules.params))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh) -> int:
    """How many shards the batch dimension is split into."""
    return math.prod(mesh.shape[a] for a in BATCH)


def put_batch(batch: dict, mesh: Mesh) -> dict:
    """This process's numpy batch -> global jax arrays sharded over the batch axes."""
    sh = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.tree.map(lambda v: jax.device_put(v, sh), batch)
    return jax.tree.map(lambda v: jax.make_array_from_process_local_data(sh, v), batch)


def put_host_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A full host array -> a global array; each process copies only its own shards."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def to_host(tree):
    """Global arrays -> numpy on every process (gathers across hosts when needed)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)),
                        tree)


def bytes_per_device(tree) -> dict:
    """Bytes held on each addressable device by the arrays of ``tree``."""
    out: dict = {}
    for leaf in jax.tree.leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out
