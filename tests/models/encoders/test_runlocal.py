"""Every family's ``runlocal`` encoder (what ``:runlocal`` configs build): random init is fast,
follows each parameter's ``Init``, one forward pass works, and ``dtype`` is a construction
option (parameters stored and blocks computed in it, features float32)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders
from cambrian.models.encoders import common

from .utils import check_jit_and_bf16, forward, param_dtypes

# CPU seconds; initialising op by op took ~25 s for sd_diffusion and ~12 s for convnext
CREATE_BUDGET_S = 10.0


@pytest.mark.parametrize("family", encoders.families())
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


def _shapes(family: str, dtype: str):
    """(abstract runlocal encoder built in ``dtype``, abstract (feats, out) of one forward)."""
    size = encoders.preprocessing(family, "runlocal").image_size
    enc = nnx.eval_shape(lambda: encoders.create(family, "runlocal", dtype=dtype))
    graphdef, state = nnx.split(enc)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return enc, jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)


@pytest.mark.parametrize("family", encoders.families())
def test_dtype_is_a_construction_option(family):
    """Shapes only (nothing compiles): every parameter and every intermediate in ``out`` has the
    requested dtype, the features are float32."""
    for dtype in ("float32", "bfloat16"):
        enc, (feats, out) = _shapes(family, dtype)
        assert enc.config.dtype == dtype and param_dtypes(enc) == {jnp.dtype(dtype)}
        assert feats.dtype == jnp.float32
        assert {a.dtype for a in jax.tree.leaves(out)} == {jnp.dtype(dtype)}
    with pytest.raises(ValueError, match="dtype='float16'"):
        encoders.create(family, "runlocal", dtype="float16")


# family -> (variant, image size, feature shape): a ViT, the ConvNeXt and the towers of their own
BF16_CASES = {"dinov2": ("runlocal-reg", 56, (2, 4, 4, 64)),
              "convnext": ("runlocal-multi-stage", 64, (2, 6, 6, 80)),
              "aimv2": ("runlocal", 56, (2, 7, 7, 32)),
              "eva_clip": ("runlocal", 48, (2, 6, 6, 32)),
              "sam": ("runlocal", 48, (2, 6, 6, 32))}


@pytest.mark.parametrize("family", sorted(BF16_CASES))
def test_bfloat16_features_stay_close_to_float32(family):
    variant, size, shape = BF16_CASES[family]
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    check_jit_and_bf16(lambda dtype: encoders.create(family, variant, image_size=size,
                                                     rngs=nnx.Rngs(0), dtype=dtype), x, shape)
