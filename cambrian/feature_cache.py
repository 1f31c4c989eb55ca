"""Precomputed features of frozen vision towers: the tower runs once per dataset, and every run of
an LLM / connector sweep reads its features instead of running it again.

    python -m cambrian.feature_cache --config CONFIG --out ROOT [--batch-size 64]
    python launch/tpu.py --config CONFIG --config.model.feature_cache=ROOT ...

One cache per tower, under ``ROOT/<family>-<variant>/<key>/``:

* ``features-00000-of-00004.array_record`` ...: one record per distinct host image of that
  tower, its float[h, w, C] features (stored as bfloat16 when that is exact, e.g. a bf16 tower);
* ``index.json``: image digest -> (shard, record);
* ``manifest.json`` (written last: a cache without one is incomplete): the identity below, the
  feature shape, the record count.

``key`` is a hash of the tower's identity: family, variant, layer, dtype, position-table rule
(``pos_interp``), the sha256 of every byte of its checkpoint (or the seed of a random tower), and
its preprocessing (resolution, mean, std, resize rule, crop) with the host image's size and pad
colour. Any change gives another key, so a run never reads features of another tower. Records are
found by the digest of the tower's own uint8 host image as the loader makes it
(``preprocess.tower_image``: padded to a square with the tower's colour, resized): exactly the
input the tower would see. The letter-box geometry is not part of the features: batches keep
carrying it. A training batch holding an image the cache lacks stops with the command that
builds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator

import jax
import ml_collections as mlc
import ml_dtypes
import numpy as np

log = logging.getLogger("cambrian")

FORMAT = 2  # bump when the record layout or the feature computation changes
SHARD_RECORDS = 1024


def build_command(config_name: str, root: str) -> str:
    return f"python -m cambrian.feature_cache --config {config_name} --out {root}"


# ---------------------------------------------------------------------------------- identity


def checkpoint_sha256(path: str) -> str:
    """sha256 over a checkpoint's file names (relative) and bytes, in sorted order (the one
    checkpoint hash of ``cambrian.tools.features``)."""
    from cambrian.tools.features import checkpoint_hash

    if not os.path.exists(path):
        raise FileNotFoundError(f"encoder checkpoint {path} does not exist (a feature cache is "
                                "keyed by the checkpoint's content; set the right path)")
    return checkpoint_hash(path)


def identity(config: mlc.ConfigDict, alias: str) -> dict:
    """Everything that determines encoder ``alias``'s features of a host image (``config`` is
    the full run config)."""
    from cambrian.models import encoders, weights

    m = weights.with_local_checkpoints(config.model)  # gs:// -> the host's copy
    e = m.encoders[alias]
    spec = _spec(m, alias)
    if e.init == "pretrained":
        weights = {"checkpoint_sha256": checkpoint_sha256(e.checkpoint)}
    else:
        weights = {"random_init_seed": config.seed}
    return {
        "format": FORMAT, "family": e.family, "variant": e.variant,
        "layer": e.layer if e.layer is not None else encoders.family_module(e.family).DEFAULT_LAYER,
        "dtype": m.encoder_dtype, "pos_interp": e.pos_interp, **weights,
        "preprocessing": dataclasses.asdict(spec),
        "host_image_size": spec.image_size,
        "host_pad_color": list(spec.pad_color or spec.mean),
    }


def _spec(model_config: mlc.ConfigDict, alias: str):
    from cambrian.models import encoders

    e = model_config.encoders[alias]
    spec = encoders.preprocessing(e.family, e.variant)
    return spec.with_size(e.image_size or spec.image_size)


def cache_path(root: str, ident: dict) -> str:
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    tower = f"{ident['family']}-{ident['variant']}".replace("/", "_")
    return os.path.join(root, tower, key)


def image_digest(image: np.ndarray) -> str:
    """Digest of one uint8[S, S, 3] host image (shape and bytes)."""
    image = np.ascontiguousarray(image, np.uint8)
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()[:32]


# ---------------------------------------------------------------------------------- records


def _encode(feats: np.ndarray) -> bytes:
    feats = np.asarray(feats, np.float32)
    bf = feats.astype(ml_dtypes.bfloat16)
    exact = np.array_equal(bf.astype(np.float32), feats, equal_nan=True)
    data, dtype = (bf, "bfloat16") if exact else (feats, "float32")
    head = json.dumps({"dtype": dtype, "shape": list(feats.shape)}).encode()
    return len(head).to_bytes(4, "little") + head + data.tobytes()


def _decode(blob: bytes) -> np.ndarray:
    n = int.from_bytes(blob[:4], "little")
    head = json.loads(blob[4:4 + n])
    dtype = ml_dtypes.bfloat16 if head["dtype"] == "bfloat16" else np.float32
    data = np.frombuffer(blob[4 + n:], dtype).reshape(head["shape"])
    return data.astype(np.float32)


def write(path: str, ident: dict, records: Iterable[tuple[str, np.ndarray]], *,
          shard_records: int = SHARD_RECORDS) -> int:
    """Writes ``(digest, float[h, w, C])`` records (float32 or bfloat16, all one dtype: the
    tower's output) as a cache at ``path``; returns the count.

    Shards are written under temporary names and the manifest last, so an interrupted build
    leaves no cache that looks complete."""
    from array_record.python import array_record_module

    os.makedirs(path, exist_ok=True)
    index, shards, shape, dtype = {}, [], None, None
    writer, count = None, 0
    for digest, feats in records:
        if digest in index:
            continue
        if shape is None:
            shape, dtype = list(np.shape(feats)), str(np.asarray(feats).dtype)
        elif [*np.shape(feats), str(np.asarray(feats).dtype)] != [*shape, dtype]:
            raise ValueError(f"feature cache {path}: image {digest} gives features "
                             f"{np.asarray(feats).dtype}{list(np.shape(feats))}, the others "
                             f"{dtype}{shape}")
        if writer is None or count % shard_records == 0 and count:
            if writer is not None:
                writer.close()
            shards.append(f"features-{len(shards):05d}.tmp")
            writer = array_record_module.ArrayRecordWriter(os.path.join(path, shards[-1]),
                                                           "group_size:1")
        writer.write(_encode(feats))
        index[digest] = [len(shards) - 1, count % shard_records]
        count += 1
    if writer is not None:
        writer.close()
    names = [f"features-{i:05d}-of-{len(shards):05d}.array_record" for i in range(len(shards))]
    for tmp, name in zip(shards, names):
        os.replace(os.path.join(path, tmp), os.path.join(path, name))
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)
    manifest = {"identity": ident, "shape": shape, "dtype": dtype, "records": count,
                "shards": names}
    with open(os.path.join(path, "manifest.json.tmp"), "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(os.path.join(path, "manifest.json.tmp"), os.path.join(path, "manifest.json"))
    return count


class FeatureCache:
    """A finished cache directory; ``lookup(images)`` -> their features."""

    def __init__(self, path: str, *, hint: str = ""):
        from array_record.python import array_record_module

        self.path, self.hint = path, hint
        man = os.path.join(path, "manifest.json")
        if not os.path.exists(man):
            raise FileNotFoundError(f"no feature cache at {path} (manifest.json missing: never "
                                    f"built, or the build did not finish){hint}")
        with open(man) as f:
            self.manifest = json.load(f)
        with open(os.path.join(path, "index.json")) as f:
            self.index = json.load(f)
        self._readers = [array_record_module.ArrayRecordReader(os.path.join(path, s))
                         for s in self.manifest["shards"]]
        # the tower's output dtype: a frozen bf16 tower's features come back as it gave them
        self.dtype = ml_dtypes.bfloat16 if self.manifest["dtype"] == "bfloat16" else np.float32

    def __len__(self) -> int:
        return len(self.index)

    def get(self, digest: str) -> np.ndarray:
        """float32[h, w, C] of the host image with ``digest``."""
        if digest not in self.index:
            raise KeyError(f"feature cache {self.path} has no features of host image {digest} "
                           f"(an image the cache was not built for){self.hint}")
        shard, i = self.index[digest]
        return _decode(self._readers[shard].read([i])[0])

    def lookup(self, images: np.ndarray) -> np.ndarray:
        """uint8[..., S, S, 3] -> float[..., h, w, C] in the tower's output dtype (``dtype``)."""
        lead = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        feats = [self.get(image_digest(im)) for im in flat]
        return np.stack(feats).reshape(*lead, *self.manifest["shape"]).astype(self.dtype)


def cached_aliases(config: mlc.ConfigDict) -> list[str]:
    """The encoders whose features come from ``model.feature_cache`` (the frozen ones)."""
    if not config.model.feature_cache:
        return []
    return [a for a, e in config.model.encoders.items() if e.frozen]


def open_caches(config: mlc.ConfigDict) -> dict[str, FeatureCache]:
    """alias -> its cache under ``model.feature_cache``, for every frozen encoder."""
    root = config.model.feature_cache
    hint = (f"; build it with: {build_command(config.name or 'CONFIG', root)}, or unset "
            "model.feature_cache to run the towers")
    out = {}
    for alias in cached_aliases(config):
        ident = identity(config, alias)
        out[alias] = FeatureCache(cache_path(root, ident), hint=hint)
    return out


class Attach:
    """grain map over batches: replaces ``image[alias]`` by ``features/<alias>``
    (``vlm.CACHED``) float[B, (K,) h, w, C] for each cached encoder (``image`` goes when every
    encoder is cached; ``letterbox`` stays)."""

    def __init__(self, caches: dict[str, FeatureCache]):
        self.caches = caches

    def __call__(self, batch: dict) -> dict:
        from cambrian.models.vlm import CACHED

        batch, images = dict(batch), dict(batch["image"])
        for alias, cache in self.caches.items():
            batch[CACHED + alias] = cache.lookup(np.asarray(images.pop(alias)))
        if images:
            batch["image"] = images
        else:
            del batch["image"]
        return batch


# ------------------------------------------------------------------------------------- build


def host_images(config: mlc.ConfigDict, alias: str,
                stages: Iterable[str]) -> Iterator[np.ndarray]:
    """Every uint8[S, S, 3] host image of encoder ``alias`` the loader feeds for ``stages``'
    data (records in file order; repeats included), and the blank image of image-less examples
    and empty slots (``preprocess.HostImages``)."""
    from cambrian.data import loader, readers
    from cambrian.models.encoders.preprocess import tower_image

    spec = _spec(config.model, alias)
    yield np.zeros((spec.image_size, spec.image_size, 3), np.uint8)
    for name in stages:
        st = config.stages[name]
        path, root = loader.resolve(st.data, st.image_root, config.cache_dir,
                                    config.data.synthetic.to_dict())
        for record, where in loader.load_records(path):
            image = record.get("image")
            if not (isinstance(image, np.ndarray) or image):
                continue
            try:
                if not isinstance(image, np.ndarray):
                    image = loader.read_image(root, image, where)
            except readers.DataError as e:
                if not config.data.skip_bad:
                    raise
                log.warning("skipping bad record: %s", e)
                continue
            yield tower_image(image, spec)


def tower_features(config: mlc.ConfigDict, alias: str, images: Iterable[np.ndarray], *,
                   batch_size: int) -> Iterator[tuple[str, np.ndarray]]:
    """(digest, float[h, w, C] in the tower's output dtype) of each distinct image of encoder
    ``alias`` (its host images), the encoder sharded over
    ``config.mesh`` (weights by their logical axes, images over the batch axes)."""
    from flax import nnx

    from cambrian import sharding
    from cambrian.models import vlm, weights

    if jax.process_count() > 1:
        raise NotImplementedError(
            f"python -m cambrian.feature_cache runs on one host ({jax.process_count()} processes "
            "started): build the cache on one host (e.g. worker 0 of the slice, "
            "--config.mesh.fsdp=-1), then point every host's model.feature_cache at it")
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.Rules.from_config(config)
    model = weights.with_local_checkpoints(config.model)
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        enc, spec = vlm.build_encoder(model, alias, rngs=nnx.Rngs(config.seed))
    gd, state = nnx.split(enc)
    shs = sharding.state_shardings(state, mesh, rules)
    state = jax.tree.map(lambda v, s: v.replace(sharding.put_host_array(np.asarray(v[...]), s)),
                         state, shs, is_leaf=lambda x: isinstance(x, nnx.Variable))
    run = jax.jit(lambda st, x: vlm.run_tower(nnx.merge(gd, st), spec, x))
    div = sharding.batch_divisor(mesh)
    batch_size = -(-batch_size // div) * div
    seen: set[str] = set()
    pending: list[tuple[str, np.ndarray]] = []

    def flush():
        n = len(pending)
        x = np.stack([im for _, im in pending] + [pending[0][1]] * (batch_size - n))
        with rules.activations(mesh):
            f = sharding.to_host(run(state, sharding.put_batch({"x": x}, mesh)["x"]))
        f = np.asarray(f)  # the tower's output dtype (a bf16 tower's records are stored as bf16)
        out = [(d, f[i]) for i, (d, _) in enumerate(pending)]
        pending.clear()
        return out

    for im in images:
        d = image_digest(im)
        if d in seen:
            continue
        seen.add(d)
        pending.append((d, im))
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()


def build(config: mlc.ConfigDict, root: str, *, batch_size: int = 64,
          stages: Iterable[str] | None = None) -> dict[str, str]:
    """Builds the cache of every frozen encoder of ``config`` under ``root`` for the data of
    ``stages`` (default: all); returns alias -> cache directory. An existing complete cache of
    the same identity is kept."""
    stages = list(stages or config.stages)
    out = {}
    for alias, e in config.model.encoders.items():
        if not e.frozen:
            log.info("encoder %s is trained: not cached", alias)
            continue
        ident = identity(config, alias)
        path = cache_path(root, ident)
        if os.path.exists(os.path.join(path, "manifest.json")):
            log.info("feature cache of %s exists: %s", alias, path)
        else:
            n = write(path, ident, tower_features(
                config, alias, host_images(config, alias, stages), batch_size=batch_size))
            log.info("feature cache of %s: %d images -> %s", alias, n, path)
        out[alias] = path
    return out


def main(argv: list[str] | None = None) -> None:
    from cambrian import config as config_lib

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="config file[:arg] as for launch/tpu.py")
    p.add_argument("--out", required=True, help="cache root (model.feature_cache of the runs)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--stages", default="", help="comma-separated stages (default: all)")
    args, rest = p.parse_known_args(argv)
    bad = [a for a in rest if not a.startswith("--config.")]
    if bad:
        p.error(f"unrecognised arguments: {' '.join(bad)} (overrides are --config.KEY=VALUE)")
    config = config_lib.load(args.config, [a[len("--config."):] for a in rest])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = build(config, args.out, batch_size=args.batch_size,
                  stages=[s for s in args.stages.split(",") if s] or None)
    print(json.dumps(paths))


if __name__ == "__main__":
    main(sys.argv[1:])
