"""Generation with the KV cache against full re-computation, masking, stopping and batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import llm
from cambrian.models.llm import decode

CFG = llm.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=16)
# One batch and length bucket for the tests below, so they share compiled programs.
N = 12
BUCKETS = dict(batch_buckets=(4,), length_buckets=(16,))


@pytest.fixture(scope="module")
def model():
    m = llm.Llama(CFG, rngs=nnx.Rngs(0))
    # Larger weights than the N(0, 0.02) init give peaked logits, so greedy choices are decisive
    # and a wrong mask or position changes the tokens.
    state = nnx.state(m, nnx.Param)
    nnx.update(m, jax.tree.map(lambda x: x * 6.0 if x.ndim > 1 else x, state))
    return m


def prompts(n, seed=0, lo=1, hi=16):
    rng = np.random.default_rng(seed)
    return [rng.integers(1, CFG.vocab_size, rng.integers(lo, hi)).tolist() for _ in range(n)]


@nnx.jit(static_argnums=2)
def _full_forward(model, tokens, hook):
    return model(tokens, layer_hook=hook)


@nnx.jit
def forward(model, tokens, positions=None, segment_ids=None):
    return model(tokens, positions=positions, segment_ids=segment_ids)


def greedy_without_cache(model, prompt, n, hook=None):
    """Reference: re-runs the full forward over the growing sequence at every step.

    The sequence sits at the start of a fixed 64-token buffer (one compilation); causal
    attention keeps the trailing filler from influencing the positions read.
    """
    seq = list(prompt)
    for _ in range(n):
        buf = np.zeros((1, 64), np.int32)
        buf[0, :len(seq)] = seq
        logits = _full_forward(model, jnp.asarray(buf), hook)
        seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
    return seq[len(prompt):]


def test_greedy_with_cache_equals_full_recompute(model):
    ps = prompts(4)
    out = llm.generate(model, ps, max_new_tokens=N, **BUCKETS)
    for p, o in zip(ps, out):
        assert o == greedy_without_cache(model, p, N)


def test_generate_from_embeds_matches_tokens(model):
    ps = prompts(3, seed=1)
    t = max(map(len, ps))
    toks = np.zeros((3, t), np.int32)
    seg = np.zeros((3, t), np.int32)
    for r, p in enumerate(ps):
        toks[r, t - len(p):], seg[r, t - len(p):] = p, 1
    out, n = llm.generate_from_embeds(model, model.embed(jnp.asarray(toks)), seg,
                                      max_new_tokens=N, eos_id=None, **BUCKETS)
    assert out.shape == (3, N) and out.dtype == jnp.int32
    assert np.asarray(n).tolist() == [N] * 3
    assert np.asarray(out).tolist() == llm.generate(model, ps, max_new_tokens=N, **BUCKETS)


def test_packed_segments_equal_separate_sequences(model):
    a, b = prompts(2, seed=2, lo=5, hi=9)
    packed = jnp.asarray([a + b], jnp.int32)
    seg = jnp.asarray([[1] * len(a) + [2] * len(b)], jnp.int32)
    pos = jnp.asarray([list(range(len(a))) + list(range(len(b)))], jnp.int32)
    got = np.asarray(forward(model, packed, pos, seg))[0]
    want_a = np.asarray(forward(model, jnp.asarray([a], jnp.int32)))[0]
    want_b = np.asarray(forward(model, jnp.asarray([b], jnp.int32)))[0]
    np.testing.assert_allclose(got[:len(a)], want_a, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got[len(a):], want_b, atol=1e-5, rtol=0)


def test_padding_rows_are_finite(model):
    seg = jnp.asarray([[0, 0, 0, 0], [0, 0, 1, 1]], jnp.int32)
    logits = forward(model, jnp.ones((2, 4), jnp.int32), segment_ids=seg)
    assert np.isfinite(np.asarray(logits)).all()


def test_left_padding_matches_unpadded(model):
    p = prompts(1, seed=3, lo=6, hi=7)[0]
    seg = jnp.asarray([[0] * 5 + [1] * len(p)], jnp.int32)
    pos = jnp.asarray([[0] * 5 + list(range(len(p)))], jnp.int32)
    padded = forward(model, jnp.asarray([[0] * 5 + p], jnp.int32), pos, seg)
    np.testing.assert_allclose(np.asarray(padded)[0, 5:],
                               np.asarray(forward(model, jnp.asarray([p], jnp.int32)))[0],
                               atol=1e-5, rtol=0)


def test_layer_hook_sees_caller_layout(model):
    """A hook editing prompt positions (as the VLM does for image tokens) acts on the same
    tokens in batched, left-padded generation as in the unpadded full forward."""
    ps = [prompts(1, seed=4, lo=10, hi=11)[0], prompts(1, seed=5, lo=7, hi=8)[0]]
    t = max(map(len, ps))
    lead = [t - len(p) for p in ps]
    # Hook for the left-padded batch: negate and scale prompt tokens 2..4 after layer 0.
    sel = np.zeros((2, t, 1), np.float32)
    for r in range(2):
        sel[r, lead[r] + 2:lead[r] + 5] = 1.0
    sel_j = jnp.asarray(sel)

    def hook(i, h):
        return h * (1 - 4 * sel_j) if i == 0 else h

    toks = np.zeros((2, t), np.int32)
    seg = np.zeros((2, t), np.int32)
    for r, p in enumerate(ps):
        toks[r, lead[r]:], seg[r, lead[r]:] = p, 1
    out, _ = llm.generate_from_embeds(model, model.embed(jnp.asarray(toks)), seg,
                                      max_new_tokens=6, eos_id=None, layer_hook=hook)

    def ref_hook(i, h):
        m = jnp.zeros((1, h.shape[1], 1)).at[:, 2:5].set(1.0)
        return h * (1 - 4 * m) if i == 0 else h

    for r, p in enumerate(ps):
        assert np.asarray(out)[r].tolist() == greedy_without_cache(model, p, 6, hook=ref_hook)
    assert any(np.asarray(out)[r].tolist() != greedy_without_cache(model, p, 6)
               for r, p in enumerate(ps)), "the hook should change the generated tokens"


def test_eos_and_stop_sequences(model):
    p = prompts(1, seed=6, lo=8, hi=9)[0]
    never = 10**6
    # Same eos / stop table shapes in every call: one compiled program.
    kw = dict(max_new_tokens=N, **BUCKETS)
    free = llm.generate(model, [p], eos_id=[never] * 2, stop_sequences=[[never] * 2] * 2, **kw)[0]
    assert len(free) == N
    k = next(i for i in range(3, N) if free[i] not in free[:i])
    embeds = model.embed(jnp.asarray([p], jnp.int32))
    out, n = llm.generate_from_embeds(model, embeds, np.ones((1, len(p)), np.int32),
                                      eos_id=[free[k], never], stop_sequences=[[never] * 2] * 2,
                                      pad_id=-1, **kw)
    assert int(n[0]) == k + 1
    assert np.asarray(out)[0].tolist() == free[:k + 1] + [-1] * (N - 1 - k)
    stop = free[k - 1:k + 1]
    got = llm.generate(model, [p], eos_id=[never] * 2, stop_sequences=[stop, [never] * 2],
                       **kw)[0]
    first = next(i for i in range(1, N) if free[i - 1:i + 1] == stop)
    assert got == free[:first + 1]


def test_sampling(model):
    ps = prompts(4, seed=7)
    key = jax.random.key(1)
    kw = dict(max_new_tokens=N, **BUCKETS)
    a = llm.generate(model, ps, temperature=1.0, rng=key, **kw)
    b = llm.generate(model, ps, temperature=1.0, rng=key, **kw)
    c = llm.generate(model, ps, temperature=1.0, rng=jax.random.key(2), **kw)
    assert a == b and a != c
    assert all(0 <= t < CFG.vocab_size for row in a for t in row)
    # A vanishing temperature is greedy decoding.
    assert llm.generate(model, ps, temperature=1e-6, rng=key, **kw) == llm.generate(
        model, ps, **kw)


def test_batch_invariance_fp32(model):
    """Greedy tokens of a sample do not depend on its batch (1, 8 or 32), its position in the
    batch or its left padding (the bitwise test below shows why this is not luck)."""
    ps = prompts(32, seed=8)
    kw = dict(max_new_tokens=N, eos_id=None, length_buckets=(16,))
    bs32 = llm.generate(model, ps, **kw)
    bs8 = []
    for lo in range(0, 32, 8):
        bs8 += llm.generate(model, ps[lo:lo + 8][::-1], **kw)[::-1]
    assert bs8 == bs32
    for i in (0, 5, 17):
        assert llm.generate(model, [ps[i]], **kw)[0] == bs32[i]


def _prefill_and_step(model, ps, t, invariant):
    """Last-prompt-token logits and one cached decode step, rows right-padded to length t."""
    b = len(ps)
    toks, seg = np.zeros((b, t), np.int32), np.zeros((b, t), np.int32)
    for r, p in enumerate(ps):
        toks[r, :len(p)], seg[r, :len(p)] = p, 1

    @nnx.jit(static_argnums=3)
    def run(model, toks, seg, invariant):
        cache = llm.init_cache(model, b, t + 8)
        hidden, cache = decode.forward(model, model.embed(toks), cache, segment_ids=seg,
                                       batch_invariant=invariant)
        logits = decode.project(model, hidden, invariant)
        n = seg.sum(1)
        cache = cache._replace(lengths=n)
        nxt = jnp.full((b, 1), 7, jnp.int32)
        step, _ = decode.forward(model, model.embed(nxt), cache, positions=n[:, None],
                                 segment_ids=jnp.ones_like(nxt), batch_invariant=invariant)
        return logits[jnp.arange(b), n - 1], decode.project(model, step, invariant)[:, 0]

    return [np.asarray(x) for x in run(model, jnp.asarray(toks), jnp.asarray(seg), invariant)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batch_invariant_forward_is_bitwise_equal(dtype):
    """The model's batch-invariant mode gives bitwise equal logits for a row alone and inside
    batches of 8 and 32 with longer query and cache lengths (plain kernels differ by ulps)."""
    cfg = llm.LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=512, num_layers=1,
                          num_heads=4, num_kv_heads=2, dtype=dtype)
    model = llm.Llama(cfg, rngs=nnx.Rngs(4))
    rng = np.random.default_rng(9)
    ps = [rng.integers(1, 1024, rng.integers(3, 60)).tolist() for _ in range(32)]
    ps[0] = ps[0][:10]
    short = _prefill_and_step(model, ps[:1], 16, True)  # a single key block
    all32 = _prefill_and_step(model, ps, 128, True)
    for a, c in zip(short, all32):
        np.testing.assert_array_equal(a[0], c[0])
    if dtype == "float32":
        eight = _prefill_and_step(model, ps[:8], 64, True)
        for b, c in zip(eight, all32):
            np.testing.assert_array_equal(b, c[:8])


def test_weights_carry_logical_axis_names(model):
    specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
    flat = dict(nnx.to_flat_state(specs))
    names = {tuple(str(k) for k in path): tuple(v.get_value()) for path, v in flat.items()}
    assert names[("embedding",)] == ("vocab", "embed")
    assert names[("layers", "0", "attn", "k")] == ("embed", "kv_heads", "head_dim")
    assert names[("layers", "1", "mlp", "down")] == ("mlp", "embed")
    allowed = {"embed", "mlp", "heads", "kv_heads", "head_dim", "vocab"}
    for path, spec in names.items():
        assert spec and set(spec) <= allowed, path


def test_forward_under_a_one_device_mesh_with_rules(model):
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    tokens = jnp.asarray(prompts(1, seed=10, lo=8, hi=9), jnp.int32)
    want = np.asarray(forward(model, tokens))
    with jax.set_mesh(mesh), nnx.logical_axis_rules([("batch", "data"), ("embed", None)]):
        got = np.asarray(nnx.jit(lambda m, t: m(t))(model, tokens))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
