"""Per-image features of many images under one encoder: batched, sharded over the local devices,
cached on disk.

``extract(items, extractor, reduce="cls")`` returns float32[N, ...] in the order of ``items``. Only
images missing from the cache run through the tower; new rows are appended to the cache every
``flush_every`` batches, so an interrupted run resumes where it stopped.

Cache layout (``cache_dir/features/<key hash>/``)::

    key.json         what the rows are features of: encoder family, variant, checkpoint content
                     hash (or the random-init seed), image size, layer, dtype, preprocessing
                     spec, padding and reduction
    part-*.npz       ids str[n] (the items' ``key``) + feats float32[n, ...], written atomically

Any change to the key gives a new folder, so stale features are never read. The row ids are the
callers' (``ImageItem.key``): the same cache serves a folder of images, a built recipe or a
dataset, and any per-image array shape (a pooled vector, a whole feature map with ``"grid"``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import json
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm import tqdm

from cambrian.models import encoders
from cambrian.models.encoders import preprocess
from cambrian.models.encoders.preprocess import PreprocessSpec
from cambrian.tools import embedding


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image to embed: ``key`` names its content in the cache (stable across runs), ``ref``
    is how to find it again (a path, ``BUILT#record/image``), ``read()`` -> uint8[H, W, 3]."""

    key: str
    ref: str
    read: Callable[[], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A tower and how images reach it.

    module: ``feats, out = module(pixels)`` (the encoder contract of ``cambrian.models.encoders``).
    spec: the family's preprocessing; pad: pad to a square first (Cambrian's training input)
      instead of the family processor's resize + centre crop (MMVP used the processors as-is).
    identity: what the weights are, JSON-able; part of the cache key.
    label: for people; says "RANDOM INIT" for randomly initialised towers.
    pretrained: weights read from a checkpoint (False: random init or a test tower).
    """

    module: Any
    spec: PreprocessSpec
    identity: Mapping[str, Any]
    label: str
    pad: bool = False
    pretrained: bool = False


def checkpoint_hash(path: str) -> str:
    """sha256 over the files of a checkpoint (a file or a directory: relative names + bytes), so a
    cache entry follows the weights, not the path they were read from."""
    files = ([path] if os.path.isfile(path) else
             sorted(p for p in glob.glob(os.path.join(path, "**"), recursive=True)
                    if os.path.isfile(p)))
    if not files:
        raise FileNotFoundError(f"checkpoint {path}: no files found; pass the checkpoint "
                                "directory or file the encoder loads from")
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.relpath(f, path).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def zoo_extractor(family: str, *, variant: str | None = None, checkpoint: str | None = None,
                  image_size: int | None = None, layer: int | None = None,
                  dtype: str = "float32", seed: int = 0, pad: bool = False) -> Extractor:
    """An encoder of the zoo: loaded from ``checkpoint``, or randomly initialised (``seed``) when
    it is None -- then the label says so and ``pretrained`` is False."""
    if checkpoint:
        module = encoders.load(family, checkpoint, variant=variant, image_size=image_size,
                               layer=layer, dtype=dtype)
        module = embedding.with_head(family, checkpoint, module)
        weights = {"checkpoint_sha256": checkpoint_hash(checkpoint)}
        label = f"{family} {variant or 'checkpoint'} ({checkpoint})"
    else:
        module = encoders.create(family, variant, image_size=image_size, layer=layer,
                                 rngs=nnx.Rngs(seed), dtype=dtype)
        weights = {"random_init_seed": seed}
        label = f"{family} {variant or 'default'} (RANDOM INIT, seed {seed}: not pretrained)"
    spec = encoders.preprocessing(family, variant).with_size(module.config.image_size)
    identity = {"family": family, "variant": variant, **weights,
                "image_size": module.config.image_size, "layer": module.config.layer,
                "dtype": dtype}
    return Extractor(module=module, spec=spec, identity=identity, label=label, pad=pad,
                     pretrained=bool(checkpoint))


# --- reductions: (module, feats float32[B, h, w, C], out) -> float32[B, ...] ----------------------

def _cls(module, feats, out):
    return out["last_hidden_state"][:, 0].astype(jnp.float32)


def _mean(module, feats, out):
    return feats.mean(axis=(1, 2))


REDUCTIONS: dict[str, Callable] = {
    "embed": lambda module, feats, out: out["embedding"],  # the family's own (``embedding``)
    "cls": _cls,    # CLS token of the final output, as the tower returns it
    "mean": _mean,  # mean of the feature map the connector reads (every family)
    "grid": lambda module, feats, out: feats,  # the whole feature map
}


def has_cls(module) -> bool:
    return bool(getattr(getattr(module, "config", None), "cls_token", False))


def check_reduction(extractor: Extractor, reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduce!r}; expected one of {', '.join(REDUCTIONS)}")
    if reduce == "cls" and not has_cls(extractor.module):
        raise ValueError(f"{extractor.label} has no CLS token: use the 'mean' reduction "
                         "(--pool-a/--pool-b mean)")
    if reduce == "embed" and not isinstance(extractor.module, embedding.Embedding):
        raise ValueError(f"{extractor.label} has no image-embedding head: 'embed' needs a "
                         f"checkpoint of {' or '.join(embedding.HEADS)} in its native (HF) "
                         "layout; use 'cls' or 'mean' otherwise")


class FeatureCache:
    """Rows of one feature key, by item id; ``None`` root = no cache (nothing stored)."""

    def __init__(self, root: str | None, key: Mapping[str, Any]):
        text = json.dumps(key, sort_keys=True, default=str)
        self.dir = (os.path.join(root, "features", hashlib.sha256(text.encode()).hexdigest()[:20])
                    if root else None)
        self._rows: dict[str, tuple[int, int]] = {}
        self._parts: list[np.ndarray] = []
        if self.dir is None:
            return
        os.makedirs(self.dir, exist_ok=True)
        key_file = os.path.join(self.dir, "key.json")
        if not os.path.exists(key_file):
            with open(key_file + ".tmp", "w") as f:
                f.write(json.dumps(key, sort_keys=True, indent=1, default=str))
            os.replace(key_file + ".tmp", key_file)
        for path in sorted(glob.glob(os.path.join(self.dir, "part-*.npz"))):
            with np.load(path) as z:
                self._add(z["ids"].tolist(), z["feats"])

    def _add(self, ids: Sequence[str], feats: np.ndarray) -> None:
        self._parts.append(feats)
        part = len(self._parts) - 1
        self._rows.update({k: (part, r) for r, k in enumerate(ids)})

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> np.ndarray:
        part, row = self._rows[key]
        return self._parts[part][row]

    def put(self, ids: Sequence[str], feats: np.ndarray) -> None:
        """Stores rows (and writes them as one new part file when the cache has a folder)."""
        feats = np.asarray(feats, np.float32)
        if self.dir is not None and len(ids):
            h = hashlib.sha256("\0".join(ids).encode()).hexdigest()[:16]
            path = os.path.join(self.dir, f"part-{len(self._parts):06d}-{h}.npz")
            with open(path + ".tmp", "wb") as f:
                np.savez(f, ids=np.asarray(ids, dtype=str), feats=feats)
            os.replace(path + ".tmp", path)
        self._add(list(ids), feats)


def cache_key(extractor: Extractor, reduce: str) -> dict:
    return {**extractor.identity, "spec": dataclasses.asdict(extractor.spec),
            "pad": extractor.pad, "reduce": reduce}


def host_pixels(image: np.ndarray, extractor: Extractor) -> np.ndarray:
    """uint8[H, W, 3] -> float32[S, S, 3], the tower's input."""
    return preprocess.apply(image, extractor.spec, pad=extractor.pad)


def device_mesh() -> Mesh:
    """A 1-D ``data`` mesh over this process's devices: batches split, weights replicated."""
    return Mesh(np.asarray(jax.local_devices()), ("data",))


# module -> {(reduce, devices): forward}: weights are put on the devices and the forward compiled
# once per tower, however many times ``extract`` is called with it
_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_forward(extractor: Extractor, reduce: str, mesh: Mesh):
    """float32[B, S, S, 3] sharded over ``data`` -> float32[B, ...], weights replicated."""
    per_module = _FORWARDS.setdefault(extractor.module, {})
    key = (reduce, tuple(d.id for d in mesh.devices.flat))
    if key in per_module:
        return per_module[key]
    graphdef, state = nnx.split(extractor.module)
    state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
    fn = REDUCTIONS[reduce]

    @jax.jit
    def forward(state, pixels):
        module = nnx.merge(graphdef, state)
        feats, out = module(pixels)
        return fn(module, feats, out)

    per_module[key] = functools.partial(forward, state)
    return per_module[key]


def extract(items: Sequence[ImageItem], extractor: Extractor, *, reduce: str = "cls",
            batch_size: int = 64, cache_dir: str | None = None, flush_every: int = 16,
            workers: int = 4, progress: bool = True) -> np.ndarray:
    """float32[N, ...]: ``REDUCTIONS[reduce]`` of every item's features, in item order.

    ``batch_size`` is rounded up to a multiple of the local device count (each device gets the
    same share); the last batch is padded, so the forward compiles once. Host decoding and
    preprocessing of the next batch overlaps the device work of this one (``workers`` threads).
    """
    check_reduction(extractor, reduce)
    cache = FeatureCache(cache_dir, cache_key(extractor, reduce))
    todo, seen = [], set()
    for i, it in enumerate(items):  # each missing image once, even if listed twice
        if it.key not in cache and it.key not in seen:
            seen.add(it.key)
            todo.append(i)
    if todo:
        mesh = device_mesh()
        n_dev = mesh.devices.size
        bs = -(-batch_size // n_dev) * n_dev
        sharding = NamedSharding(mesh, PartitionSpec("data"))
        forward = make_forward(extractor, reduce, mesh)
        batches = [todo[s:s + bs] for s in range(0, len(todo), bs)]

        def load(batch: list[int]) -> np.ndarray:
            px = list(pool.map(lambda i: host_pixels(items[i].read(), extractor), batch))
            px += [np.zeros_like(px[0])] * (bs - len(px))
            return np.stack(px)

        pending_ids: list[str] = []
        pending: list[np.ndarray] = []
        with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
                concurrent.futures.ThreadPoolExecutor(1) as ahead, \
                tqdm(total=len(todo), desc=f"features {extractor.identity.get('family', '')}",
                     unit="img", disable=not progress) as bar:
            nxt = ahead.submit(load, batches[0])
            for b, batch in enumerate(batches):
                px = nxt.result()
                if b + 1 < len(batches):
                    nxt = ahead.submit(load, batches[b + 1])
                feats = np.asarray(jax.device_get(forward(jax.device_put(px, sharding))))
                pending_ids += [items[i].key for i in batch]
                pending.append(feats[:len(batch)])
                bar.update(len(batch))
                if (b + 1) % flush_every == 0 or b + 1 == len(batches):
                    cache.put(pending_ids, np.concatenate(pending))
                    pending_ids, pending = [], []
    return np.stack([cache.get(it.key) for it in items]) if items else np.zeros((0,), np.float32)
