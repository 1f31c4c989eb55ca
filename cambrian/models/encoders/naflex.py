"""The NaFlex ViT of SigLIP 2: native aspect ratio, a variable number of patches per image.

A NaFlex tower is the SigLIP ViT (no CLS token, pre-norm blocks, a final LayerNorm) whose learned
square position table is resampled for each image to that image's patch grid, bilinearly with
antialiasing (torch ``F.interpolate(mode="bilinear", align_corners=False, antialias=True)``; HF
``Siglip2VisionEmbeddings.resize_positional_embeddings``). HF's ``Siglip2ImageProcessor`` resizes
each image, keeping its aspect ratio, to the largest grid of at most ``max_num_patches`` patches
(``naflex_size``), flattens its patches row by row and pads the sequence to ``max_num_patches``;
every attention layer masks the padded keys (``pixel_attention_mask`` + ``spatial_shapes``).

``NaFlexViT`` is called in one of two ways:

* ``feats, out = enc(pixels)``, pixels float32[B, H, W, 3]: every image fills its H x W canvas,
  one sequence of (H/p)(W/p) patches with no padding (a square image of Cambrian's pipeline, or a
  batch of one aspect ratio). feats float32[B, H/p, W/p, C]; ``out`` as ``vit.VisionTransformer``.
* ``feats, out = enc(pixels, spatial_shapes)`` for a padded batch of mixed aspect ratios
  (``naflex_batch`` builds one): spatial_shapes int32[B, 2] gives each image's grid (rows, cols)
  of patches; image b fills the top-left rows*p x cols*p pixels of its canvas and the rest is
  never read. Each image becomes a row-major sequence of rows*cols patches padded to
  L = min(max_num_patches, (H/p)(W/p)). feats float32[B, H/p, W/p, C] is the canvas grid with
  image b's features in its top-left rows x cols cells and zeros elsewhere;
  ``out["valid"]`` bool[B, H/p, W/p] marks those cells (the ``valid`` masks the connectors take),
  ``out["hidden_states"]`` are the padded sequences float[B, L, C] and ``out["sequence_valid"]``
  bool[B, L] their mask.

Einsum letters: b batch, l sequence position, n/m query/key tokens, h heads, d head_dim, c embed,
y/x rows and columns of the position table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from cambrian.models.encoders import common, vit
from cambrian.models.encoders.preprocess import HALF

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class NaFlexConfig(vit.ViTConfig):
    """``vit.ViTConfig`` of a NaFlex tower; ``max_num_patches`` is the sequence length a padded
    batch is cut to (the processor's ``max_num_patches``)."""

    max_num_patches: int = 256

    def check(self) -> NaFlexConfig:
        super().check()
        if self.cls_token or self.registers or self.layerscale or self.pos_interp != "bilinear_aa":
            raise ValueError("NaFlexConfig: a NaFlex tower has no CLS / register tokens or layer "
                             "scale and resamples positions with 'bilinear_aa'; got cls_token="
                             f"{self.cls_token}, registers={self.registers}, layerscale="
                             f"{self.layerscale}, pos_interp={self.pos_interp!r}")
        if self.max_num_patches < 1:
            raise ValueError(f"NaFlexConfig.max_num_patches={self.max_num_patches}; expected >= 1")
        return self


# --- the tower ----------------------------------------------------------------------------------

def _attention(q: Array, k: Array, v: Array, key_bias: Array) -> Array:
    """``common.attention`` plus an additive key bias float32[b, 1, 1, m] (padding masked)."""
    logits = jnp.einsum("bnhd,bmhd->bhnm", q * q.shape[-1] ** -0.5, k)
    probs = jax.nn.softmax(logits.astype(jnp.float32) + key_bias, axis=-1).astype(v.dtype)
    return jnp.einsum("bhnm,bmhd->bnhd", probs, v)


def _block(blk: vit.Block, x: Array, key_bias: Array) -> Array:
    """``blk`` (a SigLIP block: no layer scale) with the padded keys masked."""
    h = blk.norm1(x)
    x = x + blk.attn.out(_attention(blk.attn.q(h), blk.attn.k(h), blk.attn.v(h), key_bias))
    return x + blk.mlp(blk.norm2(x))


def sequence_index(spatial_shapes: Array, length: int) -> tuple[Array, Array, Array]:
    """Where token l of each image's row-major sequence sits: rows, cols int32[B, L] and
    valid bool[B, L] (False = padding, placed at (0, 0)) for spatial_shapes int32[B, 2]."""
    ss = jnp.asarray(spatial_shapes, jnp.int32)
    w = jnp.maximum(ss[:, 1:], 1)
    pos = jnp.arange(length, dtype=jnp.int32)[None]
    valid = pos < ss[:, :1] * w
    # padding stays inside the table: a masked key still multiplies its value by 0, and a
    # position past the resampled grid would have no weights (0 / 0)
    return jnp.where(valid, pos // w, 0), jnp.where(valid, pos % w, 0), valid


def axis_weights(index: Array, size: Array, n_src: int) -> Array:
    """float32[B, L, n_src]: 1-D weights of torch's antialiased bilinear resize of n_src samples
    to ``size`` float[B, 1] samples, for output sample ``index`` float[B, L] (any size, traced).

    The triangle filter is widened by the scale when shrinking; taps outside the source are
    dropped and each row renormalised (as torch's antialias=True path).
    """
    scale = n_src / size.astype(jnp.float32)
    support = jnp.maximum(scale, 1.0)[..., None]
    center = (index.astype(jnp.float32) + 0.5) * scale - 0.5
    dist = jnp.abs(jnp.arange(n_src, dtype=jnp.float32) - center[..., None])
    w = jnp.maximum(1.0 - dist / support, 0.0)
    return w / w.sum(-1, keepdims=True)


def check_spatial_shapes(spatial_shapes, grid: tuple[int, int], length: int, patch: int) -> None:
    """Raises ValueError naming the first image whose patch grid does not fit its canvas
    ``grid`` or the sequence ``length``; traced values are not checked."""
    if isinstance(spatial_shapes, jax.core.Tracer):
        return
    ss = np.asarray(spatial_shapes)
    for i, (rows, cols) in enumerate(ss.reshape(-1, 2)):
        if not (1 <= rows <= grid[0] and 1 <= cols <= grid[1] and rows * cols <= length):
            raise ValueError(
                f"NaFlex: image {i} has spatial shape ({rows}, {cols}) ({patch}-px patches); "
                f"expected 1 <= rows <= {grid[0]} and 1 <= cols <= {grid[1]} (its canvas) and "
                f"rows * cols <= {length} (the sequence length, min(max_num_patches, canvas "
                "patches)); build padded batches with naflex.naflex_batch, or load the encoder "
                "with a larger max_num_patches")


class NaFlexViT(vit.VisionTransformer):
    """``feats, out = enc(pixels[, spatial_shapes])`` (see the module docstring)."""

    def __call__(self, pixels: Array, spatial_shapes: Array | None = None) -> tuple[Array, dict]:
        if spatial_shapes is None:  # one unpadded sequence per image
            return super().__call__(pixels)
        cfg = self.config
        b, hh, ww, _ = pixels.shape
        p = cfg.patch
        gh, gw = hh // p, ww // p
        length = min(cfg.max_num_patches, gh * gw)
        check_spatial_shapes(spatial_shapes, (gh, gw), length, p)
        ss = jnp.asarray(spatial_shapes, jnp.int32)
        rows, cols, seq_valid = sequence_index(ss, length)

        # the image's patches, row-major, padded with patch 0 (masked below)
        patches = common.patchify(pixels.astype(cfg.dtype), p).reshape(b, gh * gw, -1)
        src = rows * gw + cols
        patches = jnp.take_along_axis(patches, src[..., None], axis=1)
        x = self.patch_embed(patches.reshape(b, length, p, p, 3))
        x = x + self._sequence_positions(ss, rows, cols).astype(x.dtype)

        key_bias = jnp.where(seq_valid, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
        hidden = [x]
        for blk in self.blocks:
            x = _block(blk, x, key_bias)
            hidden.append(x)
        last = self.final_norm(x)
        chosen = last if cfg.layer is None else hidden[cfg.layer]

        # the sequences back onto the canvas grid: cell (r, c) of image b is token r * cols + c
        r = jnp.arange(gh)[None, :, None]
        c = jnp.arange(gw)[None, None, :]
        valid = (r < ss[:, 0, None, None]) & (c < ss[:, 1, None, None])
        tok = jnp.where(valid, r * ss[:, 1, None, None] + c, 0).reshape(b, gh * gw, 1)
        feats = jnp.take_along_axis(chosen, tok, axis=1).astype(jnp.float32)
        feats = jnp.where(valid[..., None], feats.reshape(b, gh, gw, -1), 0.0)
        return feats, {"hidden_states": tuple(hidden), "last_hidden_state": last,
                       "valid": valid, "sequence_valid": seq_valid}

    def _sequence_positions(self, spatial_shapes: Array, rows: Array, cols: Array) -> Array:
        """float32[B, L, C]: the position table resampled to each image's grid, at each token."""
        s = self.config.pos_size
        table = self.pos_embed[...].reshape(s, s, -1).astype(jnp.float32)
        wy = axis_weights(rows, spatial_shapes[:, :1], s)
        wx = axis_weights(cols, spatial_shapes[:, 1:], s)
        return jnp.einsum("bly,yxc,blx->blc", wy, table, wx, precision=jax.lax.Precision.HIGHEST)


# --- host side: padded batches of mixed aspect ratios -------------------------------------------

def naflex_size(height: int, width: int, patch: int, max_num_patches: int) -> tuple[int, int]:
    """The (height, width) in pixels NaFlex resizes an image to: sides multiples of ``patch``
    (at least one patch), aspect ratio kept as far as the rounding allows, at most
    ``max_num_patches`` patches. The scale is found by bisection as HF's processor does
    (``get_image_size_for_max_num_patches``), so the sizes agree with it exactly."""
    def side(n: int, scale: float) -> int:
        return max(patch, math.ceil(n * scale / patch) * patch)

    lo, hi = 1e-6, 100.0
    while hi - lo >= 1e-5:
        mid = (lo + hi) / 2
        if side(height, mid) * side(width, mid) <= max_num_patches * patch * patch:
            lo = mid
        else:
            hi = mid
    return side(height, lo), side(width, lo)


def naflex_batch(images: Sequence[np.ndarray], *, patch: int, max_num_patches: int,
                 mean: Sequence[float] = HALF, std: Sequence[float] = HALF,
                 canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8[H_b, W_b, 3] images -> (pixels float32[B, H, W, 3], spatial_shapes int32[B, 2]).

    Each image is resized to ``naflex_size`` (PIL bilinear, as ``Siglip2ImageProcessor`` with
    its default ``resample``), normalised and put in the top-left of a zero canvas; the canvas
    is the largest grid in the batch, or ``canvas`` (rows, cols of patches) when given, so that
    batches of one shape compile once.
    """
    sizes = [naflex_size(im.shape[0], im.shape[1], patch, max_num_patches) for im in images]
    shapes = np.array([(h // patch, w // patch) for h, w in sizes], np.int32).reshape(-1, 2)
    grid = canvas or (int(shapes[:, 0].max()), int(shapes[:, 1].max()))
    if (shapes > np.asarray(grid)).any():
        i = int(np.argmax((shapes > np.asarray(grid)).any(-1)))
        need = tuple(shapes[i].tolist())
        raise ValueError(f"naflex_batch: image {i} needs a grid of {need} patches, "
                         f"larger than the canvas {tuple(grid)}; pass a larger canvas or None")
    out = np.zeros((len(images), grid[0] * patch, grid[1] * patch, 3), np.float32)
    m = np.asarray(mean, np.float32) * 255.0
    s = np.asarray(std, np.float32) * 255.0
    for i, (im, (h, w)) in enumerate(zip(images, sizes)):
        resized = np.asarray(Image.fromarray(im).resize((w, h), resample=Image.BILINEAR))
        out[i, :h, :w] = (resized.astype(np.float32) - m) / s
    return out, shapes
