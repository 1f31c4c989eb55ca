"""Building blocks shared by the encoder families.

Every parameter carries its logical axis names (``cambrian.sharding`` maps them to the mesh) and
an ``Init`` saying how it is randomly initialised. ``random_init`` builds a random encoder from
those: the module is traced for shapes only and filled from one normal draw, where running the
initialisers op by op compiles one small random program per parameter shape (about a minute for
the Stable Diffusion UNet on CPU); parameters are stored in ``config.dtype``. Also here: the
LayerNorm / Dense / attention layers and the ``PatchTower`` base of the ViT-like towers,
patchifying, resampling of position grids exactly as ``torch.nn.functional.interpolate`` does it,
``TowerConfig`` and the variant-table lookup of the config-dataclass families.

Einsum letters: b batch, n/m query/key tokens, h heads, d head_dim, c embed, y/x (Y/X) rows and
columns of a grid before (after) resampling.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array
M = TypeVar("M", bound=nnx.Module)
DTYPES = ("float32", "bfloat16")


# --- parameters and random initialisation -------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Init:
    """A parameter's random initialisation: ``std * N(0, 1)`` when ``std`` is set, else the
    constant ``value``. Callable as a flax initializer ``(key, shape, dtype)``."""

    std: float = 0.0
    value: float = 0.0

    def __call__(self, key, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        if self.std:
            return self.std * jax.random.normal(key, shape, dtype)
        return jnp.full(shape, self.value, dtype)


ZEROS, ONES = Init(), Init(value=1.0)


def fan_in(n: int) -> Init:
    """``N(0, 1 / n)``: unit-variance outputs for unit-variance inputs over ``n`` terms."""
    return Init(std=1.0 / math.sqrt(n))


def param(init: Init, shape: tuple[int, ...], names: tuple[str | None, ...],
          rngs: nnx.Rngs | None = None) -> nnx.Param:
    """A float32 parameter with logical axis ``names``; ``rngs`` is needed when ``init`` draws."""
    value = init(rngs.params() if init.std else None, shape)
    return nnx.Param(value, out_sharding=names, eager_sharding=False, init=init)


class _ShapeRngs(nnx.Rngs):
    """``nnx.Rngs`` for shape-only tracing: ``params()`` hands out one fixed key. The values are
    discarded anyway, and advancing a traced stream counter costs time linear in the trace so
    far (jax builds an unused error message each time): quadratic over a large model."""

    def params(self) -> Array:
        return jax.random.key(0)


def abstract(cls: Callable[..., M], config: Any) -> M:
    """``cls(config, rngs=...)`` with shapes only: nothing is allocated or drawn."""
    return nnx.eval_shape(lambda: cls(config, rngs=_ShapeRngs(0)))


def random_init(cls: Callable[..., M], config: Any, *, rngs: nnx.Rngs) -> M:
    """``cls(config, rngs=rngs)`` with every variable drawn as its ``init`` metadata says and the
    parameters stored in ``config.dtype`` (other variables keep their own dtype).

    One normal draw of all random values (one compiled program, whatever the model), sliced in
    parameter-path order; outside ``jit`` the slicing runs in numpy, so nothing else compiles.
    Under ``jit`` / ``eval_shape`` the same values come out of the same operations traced.
    """
    graphdef, state = nnx.split(abstract(cls, config))
    flat = list(nnx.to_flat_state(state))
    inits = []
    for path, var in flat:
        init = var.get_metadata().get("init")
        if not isinstance(init, Init):
            raise TypeError(f"{cls.__name__}: variable {'.'.join(map(str, path))} has no `init` "
                            "metadata; create it with common.param or pass init=Init(...)")
        inits.append(init)
    total = sum(math.prod(var.shape) for (_, var), init in zip(flat, inits) if init.std)
    noise = jax.random.normal(rngs.params(), (total,)) if total else None
    xp = jnp if isinstance(noise, jax.core.Tracer) else np
    if xp is np and noise is not None:
        noise = np.asarray(noise)
    offset = 0
    for (_, var), init in zip(flat, inits):
        shape = tuple(var.shape)
        dtype = config.dtype if isinstance(var, nnx.Param) else var.dtype
        if init.std:
            n = math.prod(shape)
            value = noise[offset:offset + n].reshape(shape) * np.float32(init.std)
            offset += n
        else:
            value = xp.full(shape, init.value, np.float32)
        var.set_value(jnp.asarray(value, dtype))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# --- layers -------------------------------------------------------------------------------------

class LayerNorm(nnx.Module):
    """torch.nn.LayerNorm (two-pass variance, computed in float32)."""

    def __init__(self, dim: int, eps: float):
        self.eps = eps
        self.scale = param(ONES, (dim,), ("embed",))
        self.bias = param(ZEROS, (dim,), ("embed",))

    def __call__(self, x: Array) -> Array:
        xf = x.astype(jnp.float32)
        mean = xf.mean(-1, keepdims=True)
        var = jnp.square(xf - mean).mean(-1, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Dense(nnx.Module):
    """y = x @ kernel + bias with multi-axis input/output (``kernel`` float[*in, *out])."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 names: tuple[str | None, ...], *, bias: bool = True, rngs: nnx.Rngs):
        self.n_in = len(in_shape)
        self.kernel = param(fan_in(math.prod(in_shape)), in_shape + out_shape, names, rngs)
        self.bias = param(ZEROS, out_shape, names[self.n_in:]) if bias else None

    def __call__(self, x: Array) -> Array:
        y = jnp.tensordot(x, self.kernel[...].astype(x.dtype), self.n_in)
        return y if self.bias is None else y + self.bias[...].astype(x.dtype)


def attention(q: Array, k: Array, v: Array) -> Array:
    """Scaled dot-product attention, softmax in float32.

    q float[b, n, h, d], k / v float[b, m, h, d] -> float[b, n, h, d].
    """
    logits = jnp.einsum("bnhd,bmhd->bhnm", q * q.shape[-1] ** -0.5, k)
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhnm,bmhd->bnhd", probs, v)


def rotate_pairs(x: Array, sin: Array, cos: Array) -> Array:
    """Interleaved 2-D RoPE (timm ``apply_rot_embed``) on float[b, n, h, d] with float32[n, d]
    tables: each channel pair (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    rot = jnp.stack([-pairs[..., 1], pairs[..., 0]], -1).reshape(x.shape)
    return x * cos[:, None].astype(x.dtype) + rot * sin[:, None].astype(x.dtype)


class Attention(nnx.Module):
    """Multi-head attention with separate q / k / v projections (kernels float[C, h, d])."""

    def __init__(self, width: int, heads: int, *, qkv_bias: bool = True, out_bias: bool = True,
                 rngs: nnx.Rngs):
        d = width // heads
        names = ("embed", "heads", "head_dim")
        self.q = Dense((width,), (heads, d), names, bias=qkv_bias, rngs=rngs)
        self.k = Dense((width,), (heads, d), names, bias=qkv_bias, rngs=rngs)
        self.v = Dense((width,), (heads, d), names, bias=qkv_bias, rngs=rngs)
        self.out = Dense((heads, d), (width,), ("heads", "head_dim", "embed"), bias=out_bias,
                         rngs=rngs)

    def __call__(self, x: Array) -> Array:
        """float[B, N, C] -> float[B, N, C]."""
        return self.out(attention(self.q(x), self.k(x), self.v(x)))


class PatchTower(nnx.Module):
    """Base of the ViT-like towers: ``config`` (a checked ``TowerConfig`` with ``width``),
    ``out_channels``, ``grid`` and the patch embedding, a p x p / p conv kept as a Dense."""

    def __init__(self, config: Any, *, rngs: nnx.Rngs, patch_bias: bool = True):
        self.config = config.check()
        self.out_channels: int = config.width
        self.grid: tuple[int, int] = config.grid
        p = config.patch
        self.patch_embed = Dense((p, p, 3), (config.width,), (None, None, None, "embed"),
                                 bias=patch_bias, rngs=rngs)

    def embed_patches(self, pixels: Array) -> Array:
        """float32[B, H, W, 3] -> float[B, H/p, W/p, C], computed in ``config.dtype``."""
        cfg = self.config
        return self.patch_embed(patchify(pixels.astype(cfg.dtype), cfg.patch))


def run_blocks(blocks, x: Array, *args) -> tuple[Array, list[Array]]:
    """``x`` through each block in turn (extra ``args`` passed to every block); returns the output
    and HF's ``hidden_states``: [input, after block 1, ..., after the last block]."""
    hidden = [x]
    for blk in blocks:
        x = blk(x, *args)
        hidden.append(x)
    return x, hidden


def patchify(x: Array, p: int) -> Array:
    """float[B, H, W, C] -> float[B, H//p, W//p, p, p, C]: the receptive fields of a p x p / p
    conv (rows / columns past the last full patch are dropped, as the conv does)."""
    b, h, w, c = x.shape
    gh, gw = h // p, w // p
    x = x[:, :gh * p, :gw * p].reshape(b, gh, p, gw, p, c)
    return x.transpose(0, 1, 3, 2, 4, 5)


# --- resampling exactly as torch.nn.functional.interpolate(align_corners=False) ---------------

def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _bicubic(n_in: int, n_out: int) -> np.ndarray:
    # torch upsample_bicubic2d: A=-0.75, border indices clamped (replicate)
    w = np.zeros((n_out, n_in))
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(src).astype(int)
    t = src - i0
    for k in range(-1, 3):
        np.add.at(w, (np.arange(n_out), np.clip(i0 + k, 0, n_in - 1)), _cubic(t - k, -0.75))
    return w


def _bilinear(n_in: int, n_out: int) -> np.ndarray:
    w = np.zeros((n_out, n_in))
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(w, (np.arange(n_out), i0), 1 - lam)
    np.add.at(w, (np.arange(n_out), i1), lam)
    return w


def _antialiased(n_in: int, n_out: int, kernel: Callable, support: float) -> np.ndarray:
    # torch's antialias=True path (the PIL algorithm): the kernel widens when downsampling,
    # taps outside the image are dropped and each row renormalised.
    scale = n_in / n_out
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    sup = support * scale if scale >= 1.0 else support
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - sup + 0.5), 0)
        hi = min(int(center + sup + 0.5), n_in)
        j = np.arange(lo, hi)
        k = kernel((j - center + 0.5) * inv)
        w[i, lo:hi] = k / k.sum() if k.sum() != 0 else k
    return w


RESAMPLERS: dict[str, Callable[[int, int], np.ndarray]] = {
    "bicubic": _bicubic,
    "bilinear": _bilinear,
    "bicubic_aa": lambda n, m: _antialiased(n, m, lambda x: _cubic(x, -0.5), 2.0),
    "bilinear_aa": lambda n, m: _antialiased(n, m, lambda x: np.maximum(1 - np.abs(x), 0), 1.0),
}


def resample_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
    """float32[n_out, n_in]: 1-D weights equal to torch's ``interpolate`` for ``method``."""
    return RESAMPLERS[method](n_in, n_out).astype(np.float32)


def resample_grid(grid: Array, size: tuple[int, int], method: str) -> Array:
    """float[h, w, C] -> float32[H, W, C] resampled separably like torch ``interpolate``."""
    h, w = grid.shape[:2]
    if (h, w) == tuple(size):
        return grid
    rh, rw = resample_matrix(h, size[0], method), resample_matrix(w, size[1], method)
    return jnp.einsum("Yy,yxc,Xx->YXc", rh, grid.astype(jnp.float32), rw,
                      precision=jax.lax.Precision.HIGHEST)


# --- configs ------------------------------------------------------------------------------------

class TowerConfig:
    """Base of the token towers' config dataclasses (fields ``image_size``, ``patch``, ``depth``,
    ``layer``, ``dtype``): the patch grid and the checks they share.

    ``dtype`` ("float32" | "bfloat16") is the dtype the parameters are stored in and the blocks
    compute in; norms and softmax stay float32 and the features are float32. ``layer`` indexes
    ``hidden_states`` (0 = embeddings, i = after block i, negative from the end).
    """

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size // self.patch, self.image_size // self.patch)

    def check_tower(self, none_means: str = "the output") -> None:
        """Raises ValueError for a bad ``dtype``, ``image_size`` or ``layer`` (None means
        ``none_means``)."""
        check_dtype(self)
        if self.image_size < self.patch:
            raise ValueError(f"image_size {self.image_size} is smaller than the patch {self.patch}")
        if self.layer is not None and not -(self.depth + 1) <= self.layer <= self.depth:
            raise ValueError(f"layer {self.layer} out of range for depth {self.depth} "
                             f"(valid: {-(self.depth + 1)}..{self.depth}, or None for "
                             f"{none_means})")


def check_dtype(cfg: Any) -> None:
    if cfg.dtype not in DTYPES:
        raise ValueError(f"{type(cfg).__name__}.dtype={cfg.dtype!r}; expected one of "
                         f"{' or '.join(map(repr, DTYPES))}")


def variant_config(family: str, cls: Callable[..., Any], variants: Mapping[str, Mapping],
                   variant: str, **overrides) -> Any:
    """``cls(**variants[variant])`` with the ``overrides`` that are not None, checked."""
    if variant not in variants:
        raise ValueError(f"{family}: unknown variant {variant!r}; known variants: "
                         f"{', '.join(variants)}")
    cfg = cls(**variants[variant])
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None}).check()
