"""Pieces every connector shares: layers with PyTorch semantics, grids, validity masks, newlines.

Layers follow the PyTorch modules Cambrian's checkpoints were trained with (``nn.Linear`` init,
``nn.LayerNorm`` eps 1e-5, exact-erf ``nn.GELU``), so converted weights reproduce the reference.

Validity masks (``valid``) are bool arrays over a feature grid: False marks a cell that lies over
the letter-box padding of the pad-to-square image (``letterbox_mask``, Cambrian's rule on each
grid with its own rounding). Resampling a mask to another grid keeps a target
cell valid when any source cell it overlaps is valid (``cover_valid``), which for integer factors
is exactly "the window is not all padding".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.encoders.features import resize_grid
from cambrian.models.weights import take

LN_EPS = 1e-5  # torch.nn.LayerNorm default


def _torch_linear_init(fan_in: int):
    # nn.Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) == U(+-1/sqrt(fan_in)), bias alike.
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def partitioned(init, axes: tuple[str | None, ...]):
    """``init`` with logical axis names; no mesh is needed to create the parameter."""
    return nnx.with_partitioning(init, axes, eager_sharding=False)


def dense(d_in: int, d_out: int, *, rngs: nnx.Rngs, use_bias: bool = True,
          axes: tuple[str, str] = ("embed", "mlp"), dtype=None,
          param_dtype=jnp.float32) -> nnx.Linear:
    """``nn.Linear(d_in, d_out)``: kernel float[d_in, d_out] (the transpose of torch's weight)."""
    init = _torch_linear_init(d_in)
    return nnx.Linear(d_in, d_out, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                      kernel_init=partitioned(init, axes),
                      bias_init=partitioned(init, (axes[1],)), rngs=rngs)


def layer_norm(dim: int, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32) -> nnx.LayerNorm:
    """``nn.LayerNorm(dim)`` (eps 1e-5, two-pass variance)."""
    return nnx.LayerNorm(dim, epsilon=LN_EPS, use_fast_variance=False, dtype=dtype,
                         param_dtype=param_dtype,
                         scale_init=partitioned(nnx.initializers.ones, ("embed",)),
                         bias_init=partitioned(nnx.initializers.zeros, ("embed",)), rngs=rngs)


def gelu(x: jax.Array) -> jax.Array:
    """``nn.GELU()``: the exact erf form."""
    return jax.nn.gelu(x, approximate=False)


class Mlp(nnx.Module):
    """Linear -> GELU -> Linear (Cambrian's ``MLP`` / ``mlp2x_gelu``), optionally then LayerNorm."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, *, rngs: nnx.Rngs,
                 use_bias: bool = True, out_norm: bool = False, dtype=None,
                 param_dtype=jnp.float32):
        kw = dict(use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = dense(d_in, d_hidden, axes=("embed", "mlp"), **kw)
        self.linear_2 = dense(d_hidden, d_out, axes=("mlp", "embed"), **kw)
        self.norm = (layer_norm(d_out, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                     if out_norm else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.linear_2(gelu(self.linear_1(x)))
        return self.norm(x) if self.norm is not None else x


def side_of(tokens: int, what: str) -> int:
    """Side of a square token grid; errors name ``what`` when ``tokens`` is not a square."""
    side = math.isqrt(tokens)
    if side * side != tokens or tokens <= 0:
        raise ValueError(f"{what}={tokens} is not a positive perfect square (e.g. 576, 144, 36)")
    return side


def check_feats(feats: Sequence[jax.Array], channels: Sequence[int],
                grids: Sequence[tuple[int, int]], name: str) -> None:
    """Errors naming the encoder whose map does not match what the connector was built for."""
    if len(feats) != len(channels):
        raise ValueError(f"{name}: got {len(feats)} feature maps, built for {len(channels)} "
                         "encoders (encoder_channels)")
    for k, (f, c, g) in enumerate(zip(feats, channels, grids)):
        want = (g[0], g[1], c)
        if f.ndim != 4 or tuple(f.shape[1:]) != want:
            raise ValueError(f"{name}: feats[{k}] has shape {tuple(f.shape)}, expected "
                             f"[B, {g[0]}, {g[1]}, {c}] (encoder_grids[{k}], "
                             f"encoder_channels[{k}])")


def check_valid(valid: Sequence[jax.Array] | None, feats: Sequence[jax.Array],
                name: str) -> list[jax.Array]:
    """``valid`` as one bool[B, h_k, w_k] per encoder (all True when ``None``)."""
    if valid is None:
        return [jnp.ones(f.shape[:3], bool) for f in feats]
    if len(valid) != len(feats):
        raise ValueError(f"{name}: got {len(valid)} valid masks for {len(feats)} feature maps")
    out = []
    for k, (v, f) in enumerate(zip(valid, feats)):
        if tuple(v.shape) != tuple(f.shape[:3]):
            raise ValueError(f"{name}: valid[{k}] has shape {tuple(v.shape)}, expected "
                             f"{tuple(f.shape[:3])} (the grid of feats[{k}])")
        out.append(jnp.asarray(v).astype(bool))
    return out


def _overlap(n_src: int, n_dst: int) -> np.ndarray:
    # bool[n_dst, n_src]: destination cell i covers [i, i+1) * n_src / n_dst of the source axis.
    i = np.arange(n_dst)[:, None]
    j = np.arange(n_src)[None, :]
    return (j * n_dst < (i + 1) * n_src) & ((j + 1) * n_dst > i * n_src)


def cover_valid(valid: jax.Array, size: tuple[int, int]) -> jax.Array:
    """bool[B, h, w] -> bool[B, H, W]: a cell is valid if any source cell under it is valid."""
    h, w = valid.shape[1:3]
    if (h, w) == tuple(size):
        return valid
    rows = jnp.asarray(_overlap(h, size[0]), jnp.float32)
    cols = jnp.asarray(_overlap(w, size[1]), jnp.float32)
    hits = jnp.einsum("Hh,bhw,Ww->bHW", rows, valid.astype(jnp.float32), cols)
    return hits > 0


def resize_feats(feats: jax.Array, size: tuple[int, int]) -> jax.Array:
    """float[B, h, w, C] -> float[B, H, W, C], bilinear (torch, align_corners=False)."""
    return resize_grid(feats, size).astype(feats.dtype)


def append_newline(grid: jax.Array, newline: jax.Array) -> jax.Array:
    """float[B, h, w, D] + float[D] -> float[B, h*(w+1), D]: ``newline`` ends every row."""
    b, h, w, d = grid.shape
    nl = jnp.broadcast_to(newline.astype(grid.dtype), (b, h, 1, d))
    return jnp.concatenate([grid, nl], axis=2).reshape(b, h * (w + 1), d)


def grid_token_valid(valid: jax.Array, newline: bool) -> jax.Array:
    """bool[B, h, w] -> bool[B, h*(w+1)] (a newline is valid iff its row is) or bool[B, h*w]."""
    b, h, w = valid.shape
    if not newline:
        return valid.reshape(b, h * w)
    row = jnp.any(valid, axis=2, keepdims=True)
    return jnp.concatenate([valid, row], axis=2).reshape(b, h * (w + 1))


def letterbox_mask(letterbox: jax.Array, side: int) -> jax.Array:
    """int32[B, 2] (axis, pad) of one grid side -> bool[B, side, side]: False on the ``pad``
    rows (axis 0) or columns (axis 1) at each end (``preprocess.letterbox`` computes them on the
    host, in float64 as Cambrian does)."""
    axis, pad = letterbox[:, 0, None], letterbox[:, 1, None]
    idx = jnp.arange(side)[None]
    inside = (idx >= pad) & (idx < side - pad)
    rows = jnp.where(axis == 0, inside, True)
    cols = jnp.where(axis == 1, inside, True)
    return rows[:, :, None] & cols[:, None, :]


# Converters from PyTorch names: ``{name}.weight`` float[out, in] (transposed), ``{name}.bias``.


def set_param(param: nnx.Param, value: np.ndarray) -> None:
    """Fills ``param`` (concrete or built with ``nnx.eval_shape``) with ``value``."""
    param.set_value(jnp.asarray(value, dtype=param.dtype))


def load_linear(reader, name: str, lin: nnx.Linear) -> None:
    d_in, d_out = lin.kernel.shape
    set_param(lin.kernel, take(reader, f"{name}.weight", (d_in, d_out), lambda w: w.T))
    if lin.bias is not None:
        set_param(lin.bias, take(reader, f"{name}.bias", (d_out,)))


def load_layer_norm(reader, name: str, ln: nnx.LayerNorm) -> None:
    (d,) = ln.scale.shape
    set_param(ln.scale, take(reader, f"{name}.weight", (d,)))
    set_param(ln.bias, take(reader, f"{name}.bias", (d,)))


def check_all_read(module: nnx.Module, what: str) -> None:
    """Errors if a parameter of an abstractly built ``module`` was never filled."""
    unread = [jax.tree_util.keystr(path) for path, v in
              jax.tree_util.tree_leaves_with_path(nnx.state(module, nnx.Param))
              if isinstance(v, jax.ShapeDtypeStruct)]
    if unread:
        raise RuntimeError(f"{what} left parameters unread: {unread}")
