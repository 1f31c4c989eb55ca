"""Next-token cross-entropy of a batch: from whole logits, or fused with the output projection.

Both count the same positions: a position is in the loss iff the next token is an assistant
token (``loss_mask``), attended (its segment id, after the model's masking, is not 0), a real
target (>= 0) and of the same packed sample.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax


def _targets(batch: dict, seg: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Next tokens int32[B, T-1] (clipped to >= 0) and bool[B, T-1]: which are in the loss."""
    targets = batch["tokens"][:, 1:]
    # packed rows: a token never predicts the first token of the next sample
    same = batch["segment_ids"][:, 1:] == batch["segment_ids"][:, :-1]
    mask = batch["loss_mask"][:, 1:] & (seg[:, 1:] != 0) & (targets >= 0) & same
    return jnp.maximum(targets, 0), mask


def loss_fn(logits: jax.Array, batch: dict, seg: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean next-token cross-entropy over assistant tokens; returns (loss, token count).

    logits float[B, T, V]; seg int32[B, T]: the segment ids the model attended with.
    """
    targets, mask = _targets(batch, seg)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1].astype(jnp.float32),
                                                         targets)
    n = mask.sum()
    return jnp.sum(ce * mask) / jnp.maximum(n, 1), n


def chunked_loss_fn(logits_of, hidden: jax.Array, weight: jax.Array, batch: dict,
                    seg: jax.Array, chunk: int, *, weight_grad: bool = True,
                    weight_sharding=None) -> tuple[jax.Array, jax.Array]:
    """``loss_fn`` without the float32[B, T, V] logits: ``logits_of(hidden piece, weight)``
    runs on ``chunk`` positions at a time in a scan that also takes each piece's gradients
    (softmax minus one-hot, pulled back through the projection) while its logits are at hand,
    so the backward pass only scales them: no [B, T, V] array is kept or recomputed.

    hidden float[B, T, D] (the final normed hidden state); weight: the output projection.
    ``weight_grad``: whether the weight is trained; if so its gradient accumulates over pieces
    in float32, laid out as ``weight_sharding`` (the weight's own sharding, under a mesh; None:
    left to the compiler). If not, none is computed (its gradient reads as zeros).
    """
    targets, mask = _targets(batch, seg)
    b, t = hidden.shape[:2]
    pieces = -(-t // chunk)
    pad = pieces * chunk - t
    # position i predicts target i; the last position (and any padding) predicts nothing
    targets = jnp.pad(targets, ((0, 0), (0, pad + 1)))
    in_loss = jnp.pad(mask, ((0, 0), (0, pad + 1)))
    n = mask.sum()
    total = _fused_ce(logits_of, jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))), weight,
                      targets, in_loss, chunk, (weight_grad, weight_sharding))
    return total / jnp.maximum(n, 1), n


def _ce_pieces(logits_of, hidden, weight, targets, in_loss, chunk, dw_spec):
    """(summed CE, d sum / d hidden, d sum / d weight in float32 or None), one piece at a
    time; ``dw_spec`` = (weight_grad, weight_sharding) as in ``chunked_loss_fn``."""
    weight_grad, weight_sharding = dw_spec
    b, t = hidden.shape[:2]
    pieces = t // chunk

    def split(x):  # [B, pieces * chunk, ...] -> [pieces, B, chunk, ...]
        return x.reshape(b, pieces, chunk, *x.shape[2:]).swapaxes(0, 1)

    def piece(carry, xs):
        total, dw = carry
        h, tgt, m = xs
        logits, pull = jax.vjp(logits_of, h, weight)  # an unused dw_piece is dead code
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, tgt[..., None], axis=-1)[..., 0]
        total = total + jnp.sum(jnp.where(m, lse - picked, 0.0))
        dlogits = jnp.exp(logits - lse[..., None])
        dlogits = dlogits - jax.nn.one_hot(tgt, logits.shape[-1], dtype=dlogits.dtype)
        dh, dw_piece = pull(jnp.where(m[..., None], dlogits, 0.0))
        if weight_grad:
            dw = place(dw + dw_piece.astype(jnp.float32))
        return (total, dw), dh

    def place(dw):
        if weight_sharding is None:
            return dw
        return jax.lax.with_sharding_constraint(dw, weight_sharding)

    dw0 = place(jnp.zeros(weight.shape, jnp.float32)) if weight_grad else jnp.zeros(())
    zero = (jnp.zeros((), jnp.float32), dw0)
    (total, dw), dh = jax.lax.scan(piece, zero, (split(hidden), split(targets),
                                                  split(in_loss)))
    return total, dh.swapaxes(0, 1).reshape(hidden.shape), dw if weight_grad else None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5, 6))
def _fused_ce(logits_of, hidden, weight, targets, in_loss, chunk, dw_spec):
    """Summed CE over ``in_loss`` positions, differentiable in hidden and weight."""
    return _ce_pieces(logits_of, hidden, weight, targets, in_loss, chunk, dw_spec)[0]


def _fused_ce_fwd(logits_of, hidden, weight, targets, in_loss, chunk, dw_spec):
    total, dh, dw = _ce_pieces(logits_of, hidden, weight, targets, in_loss, chunk, dw_spec)
    return total, (dh, dw, jnp.zeros((), weight.dtype))  # (the last: weight's dtype)


def _fused_ce_bwd(logits_of, chunk, dw_spec, res, g):
    dh, dw, w_like = res
    dw = None if dw is None else (g * dw).astype(w_like.dtype)  # None: an untrained weight
    return (g * dh).astype(dh.dtype), dw, None, None


_fused_ce.defvjp(_fused_ce_fwd, _fused_ce_bwd)
