"""The Cambrian model: vision encoders -> connector -> LLM, visual tokens spliced at ``<image>``.

Batches follow ``cambrian/data/loader.py``: ``tokens`` hold ``IMAGE_TOKEN`` at the (contiguous)
visual-token slots of each row; the model replaces their embeddings with the connector's tokens in
order. The host gives every encoder its own image (``image``: alias -> uint8[B, S_k, S_k, 3],
padded to a square with that encoder's colour and resized once, ``HostImages``) and the letter-box
geometry (``letterbox`` int32[B, G, 2]: padded rows / columns of each grid side in
``host_images().sides``). A packed row holds K images (uint8[B, K, S_k, S_k, 3], int32[B, K, G,
2]) whose tokens fill the row's slots one image after another.

Cambrian's valid tokens: on each encoder's own grid, the rows / columns of the letter-box padding
are masked out of the connector's keys; on a square token grid (L x L), the padded rows / columns
of that grid are masked out of the LLM's attention and consume no position ids (compacted
positions), and a newline is kept with its row. That is Cambrian's evaluation, which crops them
("unpad"), token for token. In-LLM SVA layers, if the connector has them, re-read the encoder
windows after the configured decoder layers (``connectors/sva.py``: ``image_position``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from cambrian import config as config_lib
from cambrian.models import connectors, encoders, llm, weights
from cambrian.models.connectors.common import grid_token_valid, letterbox_mask
from cambrian.models.encoders import common as encoder_common
from cambrian.models.encoders import vit
from cambrian.models.encoders.preprocess import HostImages, PreprocessSpec
from cambrian.models.llm.generate import decode_embeds, eos_array, stop_table
from cambrian.models.tokens import IMAGE_TOKEN
from cambrian.release.config import MODEL_TYPES as RELEASE_MODEL_TYPES

# batch key prefix of an encoder's precomputed features: ``features/<alias>`` float[B, (K,) h, w,
# C] (cambrian/feature_cache.py) replaces that encoder's ``image[alias]``
CACHED = "features/"


class Cambrian(nnx.Module):
    def __init__(self, config: mlc.ConfigDict, *, vocab_size: int, rngs: nnx.Rngs,
                 load_pretrained: bool = True, remat: str = "none"):
        """config: the ``config.model`` section. Pretrained parts are read from their
        checkpoints (``load_pretrained=False`` builds the same structure with random weights,
        e.g. under ``nnx.eval_shape``). The LLM computes in ``config.dtype`` (its weights keep
        their own dtype) and rematerialises its layers as ``remat`` says (``config.remat``);
        frozen encoders store and compute in ``config.encoder_dtype``; unfrozen ones recompute
        their blocks in the backward pass when ``config.encoder_remat``."""
        config = weights.with_local_checkpoints(config, weights=load_pretrained)  # gs:// -> cache
        self.encoders = nnx.Dict()
        self.remat_encoders: tuple[str, ...] = tuple(
            a for a, e in config.encoders.items() if config.encoder_remat and not e.frozen)
        # trained towers keep fp32 weights and compute in model.dtype, like the LLM
        self.trained_encoders: tuple[str, ...] = tuple(
            a for a, e in config.encoders.items() if not e.frozen)
        self.compute_dtype: str = config.dtype
        self.specs: dict[str, PreprocessSpec] = {}
        self.tokens_per_encoder: dict[str, int] = {}
        order = []
        config_lib.check_order(config.encoders)  # overrides come after the config's own checks
        for alias, e in config_lib.ordered_encoders(config.encoders):
            self.encoders[alias], self.specs[alias] = build_encoder(
                config, alias, rngs=rngs, load_pretrained=load_pretrained)
            self.tokens_per_encoder[alias] = e.tokens
            order.append(alias)
        self.order: tuple[str, ...] = tuple(order)
        self.grids = tuple(self._grid(a) for a in self.order)
        numerics = dict(attention=config.llm.attention, dtype=config.dtype, remat=remat)
        self.llm = self._build_llm(config.llm, vocab_size, rngs, load_pretrained, numerics)
        self.connector = connectors.create(
            config.connector.name, encoder_channels=[self.encoders[a].out_channels
                                                     for a in self.order],
            encoder_grids=self.grids, llm_dim=self.llm.config.hidden_size, rngs=rngs,
            **config.connector.options.to_dict())
        self.num_image_tokens = int(self.connector.num_tokens)
        self.in_llm_layers = tuple(getattr(self.connector, "in_llm_layers", ()))
        self.image_position = int(getattr(self.connector, "image_position", -1))
        grid = self.connector.grid
        # square token grids are letter-boxed like the image (Cambrian's unpad)
        self.token_side = grid[0] if grid is not None and grid[0] == grid[1] else 0
        self.sides = tuple(sorted({g[0] for g in self.grids} | ({self.token_side} - {0})))

    def _grid(self, alias: str) -> tuple[int, int]:
        n = self.tokens_per_encoder[alias]
        if n:
            side = int(round(n ** 0.5))
            return (side, side)
        grid = tuple(self.encoders[alias].grid)
        if grid[0] != grid[1]:
            raise ValueError(f"model.encoders.{alias}: feature grid {grid[0]}x{grid[1]} is not "
                             "square; the letter-box masks need square grids (set its tokens)")
        return grid

    def host_images(self) -> HostImages:
        """What the host makes of one image for this model (``preprocess.HostImages``)."""
        return HostImages(tuple((a, self.specs[a]) for a in self.order), self.sides)

    @staticmethod
    def _build_llm(c: mlc.ConfigDict, vocab_size: int, rngs: nnx.Rngs, load_pretrained: bool,
                   numerics: dict) -> llm.Llama:
        """``numerics``: the ``LlamaConfig`` fields the run sets (attention, dtype, remat)."""
        if c.init == "random":
            r = c.random
            config = llm.LlamaConfig(
                vocab_size=vocab_size, hidden_size=r.hidden_size,
                intermediate_size=r.intermediate_size, num_layers=r.num_layers,
                num_heads=r.num_heads, num_kv_heads=r.num_kv_heads, head_dim=r.head_dim,
                rope_theta=r.rope_theta, **numerics)
            return llm.Llama(config, rngs=rngs)
        if not c.checkpoint:
            raise FileNotFoundError("model.llm.checkpoint is empty: set it to the LLM's Hugging "
                                    "Face checkpoint directory (config.json + *.safetensors)")
        hf, extra = llm.read_hf_config(c.checkpoint), {}
        if hf.get("model_type") in RELEASE_MODEL_TYPES:
            # a released Cambrian-1: its shards hold a Llama (plus the connector, read apart),
            # its vocabulary resized to the tokenizer's at load (upstream builder.py:157)
            if vocab_size > hf["vocab_size"]:
                raise ValueError(f"{c.checkpoint}/config.json: vocab_size {hf['vocab_size']} < "
                                 f"{vocab_size} tokens of model.tokenizer; upstream would append "
                                 "random rows. Use the release's own tokenizer")
            hf, extra = {**hf, "model_type": "llama"}, {"vocab_size": vocab_size}
        if not load_pretrained:
            return llm.Llama(llm.config_from_hf(hf, **numerics, **extra), rngs=rngs)
        return llm.load(c.checkpoint, hf_config=hf, **numerics, **extra)

    # ----------------------------------------------------------------------------- vision

    def _valid(self, letterbox: jax.Array, side: int) -> jax.Array:
        return letterbox_mask(letterbox[:, self.sides.index(side)], side)

    def tower_features(self, alias: str, images: jax.Array) -> jax.Array:
        """uint8[N, S, S, 3] (encoder ``alias``'s host images) -> float[N, h, w, C]: its
        features (what ``cambrian.feature_cache`` stores), before any token interpolation."""
        trained = alias in self.trained_encoders
        return run_tower(self.encoders[alias], self.specs[alias], images,
                         remat=alias in self.remat_encoders,
                         compute_dtype=self.compute_dtype if trained else None)

    def encode_images(self, images: dict, letterbox: jax.Array, cached: dict | None = None):
        """alias -> uint8[N, S_k, S_k, 3] + int32[N, G, 2] -> (visual tokens float[N, T, D],
        connector out with ``token_valid`` bool[N, T]).

        ``cached``: alias -> float[N, h, w, C] precomputed features of that (frozen) encoder, in
        its output dtype, used instead of running it on ``images[alias]`` (then not needed)."""
        feats, valid = [], []
        cached = cached or {}
        for alias in self.order:
            f = (cached[alias] if alias in cached else
                 self.tower_features(alias, images[alias]))
            n = self.tokens_per_encoder[alias]
            if n:
                f = encoders.features.interpolate_to_tokens(f, n)
            feats.append(f.astype(jnp.float32))
            valid.append(self._valid(letterbox, f.shape[1]))
        tokens, out = self.connector(feats, valid)
        if self.token_side:
            out = {**out, "token_valid": grid_token_valid(
                self._valid(letterbox, self.token_side), self.connector.newline)}
        return tokens, out

    # ----------------------------------------------------------------------------- LLM inputs

    def prepare(self, batch: dict, vision: bool = True):
        """Batch -> (embeds, segment_ids, positions, hook) for the LLM."""
        tokens = batch["tokens"]
        is_img = tokens == IMAGE_TOKEN
        embeds = self.llm.embed(jnp.where(is_img, 0, tokens))
        seg = batch["segment_ids"]
        cached = {a: batch[CACHED + a] for a in self.order if CACHED + a in batch}
        if not (vision and ("image" in batch or cached)):
            # No vision: image slots are removed from attention entirely.
            seg = jnp.where(is_img, 0, seg)
            return embeds, seg, compact_positions(batch["segment_ids"], seg != 0), None
        lb = batch["letterbox"]
        k = lb.shape[1] if lb.ndim == 4 else 1
        vis, cout = self.encode_images(
            {a: x.reshape(-1, *x.shape[-3:]) for a, x in batch.get("image", {}).items()},
            lb.reshape(-1, *lb.shape[-2:]),
            {a: x.reshape(-1, *x.shape[-3:]) for a, x in cached.items()})
        b, n = tokens.shape[0], vis.shape[1]
        # A row's K images fill its visual-token slots one after another (packed rows).
        vis = vis.reshape(b, k * n, vis.shape[-1])
        idx = jnp.clip(jnp.cumsum(is_img, axis=1) - 1, 0, k * n - 1)
        embeds = jnp.where(is_img[..., None],
                           jnp.take_along_axis(vis, idx[..., None], axis=1).astype(embeds.dtype),
                           embeds)
        tok_valid = jnp.take_along_axis(cout["token_valid"].reshape(b, k * n), idx, axis=1)
        seg = jnp.where(is_img & ~tok_valid, 0, seg)
        positions = compact_positions(batch["segment_ids"], seg != 0)
        hook = None
        if self.in_llm_layers:
            if self.image_position < 0:
                read, src = _slot_targets(is_img, idx, k * n)
            else:
                if k != 1:
                    raise ValueError("connector option image_position >= 0 reads one image per "
                                     "row (Cambrian's rule); packed rows need image_position=-1")
                read, src = _fixed_targets(self.image_position, positions, seg != 0,
                                           is_img.any(axis=1),
                                           self._valid(lb.reshape(b, *lb.shape[-2:]),
                                                       self.token_side))
            hook = self._in_llm_hook(cout, read, src, n, k)
        return embeds, seg, positions, hook

    def _in_llm_hook(self, cout, read, src, n, k):
        which = {layer: j for j, layer in enumerate(self.in_llm_layers)}
        t = src.shape[1]

        def hook(i, h):
            if i not in which or h.shape[1] != t:  # decode steps see one token: nothing to do
                return h
            b = h.shape[0]
            img = jnp.take_along_axis(h, read[..., None], axis=1)
            new = self.connector.apply_in_llm(which[i], img.reshape(b * k, n, -1), cout)
            new = new.reshape(b, k * n, -1)
            back = jnp.take_along_axis(new, jnp.maximum(src, 0)[..., None], axis=1)
            return jnp.where((src >= 0)[..., None], back.astype(h.dtype), h)

        return hook

    def __call__(self, batch: dict, vision: bool = True, with_logits: bool = True,
                 packed: bool = True) -> tuple[jax.Array | None, dict]:
        """Next-token logits float32[B, T, V] (None if ``with_logits=False``) and
        intermediates (``hidden``: the LLM's final normed hidden state). ``packed=False``
        promises one conversation per row (``Llama.forward``'s ``one_segment``)."""
        embeds, seg, pos, hook = self.prepare(batch, vision)
        logits, out = self.llm.forward(embeds=embeds, positions=pos, segment_ids=seg,
                                       layer_hook=hook, with_logits=with_logits,
                                       one_segment=not packed)
        return logits, {"segment_ids": seg, "positions": pos, **out}


def build_encoder(config: mlc.ConfigDict, alias: str, *, rngs: nnx.Rngs,
                  load_pretrained: bool = True) -> tuple[nnx.Module, PreprocessSpec]:
    """Encoder ``alias`` of the ``config.model`` section (local checkpoints:
    ``weights.with_local_checkpoints``) and its preprocessing at its resolution. Frozen towers
    store and run in ``config.encoder_dtype``; trained ones keep fp32 weights."""
    e = config.encoders[alias]
    dtype = config.encoder_dtype if e.frozen else "float32"
    kw = dict(variant=e.variant, image_size=e.image_size or None, layer=e.layer, dtype=dtype)
    if e.init == "pretrained" and load_pretrained:
        if not e.checkpoint:
            raise FileNotFoundError(
                f"model.encoders.{alias}.checkpoint is empty: set it to the {e.family} "
                f"{e.variant} checkpoint directory (see README, 'Checkpoints')")
        enc = encoders.load(e.family, e.checkpoint, **kw)
    else:
        enc = encoders.create(e.family, e.variant, image_size=kw["image_size"], layer=e.layer,
                              rngs=rngs, dtype=dtype)
    if e.pos_interp:
        vit.set_pos_interp(enc, e.pos_interp, f"model.encoders.{alias}.pos_interp")
    spec = encoders.preprocessing(e.family, e.variant)
    return enc, spec.with_size(e.image_size or spec.image_size)


def run_tower(enc: nnx.Module, spec: PreprocessSpec, images: jax.Array, *,
              remat: bool = False, compute_dtype: str | None = None) -> jax.Array:
    """uint8[N, S, S, 3] host images of this tower (``preprocess.tower_image``) -> float[N, h,
    w, C] features: normalised as ``spec`` says, run through the tower (its blocks
    rematerialised if ``remat``; in ``compute_dtype`` if set, else in its weights' dtype)."""
    x = images.astype(jnp.float32)
    mean = jnp.asarray(spec.mean, jnp.float32) * 255.0
    std = jnp.asarray(spec.std, jnp.float32) * 255.0
    with encoder_common.remat_blocks(remat), encoder_common.compute_dtype(compute_dtype):
        f, _ = enc((x - mean) / std)
    return f


def _slot_targets(is_img: jax.Array, idx: jax.Array, slots: int):
    """In-LLM layers at the images' own slots: (read int32[B, slots]: row position of visual slot
    j; src int32[B, T]: the slot a row position takes its update from, -1 = none)."""
    t = is_img.shape[1]
    # row positions of visual slots 0 .. slots-1: a stable sort puts the image slots first
    order = jnp.argsort(~is_img, axis=1, stable=True)
    read = jnp.take(order, jnp.minimum(jnp.arange(slots), t - 1), axis=1)
    return read, jnp.where(is_img, idx, -1)


def _fixed_targets(start: int, positions: jax.Array, attended: jax.Array, has_image: jax.Array,
                   grid_valid: jax.Array):
    """Cambrian's rule (``cambrian_llama.py:168-253``): the image's L x L grid cropped to its kept
    rows r' < h' and columns c' < w' is read at index ``start + r' (w' + 1) + c'`` of the sequence
    of attended tokens (compacted positions), each kept row's newline after it, wherever the image
    is. Returns (read int32[B, L (L + 1)], src int32[B, T]) as ``_slot_targets``; rows without an
    image are left alone, as are grid slots past the sequence."""
    b, side = grid_valid.shape[:2]
    t = positions.shape[1]
    rows = grid_valid.any(axis=2)  # b, L: kept rows
    cols = grid_valid.any(axis=1)  # b, L: kept columns
    r = jnp.cumsum(rows, axis=1) - 1
    c = jnp.cumsum(cols, axis=1) - 1
    w = cols.sum(axis=1, keepdims=True)
    c = jnp.concatenate([c, w], axis=1)  # a row's newline comes after its w' kept columns
    index = start + r[:, :, None] * (w[:, :, None] + 1) + c[:, None, :]  # b, L, L + 1
    keep = rows[:, :, None] & jnp.concatenate([cols, jnp.ones((b, 1), bool)], axis=1)[:, None]
    index, keep = index.reshape(b, -1), keep.reshape(b, -1)
    # row position of each compacted position (positions of attended tokens are 0, 1, ...)
    at = jnp.where(attended, positions, t)
    row_of = jnp.full((b, t), t - 1, jnp.int32).at[jnp.arange(b)[:, None], at].set(
        jnp.arange(t, dtype=jnp.int32)[None], mode="drop")
    count = attended.sum(axis=1, keepdims=True)
    keep = keep & (index < count) & has_image[:, None]
    read = jnp.take_along_axis(row_of, jnp.clip(index, 0, t - 1), axis=1)
    slots = jnp.arange(index.shape[1], dtype=jnp.int32)
    src = jnp.full((b, t), -1, jnp.int32).at[jnp.arange(b)[:, None],
                                             jnp.where(keep, read, t)].set(
        jnp.broadcast_to(slots, read.shape), mode="drop")
    return read, src


def compact_positions(segment_ids: jax.Array, attended: jax.Array) -> jax.Array:
    """Position ids counting only attended tokens, restarting at every segment start.

    segment_ids int32[B, T] (the data's segments; 0 = padding); attended bool[B, T] (False also
    for visual tokens over letter-box padding). Unattended tokens get position 0.
    """
    valid = attended.astype(jnp.int32)
    c = jnp.cumsum(valid, axis=1)
    prev = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
    start = (segment_ids != prev) & (segment_ids != 0)
    base = jax.lax.cummax(jnp.where(start, c - valid, 0), axis=1)
    return jnp.where(attended, c - 1 - base, 0).astype(jnp.int32)


def num_params(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def generate_fn(graphdef, *, max_new_tokens: int, eos_ids: tuple[int, ...], vision: bool = True):
    """A jitted ``(state, batch) -> (tokens int32[B, max_new_tokens], lengths int32[B])`` for
    batched greedy decoding of the model split as ``graphdef, state``.

    ``batch`` holds left-padded prompts (``segment_ids`` 0 on the padding) and their images. The
    KV-cache decode loop is the LLM's; the visual prefix and in-LLM SVA run in its prefill.
    """
    eos = jnp.asarray(eos_array(eos_ids))
    stops = jnp.asarray(stop_table(()))

    def run(state, batch):
        model = nnx.merge(graphdef, state)
        embeds, seg, pos, hook = model.prepare(batch, vision)
        lg, ls = nnx.split(model.llm)
        return decode_embeds(lg, ls, embeds, seg, pos, jax.random.key(0), eos, stops,
                             jnp.float32(0.0), jnp.int32(0), max_new_tokens=max_new_tokens,
                             layer_hook=hook, cache_len=seg.shape[1] + max_new_tokens,
                             invariant=True)

    return jax.jit(run)
