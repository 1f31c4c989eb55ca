"""Batched generation with a KV cache: one jit-compiled prefill + decode loop per shape bucket.

Inputs are left-padded (segment id 0 = padding). Batch size and prompt length are padded up to
buckets so a benchmark suite compiles a handful of programs, not one per sample.

Batch invariance. Inside the compiled program every row is moved so that its first real token
sits in cache slot 0 (left padding becomes right padding), and each row appends at its own
length. A row's keys then occupy the same cache slots whatever the batch, its neighbours or its
padding, so the attention reductions over keys add up the same numbers in the same order; the
masked slots contribute exact zeros. Together with the model's batch-invariant mode (every
computation in fixed-shape blocks, ``decode.forward(batch_invariant=True)``) this makes greedy
fp32 outputs bitwise identical for a sample whether it is decoded alone or in a batch of 32.

bf16 (``LlamaConfig(dtype="bfloat16")``). The mechanism does not depend on the dtype: on CPU a
row's bf16 logits, hence its greedy tokens, are also bitwise independent of its batch (tested).
What does not hold in bf16 is agreement with other computations: bf16 tokens can differ from
fp32 tokens, from transformers' bf16 ``generate`` (different kernels, different rounding) and
from ``batch_invariant=False`` runs, whose logits move by about one bf16 ulp (~1e-2) with the
batch shape, enough to flip near-tied greedy choices far more often than in fp32. Sampling
(``temperature > 0``) draws its noise for the whole batch at once and is reproducible for a
fixed batch and key, not across batch compositions.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.llm import decode
from cambrian.models.llm.blocks import KEY_BLOCK
from cambrian.models.llm.llama import Array, LayerHook, Llama

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n (n itself when it exceeds every bucket)."""
    for b in buckets:
        if b >= n:
            return b
    return n


def stop_table(stop_sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """int32[n, L] stop sequences right-aligned; -1 on the left matches anything."""
    seqs = [[int(t) for t in s] for s in stop_sequences]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("generate: stop_sequences must not contain an empty sequence")
    width = max(map(len, seqs), default=1)
    table = np.full((len(seqs), width), -1, np.int32)
    for r, seq in enumerate(seqs):
        table[r, width - len(seq):] = seq
    return table


def eos_array(eos_id: int | Sequence[int] | None) -> np.ndarray:
    """int32[n] end-of-sequence ids (none for None), as ``decode_embeds`` takes them."""
    if eos_id is None:
        return np.zeros((0,), np.int32)
    return np.atleast_1d(np.asarray(eos_id, np.int32))


def _compact(x: Array, shift: Array) -> Array:
    """Rolls each row of x [B, T, ...] left by shift[b] (left padding -> right padding)."""
    t = x.shape[1]
    idx = (jnp.arange(t)[None] + shift[:, None]) % t
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def decode_embeds(graphdef, state, embeds, segment_ids, positions, rng, eos, stops, temperature,
                  pad_id, *, max_new_tokens, layer_hook, cache_len, invariant):
    """The decoding loop over prompt embeddings, traceable inside a caller's ``jit`` (VLMs build
    the embeddings themselves: text + visual tokens).

    embeds float[B, T, D], segment_ids / positions int32[B, T], left-padded (segment 0 = padding);
    ``layer_hook(i, h)`` sees the prefill hidden states after layer i in that layout. Returns
    (tokens int32[B, max_new_tokens], number generated int32[B]).
    """
    model = nnx.merge(graphdef, state)
    cache_len = -(-cache_len // KEY_BLOCK) * KEY_BLOCK  # whole key blocks: no padded copies
    b, t = segment_ids.shape
    valid = segment_ids != 0
    lead = jnp.where(valid.any(1), jnp.argmax(valid, axis=1), 0).astype(jnp.int32)
    length = (t - lead).astype(jnp.int32)
    e, seg, pos = (_compact(a, lead) for a in (embeds, segment_ids, positions))

    hook = None
    if layer_hook is not None:
        # The hook sees the caller's left-padded layout.
        def hook(i, h):
            return _compact(layer_hook(i, _compact(h, (t - lead) % t)), lead)

    cache = decode.init_cache(model, b, cache_len)
    hidden, cache = decode.forward(model, e, cache, positions=pos, segment_ids=seg,
                                   layer_hook=hook, batch_invariant=invariant)
    last = jnp.clip(length - 1, 0, t - 1)
    rows = jnp.arange(b)
    h_last = hidden[rows, last]
    cache = cache._replace(lengths=length)
    row_seg = jnp.maximum(seg[rows, last], 1)
    next_pos = pos[rows, last] + 1

    def pick(logits, i):
        def sample(lg):
            key = jax.random.fold_in(rng, i)
            return jax.random.categorical(key, lg / temperature, axis=-1).astype(jnp.int32)

        def greedy(lg):
            return jnp.argmax(lg, axis=-1).astype(jnp.int32)

        # A traced temperature keeps greedy and sampled decoding in one compiled program; the
        # cond runs only the branch taken.
        return jax.lax.cond(temperature > 0, sample, greedy, logits)

    lmax = stops.shape[1]
    hist = jnp.full((b, lmax + max_new_tokens), -1, jnp.int32)

    def record(hist, tok, i):
        hist = jax.lax.dynamic_update_slice_in_dim(hist, tok[:, None], lmax + i, axis=1)
        stop = (tok[:, None] == eos[None]).any(1)
        win = jax.lax.dynamic_slice_in_dim(hist, i + 1, lmax, axis=1)  # last lmax tokens
        match = (win[:, None] == stops[None]) | (stops[None] < 0)  # [B, n_stops, L]
        return hist, stop | match.all(2).any(1)

    tok = pick(decode.project(model, h_last, invariant), 0)
    tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(tok)
    hist, done = record(hist, tok, 0)
    n = jnp.ones((b,), jnp.int32)

    def cond(c):
        i, _, _, _, _, done, _, _ = c
        return (i < max_new_tokens) & ~done.all()

    def body(c):
        i, tok, tokens, hist, cache, done, n, p = c
        h, cache = decode.forward(model, model.embed(tok[:, None]), cache, positions=p[:, None],
                                  segment_ids=row_seg[:, None], batch_invariant=invariant)
        tok = pick(decode.project(model, h[:, 0], invariant), i)
        tokens = jax.lax.dynamic_update_slice_in_dim(
            tokens, jnp.where(done, pad_id, tok)[:, None], i, axis=1)
        hist, stop = record(hist, tok, i)
        n = n + (~done).astype(jnp.int32)
        return i + 1, tok, tokens, hist, cache, done | stop, n, p + 1

    init = (jnp.int32(1), tok, tokens, hist, cache, done, n, next_pos)
    _, _, tokens, _, _, _, n, _ = jax.lax.while_loop(cond, body, init)
    return tokens, n


_decode_jit = jax.jit(decode_embeds, static_argnums=(0,), static_argnames=(
    "max_new_tokens", "layer_hook", "cache_len", "invariant"))


def generate_from_embeds(model: Llama, embeds: Array, segment_ids: Array,
                         positions: Array | None = None, *, max_new_tokens: int,
                         eos_id: int | Sequence[int] | None, stop_sequences=(),
                         temperature: float = 0.0, rng: Array | None = None,
                         layer_hook: LayerHook | None = None, pad_id: int = 0,
                         batch_invariant: bool = True,
                         batch_buckets: Sequence[int] = BATCH_BUCKETS,
                         length_buckets: Sequence[int] = LENGTH_BUCKETS) -> tuple[Array, Array]:
    """Decodes up to ``max_new_tokens`` after left-padded prompt embeddings.

    embeds float[B, T, D]; segment_ids int32[B, T] (0 = left padding, else the row's segment);
    positions int32[B, T] (default: 0, 1, ... over each row's non-padding tokens). Decoding is
    greedy when ``temperature == 0``, else sampled with ``rng``. A row stops after emitting an
    ``eos_id`` or completing one of ``stop_sequences`` (token-id sequences); the stop tokens are
    included in the output. ``layer_hook`` is applied during prefill only and sees hidden
    states in exactly the caller's [B, T] layout, so inputs are not re-bucketed when it is set
    (pad them to ``bucket`` sizes first to avoid recompiles); decode steps do not call it.
    Returns ``(tokens int32[B, max_new_tokens], lengths int32[B])``; positions past a row's
    length hold ``pad_id``. ``batch_invariant`` (default) makes a row's tokens independent of
    its batch and padding (see module doc); False runs plain whole-batch kernels, faster but
    equal only up to rounding.
    """
    embeds = jnp.asarray(embeds)
    seg = np.asarray(segment_ids, np.int32)
    b, t = seg.shape
    if embeds.shape[:2] != (b, t):
        raise ValueError(f"generate_from_embeds: embeds {embeds.shape} and segment_ids "
                         f"{seg.shape} disagree on [B, T]")
    if positions is None:
        positions = np.maximum(np.cumsum(seg != 0, axis=1) - 1, 0)
    pos = np.asarray(positions, np.int32)
    if max_new_tokens < 1:
        raise ValueError(f"generate_from_embeds: max_new_tokens={max_new_tokens}; need >= 1")
    if temperature > 0 and rng is None:
        raise ValueError("generate_from_embeds: temperature > 0 needs rng (a jax PRNG key)")
    rng = rng if rng is not None else jax.random.key(0)
    if layer_hook is None:
        bb, tb = bucket(b, batch_buckets), bucket(t, length_buckets)
    else:  # the hook sees exactly the caller's [B, T] layout
        bb, tb = b, t
    # Left-pad the prompt to the length bucket and add all-padding rows up to the batch bucket.
    embeds = jnp.pad(embeds, ((0, bb - b), (tb - t, 0), (0, 0)))
    seg = np.pad(seg, ((0, bb - b), (tb - t, 0)))
    pos = np.pad(pos, ((0, bb - b), (tb - t, 0)))
    graphdef, state = nnx.split(model)
    cache_len = tb + int(max_new_tokens)
    tokens, n = _decode_jit(
        graphdef, state, embeds, jnp.asarray(seg), jnp.asarray(pos), rng,
        jnp.asarray(eos_array(eos_id)), jnp.asarray(stop_table(stop_sequences)),
        jnp.float32(temperature), jnp.int32(pad_id), max_new_tokens=int(max_new_tokens),
        layer_hook=layer_hook, cache_len=cache_len, invariant=bool(batch_invariant))
    return tokens[:b], n[:b]


def generate(model: Llama, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             eos_id: int | Sequence[int] | None = None, stop_sequences=(),
             temperature: float = 0.0, rng: Array | None = None, max_batch: int = 64,
             **kwargs) -> list[list[int]]:
    """Token prompts -> generated token ids per prompt (stop tokens included).

    Prompts are left-padded and decoded in batches of at most ``max_batch``; keywords as in
    ``generate_from_embeds``.
    """
    if eos_id is None:
        eos_id = model.config.eos_token_id
    results: list[list[int]] = []
    for lo in range(0, len(prompts), max_batch):
        chunk = [list(p) for p in prompts[lo:lo + max_batch]]
        if any(len(p) == 0 for p in chunk):
            raise ValueError("generate: empty prompt; every prompt needs at least one token")
        t = max(len(p) for p in chunk)
        toks = np.zeros((len(chunk), t), np.int32)
        seg = np.zeros((len(chunk), t), np.int32)
        for r, p in enumerate(chunk):
            toks[r, t - len(p):] = p
            seg[r, t - len(p):] = 1
        key = None if rng is None else jax.random.fold_in(rng, lo)
        out, n = generate_from_embeds(
            model, _embed(model, jnp.asarray(toks)), seg, max_new_tokens=max_new_tokens,
            eos_id=eos_id, stop_sequences=stop_sequences, temperature=temperature, rng=key,
            **kwargs)
        out, n = np.asarray(out), np.asarray(n)
        results.extend(out[r, :n[r]].tolist() for r in range(len(chunk)))
    return results


@nnx.jit
def _embed(model: Llama, tokens: Array) -> Array:
    return model.embed(tokens)
