"""Spatial Vision Aggregator (SVA), as released with Cambrian-1.

Query cell (i, j) of an L x L grid attends, in one joint softmax, to the m_k x m_k window
F_k[m_k i : m_k (i+1), m_k j : m_k (j+1)] of every encoder k (sum_k m_k^2 keys). Step by step
(Cambrian's ``vision_sampler.py`` / ``cambrian_arch.py``, layer type "joint"):

1. adapter ``mm_projector_aux_k``: Linear(C_k, C_v) -> GELU -> Linear(C_v, C_v) -> LayerNorm.
2. global context g = mean over all cells of adapted encoder ``global_context_encoder``.
3. each adapted map float[B, m L, m L, C_v] is re-laid out as windows float[B, L^2, m^2, C_v];
   the window key mask is "cell not over padding", reset to all True where a window is all padding.
4. every query starts as ``vision_query[g]`` (one learned vector per group, no positional term).
5. D layers ``vision_sampler_{g}.layers[d]``, each:
   x = proj_in([q, proj_context(g)]); K/V per encoder: LayerNorm -> Linear of (window + pos_embed_k,
   the latter only when m_k > 1); Q: LayerNorm -> Linear; a = o_proj(softmax(QK^T/sqrt(d)) V);
   q <- proj_out(LayerNorm(x + a)) + q   (proj_out: Linear -> GELU -> Linear, no biases).
6. groups are concatenated on channels -> ``mm_projector``: Linear(G C_v, D) -> GELU -> Linear.
7. ``image_newline`` ends each row: L (L + 1) tokens.
8. in-LLM layers ``vision_sampler_layers[s]`` (one such layer with q = the LLM hidden state of each
   image token) run after LLM decoder layer ``in_llm_start + s * in_llm_stride``.

Letters: b batch, q query cell (L^2), k key within the joint window, h head, d head dim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.connectors.common import (
    Mlp,
    append_newline,
    check_all_read,
    check_feats,
    check_valid,
    cover_valid,
    dense,
    grid_token_valid,
    layer_norm,
    load_layer_norm,
    load_linear,
    partitioned,
    resize_feats,
    set_param,
    side_of,
)
from cambrian.models.weights import open_checkpoint, take

# Released Cambrian-1 connectors (scripts/cambrian/*.sh and the HF configs). Encoders there: SigLIP
# SO400M (27x27 -> 24x24, global context), CLIP-L/14@336 (24x24), DINOv2-g/14@378 (27x27 -> 24x24),
# ConvNeXt-XXL multi-stage (96x96, m = 4). The 34B paper text says stride 9; the scripts and config
# use 9 layers at stride 7 (stride 9 would run past its 60 decoder layers).
_COMMON = dict(query_side=24, depth=3, groups=1, vision_hidden=1024, heads=16, in_llm_start=0,
               global_context_encoder=0)
PRESETS: dict[str, dict] = {
    "cambrian-8b": {**_COMMON, "in_llm_layers": 10, "in_llm_stride": 3},   # Llama-3-8B, 32 layers
    "cambrian-13b": {**_COMMON, "in_llm_layers": 10, "in_llm_stride": 4},  # Vicuna-13B, 40 layers
    "cambrian-34b": {**_COMMON, "in_llm_layers": 9, "in_llm_stride": 7},   # Yi-34B, 60 layers
}


class CrossAttention(nnx.Module):
    """Cambrian's ``MultiKVCrossAttention``: one Q projection, K/V projections per encoder."""

    def __init__(self, dim: int, num_kv: int, heads: int, *, rngs: nnx.Rngs, dtype=None,
                 param_dtype=jnp.float32):
        if dim % heads:
            raise ValueError(f"vision_hidden={dim} is not divisible by heads={heads}")
        self.heads, self.num_kv = heads, num_kv
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_norm = layer_norm(dim, **kw)
        self.q_proj = dense(dim, dim, use_bias=False, axes=("embed", "heads"), **kw)
        for i in range(num_kv):
            setattr(self, f"k_norm_{i}", layer_norm(dim, **kw))
            setattr(self, f"k_proj_{i}", dense(dim, dim, use_bias=False, axes=("embed", "heads"),
                                               **kw))
            setattr(self, f"v_norm_{i}", layer_norm(dim, **kw))
            setattr(self, f"v_proj_{i}", dense(dim, dim, use_bias=False, axes=("embed", "heads"),
                                               **kw))
        self.o_proj = dense(dim, dim, use_bias=False, axes=("heads", "embed"), **kw)

    def __call__(self, x: jax.Array, kv: Sequence[jax.Array], mask: jax.Array):
        """x float[b, q, C]; kv[i] float[b, q, m_i^2, C]; mask bool[b, q, k].

        Returns (float[b, q, C], attention weights float32[b, q, h, k]).
        """
        b, nq, c = x.shape
        dh = c // self.heads
        q = self.q_proj(self.q_norm(x)).reshape(b, nq, self.heads, dh)
        ks = [getattr(self, f"k_proj_{i}")(getattr(self, f"k_norm_{i}")(t))
              for i, t in enumerate(kv)]
        vs = [getattr(self, f"v_proj_{i}")(getattr(self, f"v_norm_{i}")(t))
              for i, t in enumerate(kv)]
        k = jnp.concatenate(ks, axis=2).reshape(b, nq, -1, self.heads, dh)
        v = jnp.concatenate(vs, axis=2).reshape(b, nq, -1, self.heads, dh)
        s = jnp.einsum("bqhd,bqkhd->bqhk", q, k, preferred_element_type=jnp.float32)
        s = s / math.sqrt(dh)
        # -inf gives masked keys exactly zero weight; every window keeps >= 1 key (reset rule).
        s = jnp.where(mask[:, :, None, :], s, -jnp.inf)
        w = jax.nn.softmax(s, axis=-1)
        o = jnp.einsum("bqhk,bqkhd->bqhd", w.astype(v.dtype), v).reshape(b, nq, c)
        return self.o_proj(o), w


class SamplerLayer(nnx.Module):
    """Cambrian's ``VisionCrossAttentionLayer`` ("joint"): context-conditioned window attention."""

    def __init__(self, q_dim: int, dim: int, multiples: Sequence[int], heads: int, *,
                 rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.multiples = tuple(multiples)
        self.proj_context = dense(dim, dim, use_bias=False, **kw)
        self.proj_in = dense(q_dim + dim, dim, use_bias=False, **kw)
        self.proj_out = Mlp(dim, dim, q_dim, use_bias=False, **kw)
        self.norm = layer_norm(dim, **kw)
        self.cross_attn = CrossAttention(dim, len(multiples), heads, **kw)
        for i, m in enumerate(self.multiples):
            if m > 1:  # torch.randn: std 1
                init = partitioned(nnx.initializers.normal(1.0), (None, "embed"))
                setattr(self, f"pos_embed_{i}", nnx.Param(init(rngs.params(), (m * m, dim),
                                                               param_dtype)))

    def __call__(self, q: jax.Array, context: jax.Array, windows: Sequence[jax.Array],
                 masks: Sequence[jax.Array]):
        """q float[b, q, q_dim]; context float[b, C]; windows[i] float[b, q, m_i^2, C];
        masks[i] bool[b, q, m_i^2]. Returns (float[b, q, q_dim], weights float32[b, q, h, k])."""
        ctx = self.proj_context(context)[:, None, :]
        x = self.proj_in(jnp.concatenate([q, jnp.broadcast_to(ctx, q.shape[:2] + ctx.shape[2:])
                                          .astype(q.dtype)], axis=-1))
        kv = [w + getattr(self, f"pos_embed_{i}")[...].astype(w.dtype) if m > 1 else w
              for i, (w, m) in enumerate(zip(windows, self.multiples))]
        a, weights = self.cross_attn(x, kv, jnp.concatenate(masks, axis=-1))
        return self.proj_out(self.norm(x + a)) + q, weights


class Sampler(nnx.Module):
    """Cambrian's ``VisionTokenSampler``: ``depth`` stacked ``SamplerLayer`` s."""

    def __init__(self, q_dim: int, dim: int, multiples: Sequence[int], heads: int, depth: int, *,
                 rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        self.layers = nnx.List([SamplerLayer(q_dim, dim, multiples, heads, rngs=rngs, dtype=dtype,
                                             param_dtype=param_dtype) for _ in range(depth)])

    def __call__(self, q, context, windows, masks):
        weights = []
        for layer in self.layers:
            q, w = layer(q, context, windows, masks)
            weights.append(w)
        return q, weights


def in_llm_layer_indices(num: int, start: int = 0, stride: int = 1) -> tuple[int, ...]:
    """LLM decoder layers followed by an in-LLM SVA layer: start + s * stride for s < num."""
    return tuple(start + s * stride for s in range(num))


def to_windows(x: jax.Array, side: int) -> jax.Array:
    """float[B, m L, m L, ...] -> float[B, L^2, m^2, ...]; query (i, j) gets rows and columns
    m i .. m i + m - 1 and m j .. m j + m - 1, in raster order."""
    b, h = x.shape[:2]
    m = h // side
    rest = x.shape[3:]
    x = x.reshape((b, side, m, side, m) + rest)
    x = jnp.moveaxis(x, 2, 3)  # b, L, L, m, m, ...
    return x.reshape((b, side * side, m * m) + rest)


def _group_sides(query_tokens: Sequence[int], groups: int, side: int,
                 multiples: Sequence[int]) -> tuple[int, ...]:
    """Each group's query side (``query_tokens``: its s^2 queries; empty = L for every group);
    every encoder's (resized) m_k L grid must split into s x s windows."""
    if not query_tokens:
        return (side,) * groups
    if len(query_tokens) != groups:
        raise ValueError(f"sva: query_tokens={list(query_tokens)} has {len(query_tokens)} "
                         f"entries for groups={groups}; give one per group")
    sides = []
    for g, n in enumerate(query_tokens):
        s = side_of(n, f"sva: query_tokens[{g}]")
        bad = [k for k, m in enumerate(multiples) if (m * side) % s]
        if bad:
            raise ValueError(f"sva: query_tokens[{g}]={n}: the {s}x{s} query grid does not divide "
                             f"the grid of encoder(s) {bad} ({[multiples[k] * side for k in bad]} "
                             "cells a side); pick a side that divides them")
        sides.append(s)
    return tuple(sides)


def _multiple(grid: tuple[int, int], side: int, k: int, resize: bool) -> int:
    h, w = grid
    if h == w and h % side == 0:
        return h // side
    if not resize:
        raise ValueError(
            f"sva: encoder {k} grid {h}x{w} is not a square multiple of query_side={side}; set "
            f"resize_to_multiple=True to resize it to m*{side} (bilinear) or choose a query_side "
            "that divides it")
    return max(1, round(max(h, w) / side))


class SVA(nnx.Module):
    """The Spatial Vision Aggregator.

    Called as ``tokens, out = sva(feats, valid=None)``:
      feats: list of float[B, h_k, w_k, C_k], one per encoder.
      valid: None or list of bool[B, h_k, w_k] (False = cell over letter-box padding).
      tokens: float[B, L (L + 1), D]: L rows of L image tokens, each row ended by ``image_newline``.
      out: "token_valid" bool[B, L (L + 1)] (an image token is False when every encoder's window is
        all padding; a newline follows its row; ``vlm.Cambrian`` masks by the letter-box rule of
        the L x L grid instead, as Cambrian does), "attention_mass" float32[B, E] (share of
        attention weight each encoder received, averaged over heads, valid queries, all D x G
        layers), "windows" list of float[B, L^2, m_k^2, C_v] and "window_masks" list of
        bool[B, L^2, m_k^2] and "global_context" float[B, C_v] (what ``apply_in_llm`` reads).

    Options:
      query_side: L; L^2 image tokens (24 -> 576; 12 -> 144 and 6 -> 36 for token reduction).
      depth: D stacked aggregation layers before the LLM (released: 3).
      groups: G query groups aggregated in parallel, concatenated on channels (released: 1).
      query_tokens: per group, its number of queries s_g^2 (Cambrian's ``query_num_list``); a
        group of side s_g != L attends to windows of m_k L / s_g cells and its output is resized
        (bilinear, align_corners=False) to L x L before the concat. Empty = L^2 for every group.
      vision_hidden: C_v, the width of adapters and attention (1024).
      heads: attention heads (16, head dim 64).
      in_llm_layers: number of aggregation layers inside the LLM (0 = connector only).
      in_llm_start, in_llm_stride: in-LLM layer s runs after decoder layer start + s * stride.
      image_position: where in-LLM layers read and write the LLM's hidden states. -1: at the
        image's own token slots (what our training and evaluation use). N >= 0: Cambrian's rule,
        which the released models ran: the L x L grid cropped to its non-padding rows/columns, each
        kept row followed by its newline, read from index N of the sequence without padded tokens,
        wherever the image landed (equal to -1 when N is where the image is).
      global_context_encoder: index of the encoder whose mean adapted feature is the global context.
      resize_to_multiple: an encoder grid that is not a square multiple of L is first resized
        (bilinear, align_corners=False, like Cambrian's ``-interp`` towers) to m_k L x m_k L with
        m_k = max(1, round(max(h_k, w_k) / L)), its valid mask with ``cover_valid``; False makes
        such a grid an error. Resize in the encoder to control m_k exactly.
      llm_num_layers: if given, in-LLM layer indices are checked against it.
      dtype, param_dtype: compute and parameter dtypes.
    """

    def __init__(self, *, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
                 llm_dim: int, rngs: nnx.Rngs, query_side: int = 24, depth: int = 3,
                 groups: int = 1, query_tokens: Sequence[int] = (), vision_hidden: int = 1024,
                 heads: int = 16, in_llm_layers: int = 0, in_llm_start: int = 0,
                 in_llm_stride: int = 1, image_position: int = -1,
                 global_context_encoder: int = 0, resize_to_multiple: bool = True,
                 llm_num_layers: int | None = None, dtype=None, param_dtype=jnp.float32):
        n = len(encoder_channels)
        if n == 0 or len(encoder_grids) != n:
            raise ValueError(f"sva: encoder_channels ({n}) and encoder_grids "
                             f"({len(encoder_grids)}) must name the same, non-zero encoders")
        if not 0 <= global_context_encoder < n:
            raise ValueError(f"sva: global_context_encoder={global_context_encoder} is not one of "
                             f"the {n} encoders")
        if min(query_side, depth, groups, in_llm_stride) < 1 or min(in_llm_layers,
                                                                     in_llm_start) < 0:
            raise ValueError("sva: query_side, depth, groups, in_llm_stride must be >= 1 and "
                             "in_llm_layers, in_llm_start >= 0")
        if image_position < -1:
            raise ValueError(f"sva: image_position={image_position}; -1 (the image's own slots) "
                             "or an index >= 0")
        self.encoder_channels = tuple(encoder_channels)
        self.encoder_grids = tuple(tuple(g) for g in encoder_grids)
        self.side, self.groups, self.dim = query_side, groups, vision_hidden
        self.global_context_encoder = global_context_encoder
        self.image_position = image_position
        self.multiples = tuple(_multiple(g, query_side, k, resize_to_multiple)
                               for k, g in enumerate(self.encoder_grids))
        self.group_sides = _group_sides(query_tokens, groups, query_side, self.multiples)
        self.in_llm_layers = in_llm_layer_indices(in_llm_layers, in_llm_start, in_llm_stride)
        if llm_num_layers is not None and self.in_llm_layers and \
                self.in_llm_layers[-1] >= llm_num_layers:
            raise ValueError(f"sva: in-LLM layers {self.in_llm_layers} run past the LLM's "
                             f"{llm_num_layers} decoder layers; lower in_llm_layers or the stride")
        self.grid = (query_side, query_side)
        self.num_tokens = query_side * (query_side + 1)
        self.newline = True
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

        for k, c in enumerate(self.encoder_channels):
            setattr(self, f"mm_projector_aux_{k}", Mlp(c, vision_hidden, vision_hidden,
                                                       out_norm=True, **kw))
        for g, s in enumerate(self.group_sides):
            mult = tuple(m * query_side // s for m in self.multiples)
            setattr(self, f"vision_sampler_{g}", Sampler(vision_hidden, vision_hidden, mult,
                                                         heads, depth, **kw))
        self.vision_sampler_layers = nnx.List([
            Sampler(llm_dim, vision_hidden, self.multiples, heads, 1, **kw)
            for _ in range(in_llm_layers)])
        # Cambrian: N(0, 1) / sqrt(vision_hidden_size) for the queries, / sqrt(LLM width) for the
        # newline (cambrian_arch.py:70-76)
        self.vision_query = nnx.Param(partitioned(
            nnx.initializers.normal(1.0 / math.sqrt(vision_hidden)), (None, "embed"))(
            rngs.params(), (groups, vision_hidden), param_dtype))
        self.mm_projector = Mlp(vision_hidden * groups, llm_dim, llm_dim, **kw)
        self.image_newline = nnx.Param(partitioned(
            nnx.initializers.normal(1.0 / math.sqrt(llm_dim)), ("embed",))(
            rngs.params(), (llm_dim,), param_dtype))

    def _prepare(self, feats, valid):
        """Adapted maps as windows and key masks for every query side in use (the groups' and L
        for the in-LLM layers): ({side: [float[b, s^2, m^2, C_v]]}, {side: [bool[b, s^2, m^2]]},
        context float[b, C_v], {side: query validity bool[b, s^2]})."""
        check_feats(feats, self.encoder_channels, self.encoder_grids, "sva")
        valid = check_valid(valid, feats, "sva")
        sides = sorted(set(self.group_sides) | {self.side})
        windows = {s: [] for s in sides}
        masks = {s: [] for s in sides}
        qvalid, context = {}, None
        for k, (f, v, m) in enumerate(zip(feats, valid, self.multiples)):
            size = (m * self.side, m * self.side)
            f = resize_feats(f, size)
            v = cover_valid(v, size)
            a = getattr(self, f"mm_projector_aux_{k}")(f)
            if k == self.global_context_encoder:
                context = jnp.mean(a, axis=(1, 2))  # over padding too, as Cambrian
            for s in sides:
                wm = to_windows(v, s)
                any_valid = jnp.any(wm, axis=-1)
                qvalid[s] = any_valid | qvalid[s] if s in qvalid else any_valid
                windows[s].append(to_windows(a, s))
                masks[s].append(wm | ~any_valid[..., None])  # an all-padding window: everywhere
        return windows, masks, context, qvalid

    def __call__(self, feats: Sequence[jax.Array], valid: Sequence[jax.Array] | None = None, *,
                 return_attention: bool = False):
        windows, masks, context, qvalid = self._prepare(feats, valid)
        b = context.shape[0]
        outs, weights, mass = [], [], []
        for g, s in enumerate(self.group_sides):
            q = jnp.broadcast_to(self.vision_query[g].astype(windows[s][0].dtype),
                                 (b, s * s, self.dim))
            q, w = getattr(self, f"vision_sampler_{g}")(q, context, windows[s], masks[s])
            weights += w
            mass.append(self._attention_mass(w, qvalid[s], s))
            if s != self.side:
                q = resize_feats(q.reshape(b, s, s, -1), (self.side, self.side)).reshape(
                    b, self.side * self.side, -1)
            outs.append(q)
        x = self.mm_projector(jnp.concatenate(outs, axis=-1))
        x = x.reshape(b, self.side, self.side, -1)
        tokens = append_newline(x, self.image_newline[...])
        qgrid = qvalid[self.side].reshape(b, self.side, self.side)
        out = {
            "token_valid": grid_token_valid(qgrid, newline=True),
            "attention_mass": jnp.mean(jnp.stack(mass), axis=0),
            "windows": windows[self.side],
            "window_masks": masks[self.side],
            "global_context": context,
        }
        if return_attention:
            out["attention"] = weights
        return tokens, out

    def _attention_mass(self, weights: list[jax.Array], qvalid: jax.Array, side: int
                        ) -> jax.Array:
        """float32[B, E]: the mean over ``weights`` (one group's layers, queries on a side x side
        grid) of each encoder's share, averaged over heads and valid queries."""
        sizes = [(m * self.side // side) ** 2 for m in self.multiples]
        bounds = np.cumsum([0] + sizes)
        per_layer = []
        for w in weights:  # float32[b, q, h, k]
            w = w.mean(axis=2)
            per_layer.append(jnp.stack([w[..., bounds[i]:bounds[i + 1]].sum(-1)
                                        for i in range(len(sizes))], axis=-1))
        mass = jnp.mean(jnp.stack(per_layer), axis=0)  # b, q, E
        # Average over valid queries; a fully padded image falls back to all queries.
        qw = qvalid.astype(jnp.float32)
        qw = jnp.where(qw.sum(1, keepdims=True) > 0, qw, 1.0)
        return jnp.einsum("bqe,bq->be", mass, qw) / qw.sum(1)[:, None]

    def apply_in_llm(self, k: int, hidden: jax.Array, out: Mapping) -> jax.Array:
        """Runs in-LLM layer ``k`` on the image slice of the LLM hidden states.

        hidden: float[B, L (L + 1), D] (image tokens with their row newlines, as emitted).
        Returns the same shape: image tokens updated (queries = hidden states, same global context,
        windows and key masks as ``out``), newline slots unchanged.
        """
        b, n, d = hidden.shape
        if n != self.num_tokens:
            raise ValueError(f"sva.apply_in_llm: hidden has {n} positions, expected "
                             f"{self.num_tokens} = {self.side} x ({self.side} + 1)")
        grid = hidden.reshape(b, self.side, self.side + 1, d)
        q = grid[:, :, : self.side].reshape(b, self.side * self.side, d)
        q, _ = self.vision_sampler_layers[k](q, out["global_context"], out["windows"],
                                             out["window_masks"])
        q = q.reshape(b, self.side, self.side, d).astype(hidden.dtype)
        return grid.at[:, :, : self.side].set(q).reshape(b, n, d)


def create(*, encoder_channels: Sequence[int], encoder_grids: Sequence[tuple[int, int]],
           llm_dim: int, rngs: nnx.Rngs, **options) -> SVA:
    """A randomly initialised SVA; ``options`` are documented on ``SVA``."""
    return SVA(encoder_channels=encoder_channels, encoder_grids=encoder_grids, llm_dim=llm_dim,
               rngs=rngs, **options)


# ----------------------------------------------------------------------------------------------
# Converter from Cambrian's PyTorch parameter names (``mm_projector.bin`` or the full checkpoint).


def _mlp(reader, name: str, mlp: Mlp, sequential: bool) -> None:
    # nn.Sequential(Linear, GELU, Linear[, LayerNorm]) names 0/2/3; Cambrian's MLP linear_1/2.
    first, second = ("0", "2") if sequential else ("linear_1", "linear_2")
    load_linear(reader, f"{name}.{first}", mlp.linear_1)
    load_linear(reader, f"{name}.{second}", mlp.linear_2)
    if mlp.norm is not None:
        load_layer_norm(reader, f"{name}.3", mlp.norm)


def _sampler(reader, name: str, sampler: Sampler) -> None:
    for d, layer in enumerate(sampler.layers):
        p = f"{name}.layers.{d}"
        load_linear(reader, f"{p}.proj_context", layer.proj_context)
        load_linear(reader, f"{p}.proj_in", layer.proj_in)
        _mlp(reader, f"{p}.proj_out", layer.proj_out, sequential=False)
        load_layer_norm(reader, f"{p}.norm", layer.norm)
        ca = layer.cross_attn
        load_layer_norm(reader, f"{p}.cross_attn.q_proj.0", ca.q_norm)
        load_linear(reader, f"{p}.cross_attn.q_proj.1", ca.q_proj)
        for i in range(ca.num_kv):
            for kv in ("k", "v"):
                seq = f"{p}.cross_attn.{kv}_proj_{i}"  # nn.Sequential(LayerNorm, Linear)
                load_layer_norm(reader, f"{seq}.0", getattr(ca, f"{kv}_norm_{i}"))
                load_linear(reader, f"{seq}.1", getattr(ca, f"{kv}_proj_{i}"))
        load_linear(reader, f"{p}.cross_attn.o_proj", ca.o_proj)
        for i, m in enumerate(layer.multiples):
            if m > 1:
                pe = getattr(layer, f"pos_embed_{i}")
                set_param(pe, take(reader, f"{p}.pos_embed_{i}", pe.shape))


def load(checkpoint: str | Mapping[str, np.ndarray], *, encoder_channels: Sequence[int],
         encoder_grids: Sequence[tuple[int, int]], llm_dim: int, prefix: str = "model.",
         **options) -> SVA:
    """An SVA filled from a checkpoint in Cambrian's PyTorch naming.

    ``checkpoint``: a path (``mm_projector.bin`` from stage 1, or a full Cambrian model directory of
    safetensors shards) or an open name -> array mapping. ``prefix`` is prepended to every name
    (Cambrian saves ``model.mm_projector...``). ``options`` must describe the saved connector
    (``PRESETS`` for the released models); any tensor missing or of the wrong shape is an error
    naming it.
    """
    reader = open_checkpoint(checkpoint) if isinstance(checkpoint, str) else checkpoint
    # Built abstractly: every parameter is then read from the checkpoint, none is initialised.
    sva = nnx.eval_shape(lambda: SVA(encoder_channels=encoder_channels,
                                     encoder_grids=encoder_grids, llm_dim=llm_dim,
                                     rngs=nnx.Rngs(0), **options))
    for k in range(len(sva.encoder_channels)):
        _mlp(reader, f"{prefix}mm_projector_aux_{k}", getattr(sva, f"mm_projector_aux_{k}"),
             sequential=True)
    for g in range(sva.groups):
        _sampler(reader, f"{prefix}vision_sampler_{g}", getattr(sva, f"vision_sampler_{g}"))
    for s, sampler in enumerate(sva.vision_sampler_layers):
        _sampler(reader, f"{prefix}vision_sampler_layers.{s}", sampler)
    _mlp(reader, f"{prefix}mm_projector", sva.mm_projector, sequential=True)
    set_param(sva.vision_query, take(reader, f"{prefix}vision_query", sva.vision_query.shape))
    set_param(sva.image_newline, take(reader, f"{prefix}image_newline", sva.image_newline.shape))
    check_all_read(sva, "sva.load")
    return sva
