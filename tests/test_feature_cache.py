"""``cambrian.feature_cache``: frozen-tower features computed once, read back bit for bit, under
a key that changes with the checkpoint's bytes and the preprocessing.

The tower is the runlocal DINOv2 saved as a converted checkpoint directory; the data is the small
synthetic set of the session cache. Reference features come from the tower run directly
(``vlm.run_tower`` on one image at a time), not from the cache code.
"""

import os

import jax
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from cambrian import config as C
from cambrian import feature_cache as fc
from cambrian import train, train_data
from cambrian.data import tokenizer
from cambrian.models import encoders, vlm
from cambrian.models.encoders import layout
from tests.conftest import small


def _save_tower(path, seed: int) -> str:
    enc = encoders.create("dinov2", "runlocal", rngs=nnx.Rngs(seed))
    layout.save(enc, str(path), family="dinov2", variant="runlocal")
    return str(path)


@pytest.fixture(scope="module")
def built(cache_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fcache")
    c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    alias = next(iter(c.model.encoders))
    e = c.model.encoders[alias]
    e.init, e.checkpoint, e.frozen = "pretrained", _save_tower(tmp / "ckpt", 0), True
    root = str(tmp / "root")
    paths = fc.build(c, root, batch_size=8, stages=["stage1"])
    return c, alias, root, paths[alias]


def _direct(config, alias, images: list[np.ndarray]) -> list[np.ndarray]:
    enc, spec = vlm.build_encoder(config.model, alias, rngs=nnx.Rngs(0))
    return [np.asarray(vlm.run_tower(enc, spec, im[None]), np.float32)[0] for im in images]


def test_cache_returns_the_towers_features_bit_for_bit(built):
    c, alias, root, path = built
    cache = fc.open_caches(_with_root(c, root))[alias]
    images = list(fc.host_images(c, alias, ["stage1"]))
    assert len(cache) == len({fc.image_digest(im) for im in images}) > 1
    got = cache.lookup(np.stack(images[:3]))
    assert got.dtype == np.float32 and got.shape[0] == 3
    # written as the build computed them (8 images per batch): identical bits on the way back
    stored = dict(fc.tower_features(c, alias, images[:3], batch_size=8))
    for im, g, want in zip(images[:3], got, _direct(c, alias, images[:3])):
        np.testing.assert_array_equal(g, stored[fc.image_digest(im)])
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="python -m cambrian.feature_cache --config"):
        cache.lookup(np.full((1, *images[0].shape), 7, np.uint8))


def _with_root(c, root):
    c = c.copy_and_resolve_references()
    c.model.feature_cache = root
    return c


def test_bf16_features_are_stored_as_bf16_exactly(tmp_path):
    x = np.asarray(jax.numpy.asarray(np.random.RandomState(0).randn(3, 3, 8),
                                     jax.numpy.bfloat16).astype(np.float32))
    blob = fc._encode(x)
    assert len(blob) < x.nbytes  # two bytes per value
    np.testing.assert_array_equal(fc._decode(blob), x)
    y = x + np.float32(1e-3)  # not representable in bf16: stored as float32
    np.testing.assert_array_equal(fc._decode(fc._encode(y)), y)
    # a bf16 tower's features come back in bf16, as the tower gave them to the connector
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    bf = [x.astype(ml_dtypes.bfloat16), (2 * x).astype(ml_dtypes.bfloat16)]
    fc.write(str(tmp_path), {}, [(fc.image_digest(im), f) for im, f in zip(images, bf)])
    got = fc.FeatureCache(str(tmp_path)).lookup(images[::-1])
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), np.stack(bf[::-1]).astype(np.float32))


def test_changed_checkpoint_or_preprocessing_is_a_new_key(built, tmp_path):
    c, alias, root, path = built
    assert fc.cache_path(root, fc.identity(c, alias)) == path
    ck = c.model.encoders[alias].checkpoint
    changed = {}
    d = _with_root(c, root)
    d.model.encoders[alias].image_size = 28  # the tower's resolution
    changed["resolution"] = d
    d = _with_root(c, root)
    d.model.encoders[alias].pos_interp = "bicubic_scale"  # the position-table rule
    changed["pos_interp"] = d
    d = _with_root(c, root)
    d.model.encoder_dtype = "bfloat16"
    changed["dtype"] = d
    for what, d in changed.items():
        assert fc.cache_path(root, fc.identity(d, alias)) != path, what
        with pytest.raises(FileNotFoundError, match="build it with: python -m cambrian"):
            fc.open_caches(d)
    # other weights in the same checkpoint directory (same file names and shapes)
    try:
        _save_tower(ck, 1)
        assert fc.cache_path(root, fc.identity(c, alias)) != path
        with pytest.raises(FileNotFoundError, match="build it with: python -m cambrian"):
            fc.open_caches(_with_root(c, root))
    finally:
        _save_tower(ck, 0)
    assert fc.cache_path(root, fc.identity(c, alias)) == path
    # one flipped bit of the weights file
    f = next(os.path.join(ck, n) for n in sorted(os.listdir(ck)) if n.endswith(".safetensors"))
    with open(f, "r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    try:
        assert fc.cache_path(root, fc.identity(c, alias)) != path
    finally:
        with open(f, "r+b") as fh:
            fh.seek(-1, 2)
            fh.write(last)


@pytest.mark.slow  # ~10 s of CPU: the model, two loaders and two unjitted tower passes
def test_training_batches_carry_cached_features_and_the_model_uses_them(built):
    c, alias, root, _ = built
    c = _with_root(c, root)
    c.data.efficiency_batches = 0
    tok = tokenizer.load("synthetic")
    model = train.build_model(c, tok)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), ("data", "fsdp",
                                                                               "tensor"))
    it = train_data.stage_data(c, "stage1", model, tok, mesh, str(os.path.dirname(root)))
    batch = next(it)
    assert "image" not in batch and vlm.CACHED + alias in batch and "letterbox" in batch
    assert batch[vlm.CACHED + alias].shape[1:] == (*model.encoders[alias].grid,
                                                   model.encoders[alias].out_channels)
    # the same rows with images: the tower's tokens equal the cached ones
    plain = _with_root(c, "")
    it2 = train_data.stage_data(plain, "stage1", model, tok, mesh, str(os.path.dirname(root)))
    ref = next(it2)
    np.testing.assert_array_equal(ref["tokens"], batch["tokens"])
    np.testing.assert_array_equal(ref["letterbox"], batch["letterbox"])
    got, _ = model.encode_images({}, batch["letterbox"], {alias: batch[vlm.CACHED + alias]})
    want, _ = model.encode_images(ref["image"], ref["letterbox"])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
