import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx


def _host_init(module, seed: int = 0):
    """Fills every parameter with host-drawn random values (skips per-shape init compiles):
    N(0, 1/fan_in) matrices, LayerNorm scales near 1, other vectors near 0."""
    r = np.random.default_rng(seed)
    for path, p in nnx.iter_graph(module):
        if isinstance(p, nnx.Param):
            shape = p.shape
            if len(shape) == 2:
                x = r.normal(size=shape) / np.sqrt(shape[0])
            else:
                x = (1.0 if str(path[-1]) == "scale" else 0.0) + 0.2 * r.normal(size=shape)
            p.set_value(jnp.asarray(x, jnp.float32))
    return module


@pytest.fixture(scope="session")
def random_module():
    """``random_module(factory, seed)``: ``factory()`` built abstractly, then filled on the host."""
    return lambda factory, seed=0: _host_init(nnx.eval_shape(factory), seed)
