import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from cambrian.tools import features

from . import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8) for i in range(n)]


class Raises:
    """A module that must not run (every feature comes from the cache)."""

    def __call__(self, pixels):
        raise AssertionError("the tower ran although every image was cached")


def test_cache_is_reused_and_keyed_by_what_made_the_features(tmp_path):
    shape, _ = synthetic.extractors()
    items = synthetic.items(synthetic.image_set().images[:6])
    first = features.extract(items, shape, reduce="mean", batch_size=4, cache_dir=str(tmp_path),
                             flush_every=1, progress=False)
    assert first.shape == (6, 576)
    cached = dataclasses.replace(shape, module=Raises())
    again = features.extract(items, cached, reduce="mean", cache_dir=str(tmp_path),
                             progress=False)
    np.testing.assert_array_equal(again, first)
    # one more image: only it runs; a changed identity / reduction / padding is a new entry
    more = synthetic.items(synthetic.image_set().images[:7])
    np.testing.assert_array_equal(features.extract(more, shape, reduce="mean",
                                                   cache_dir=str(tmp_path), progress=False)[:6],
                                  first)
    keys = {features.FeatureCache(str(tmp_path), features.cache_key(e, r)).dir for e, r in [
        (shape, "mean"), (shape, "grid"), (dataclasses.replace(shape, pad=True), "mean"),
        (dataclasses.replace(shape, identity={"family": "test_shape", "seed": 1}), "mean")]}
    assert len(keys) == 4
    parts = os.listdir(features.FeatureCache(str(tmp_path), features.cache_key(shape, "mean")).dir)
    assert sorted(p for p in parts if p.endswith(".npz")) == sorted(
        p for p in parts if p.startswith("part-"))  # no .tmp left behind
    assert len([p for p in parts if p.endswith(".npz")]) == 3  # 2 batches flushed, then 1


def test_random_towers_say_so_and_cls_needs_a_cls_token():
    clip = features.zoo_extractor("clip", variant="runlocal")
    assert not clip.pretrained and "RANDOM INIT" in clip.label
    assert clip.identity["random_init_seed"] == 0
    siglip = features.zoo_extractor("siglip", variant="runlocal")
    with pytest.raises(ValueError, match="no CLS token: use the 'mean'"):
        features.extract(synthetic.items(_images(1)), siglip, reduce="cls", progress=False)


def test_checkpoint_hash_follows_content_not_path(tmp_path):
    for d in ("a", "b"):
        os.makedirs(tmp_path / d)
        (tmp_path / d / "model.safetensors").write_bytes(b"weights")
    assert (features.checkpoint_hash(str(tmp_path / "a"))
            == features.checkpoint_hash(str(tmp_path / "b")))
    (tmp_path / "b" / "model.safetensors").write_bytes(b"weightz")
    assert (features.checkpoint_hash(str(tmp_path / "a"))
            != features.checkpoint_hash(str(tmp_path / "b")))


SHARDED = """
import sys, jax, numpy as np
from cambrian.tools import features
from tests.tools.test_features import _images
from tests.tools import synthetic
assert jax.local_device_count() == 4
ext = features.zoo_extractor("clip", variant="runlocal")
np.save(sys.argv[1], features.extract(synthetic.items(_images()), ext, reduce="cls",
                                     batch_size=3, progress=False))
"""


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    out = str(tmp_path / "sharded.npy")
    proc = subprocess.run([sys.executable, "-c", SHARDED, out], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ext = features.zoo_extractor("clip", variant="runlocal")
    one = features.extract(synthetic.items(_images()), ext, reduce="cls", batch_size=3,
                           progress=False)
    assert one.shape == (5, 64)  # 5 images in batches of 4 (3 rounded up to the devices)
    np.testing.assert_allclose(np.load(out), one, rtol=1e-5, atol=1e-5)
