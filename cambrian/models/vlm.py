"""The Cambrian model: vision encoders -> connector -> LLM, visual tokens spliced at ``<image>``.

Batches follow ``cambrian/data/loader.py``: ``tokens`` hold ``IMAGE_TOKEN`` at the (contiguous)
visual-token slots of each row; the model replaces their embeddings with the connector's tokens in
order. A row holds one image (``image`` uint8[B, S, S, 3]) or, packed, K (uint8[B, K, S, S, 3],
``image_box`` float32[B, K, 4]) whose tokens fill the row's slots one image after another.
Visual tokens over letter-box padding are masked out of attention and consume no position ids
(Cambrian's compacted positions). In-LLM SVA layers, if the connector has them, re-read the
encoder windows after the configured decoder layers, at the image positions only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from cambrian.models import connectors, encoders, llm, weights
from cambrian.models.encoders.preprocess import PreprocessSpec
from cambrian.models.llm.generate import decode_embeds, eos_array, stop_table
from cambrian.models.tokens import IMAGE_TOKEN


class Cambrian(nnx.Module):
    def __init__(self, config: mlc.ConfigDict, *, vocab_size: int, rngs: nnx.Rngs,
                 load_pretrained: bool = True, remat: str = "none"):
        """config: the ``config.model`` section. Pretrained parts are read from their
        checkpoints (``load_pretrained=False`` builds the same structure with random weights,
        e.g. under ``nnx.eval_shape``). The LLM computes in ``config.dtype`` (its weights keep
        their own dtype) and rematerialises its layers as ``remat`` says (``config.remat``);
        frozen encoders store and compute in ``config.encoder_dtype``."""
        config = weights.with_local_checkpoints(config, weights=load_pretrained)  # gs:// -> cache
        self.encoders = nnx.Dict()
        self.specs: dict[str, PreprocessSpec] = {}
        self.tokens_per_encoder: dict[str, int] = {}
        for alias, e in config.encoders.items():
            # frozen towers may store and run in bfloat16; trained ones keep fp32 weights
            dtype = config.encoder_dtype if e.frozen else "float32"
            kw = dict(variant=e.variant, image_size=e.image_size or None, layer=e.layer,
                      dtype=dtype)
            if e.init == "pretrained" and load_pretrained:
                if not e.checkpoint:
                    raise FileNotFoundError(
                        f"model.encoders.{alias}.checkpoint is empty: set it to the {e.family} "
                        f"{e.variant} checkpoint directory (see README, 'Checkpoints')")
                enc = encoders.load(e.family, e.checkpoint, **kw)
            else:
                enc = encoders.create(e.family, e.variant, image_size=kw["image_size"],
                                      layer=e.layer, rngs=rngs, dtype=dtype)
            self.encoders[alias] = enc
            spec = encoders.preprocessing(e.family, e.variant)
            size = e.image_size or spec.image_size
            self.specs[alias] = spec.with_size(size)
            self.tokens_per_encoder[alias] = e.tokens
        self.grids = [self._grid(a) for a in self.encoders]
        numerics = dict(attention=config.llm.attention, dtype=config.dtype, remat=remat)
        self.llm = self._build_llm(config.llm, vocab_size, rngs, load_pretrained, numerics)
        self.connector = connectors.create(
            config.connector.name, encoder_channels=[enc.out_channels for enc in
                                                     self.encoders.values()],
            encoder_grids=self.grids, llm_dim=self.llm.config.hidden_size, rngs=rngs,
            **config.connector.options.to_dict())
        self.num_image_tokens = int(self.connector.num_tokens)
        self.in_llm_layers = tuple(getattr(self.connector, "in_llm_layers", ()))

    @property
    def pad_color(self) -> tuple[float, float, float]:
        """Pad-to-square fill: the first encoder's pad colour (Cambrian: its processor mean)."""
        spec = next(iter(self.specs.values()))
        return spec.pad_color or spec.mean

    def host_image_size(self, override: int = 0) -> int:
        """Side of the square images the host feeds: ``override`` or the largest encoder's."""
        return override or max(s.image_size for s in self.specs.values())

    def _grid(self, alias: str) -> tuple[int, int]:
        n = self.tokens_per_encoder[alias]
        if n:
            side = int(round(n ** 0.5))
            return (side, side)
        return tuple(self.encoders[alias].grid)

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
        if not load_pretrained:
            return llm.Llama(llm.config_from_hf(llm.read_hf_config(c.checkpoint), **numerics),
                             rngs=rngs)
        return llm.load(c.checkpoint, **numerics)

    # ----------------------------------------------------------------------------- vision

    def encode_images(self, images: jax.Array, image_box: jax.Array):
        """uint8[B, S, S, 3] + float32[B, 4] -> (visual tokens float[B, N, D], connector out)."""
        feats, valid = [], []
        x = images.astype(jnp.float32)
        for alias, enc in self.encoders.items():
            spec = self.specs[alias]
            s = spec.image_size
            pix = x if x.shape[1] == s else jax.image.resize(
                x, (x.shape[0], s, s, 3), "bicubic", antialias=True)
            mean = jnp.asarray(spec.mean, jnp.float32) * 255.0
            std = jnp.asarray(spec.std, jnp.float32) * 255.0
            f, _ = enc((pix - mean) / std)
            n = self.tokens_per_encoder[alias]
            if n:
                f = encoders.features.interpolate_to_tokens(f, n)
            feats.append(f.astype(jnp.float32))
            valid.append(box_valid(image_box, f.shape[1:3]))
        return self.connector(feats, valid)

    # ----------------------------------------------------------------------------- LLM inputs

    def prepare(self, batch: dict, vision: bool = True):
        """Batch -> (embeds, segment_ids, positions, hook) for the LLM."""
        tokens = batch["tokens"]
        is_img = tokens == IMAGE_TOKEN
        embeds = self.llm.embed(jnp.where(is_img, 0, tokens))
        seg = batch["segment_ids"]
        hook = None
        if vision and "image" in batch:
            images, box = batch["image"], batch["image_box"]
            k = images.shape[1] if images.ndim == 5 else 1
            vis, cout = self.encode_images(images.reshape(-1, *images.shape[-3:]),
                                           box.reshape(-1, 4))
            b, n = tokens.shape[0], vis.shape[1]
            # A row's K images fill its visual-token slots one after another (packed rows).
            vis = vis.reshape(b, k * n, vis.shape[-1])
            idx = jnp.clip(jnp.cumsum(is_img, axis=1) - 1, 0, k * n - 1)
            embeds = jnp.where(is_img[..., None],
                               jnp.take_along_axis(vis, idx[..., None], axis=1).astype(
                                   embeds.dtype), embeds)
            tok_valid = jnp.take_along_axis(cout["token_valid"].reshape(b, k * n), idx, axis=1)
            seg = jnp.where(is_img & ~tok_valid, 0, seg)
            hook = self._in_llm_hook(cout, is_img, idx, n, k)
        else:
            # No vision: image slots are removed from attention entirely.
            seg = jnp.where(is_img, 0, seg)
        positions = compact_positions(batch["segment_ids"], seg != 0)
        return embeds, seg, positions, hook

    def _in_llm_hook(self, cout, is_img, idx, n, k):
        if not self.in_llm_layers:
            return None
        which = {layer: j for j, layer in enumerate(self.in_llm_layers)}
        b, t = is_img.shape
        # row positions of visual slots 0 .. k*n-1: a stable sort puts the image slots first
        slots = jnp.argsort(~is_img, axis=1, stable=True)
        gather = jnp.take(slots, jnp.minimum(jnp.arange(k * n), t - 1), axis=1)

        def hook(i, h):
            if i not in which or h.shape[1] != t:  # decode steps see one token: nothing to do
                return h
            img = jnp.take_along_axis(h, gather[..., None], axis=1)
            new = self.connector.apply_in_llm(which[i], img.reshape(b * k, n, -1), cout)
            new = new.reshape(b, k * n, -1)
            back = jnp.take_along_axis(new, idx[..., None], axis=1).astype(h.dtype)
            return jnp.where(is_img[..., None], back, h)

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


def box_valid(box: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """float32[B, 4] (top, left, h, w fractions) -> bool[B, gh, gw]: cell centre inside box."""
    gh, gw = grid
    cy = (jnp.arange(gh) + 0.5) / gh
    cx = (jnp.arange(gw) + 0.5) / gw
    top, left, h, w = (box[:, i, None] for i in range(4))
    vy = (cy[None] >= top) & (cy[None] < top + h)
    vx = (cx[None] >= left) & (cx[None] < left + w)
    return vy[:, :, None] & vx[:, None, :]


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
