"""Every family's ``runlocal`` encoder (what ``:runlocal`` configs build): random init is fast,
follows each parameter's ``Init``, and one forward pass works."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders
from cambrian.models.encoders import common

from .utils import forward

# CPU seconds; initialising op by op took ~25 s for sd_diffusion and ~12 s for convnext
CREATE_BUDGET_S = 10.0


@pytest.mark.parametrize("family", encoders.FAMILIES)
def test_runlocal_create_and_forward(family):
    jnp.zeros(()).block_until_ready()  # backend start-up is not part of the measurement
    start = time.process_time()
    enc = encoders.create(family, "runlocal")
    seconds = time.process_time() - start
    assert seconds < CREATE_BUDGET_S, f"{family}: random init took {seconds:.1f} CPU s"
    size = encoders.preprocessing(family, "runlocal").image_size
    x = jax.random.normal(jax.random.key(0), (1, size, size, 3))
    feats, out = forward(enc, x)
    assert feats.shape == (1, *enc.grid, enc.out_channels) and feats.dtype == jnp.float32
    assert isinstance(out, dict)
    assert np.isfinite(np.asarray(feats)).all() and float(jnp.std(feats)) > 0


def _values(module) -> dict[str, tuple[common.Init, np.ndarray]]:
    graphdef, state = nnx.split(module)
    return {".".join(map(str, p)): (v.get_metadata()["init"], np.asarray(v.get_value()))
            for p, v in nnx.to_flat_state(state)}


def test_random_init_follows_each_init():
    values = _values(encoders.create("convnext", "runlocal", rngs=nnx.Rngs(0)))
    kinds = {(init.std > 0, init.value) for init, _ in values.values()}
    assert kinds == {(True, 0.0), (False, 0.0), (False, 1.0), (False, 1e-6)}  # incl. layer scale
    for path, (init, v) in values.items():
        if not init.std:
            np.testing.assert_array_equal(v, np.full(v.shape, init.value, v.dtype), err_msg=path)
        elif v.size >= 1000:
            assert abs(v.mean()) < 0.1 * init.std and abs(v.std() / init.std - 1) < 0.1, path


def test_random_init_is_seeded_and_the_same_under_jit():
    eager = _values(encoders.create("clip", "runlocal", rngs=nnx.Rngs(3)))
    again = _values(encoders.create("clip", "runlocal", rngs=nnx.Rngs(3)))
    other = _values(encoders.create("clip", "runlocal", rngs=nnx.Rngs(4)))
    jitted = jax.jit(lambda: nnx.state(encoders.create("clip", "runlocal",
                                                       rngs=nnx.Rngs(3))))()
    jitted = {".".join(map(str, p)): np.asarray(v.get_value())
              for p, v in nnx.to_flat_state(jitted)}
    kernel = "blocks.0.mlp.fc1.kernel"
    assert not np.array_equal(eager[kernel][1], other[kernel][1])
    assert set(jitted) == set(eager)
    for path, (_, v) in eager.items():
        np.testing.assert_array_equal(again[path][1], v, err_msg=path)
        np.testing.assert_array_equal(jitted[path], v, err_msg=path)
