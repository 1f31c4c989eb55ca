import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.data import conversation, tokenizer
from cambrian.models import vlm
from cambrian.train import build_model


def test_compact_positions_hand_derived():
    seg = jnp.array([[0, 0, 1, 1, 1, 1, 1],    # left padding
                     [1, 1, 2, 2, 2, 0, 0]])   # two packed segments, right padding
    attended = jnp.array([[0, 0, 1, 1, 0, 1, 1],  # one visual token over letter-box padding
                          [1, 1, 1, 1, 1, 0, 0]], bool)
    expected = np.array([[0, 0, 0, 1, 0, 2, 3],
                         [0, 1, 0, 1, 2, 0, 0]])
    np.testing.assert_array_equal(vlm.compact_positions(seg, attended), expected)


@pytest.fixture(scope="module")
def model_and_tok(request):
    cfg = request.getfixturevalue("cache_config")
    tok = tokenizer.load("synthetic")
    return build_model(cfg, tok), tok, cfg


@pytest.fixture(scope="module")
def cache_config(cache_dir):
    from cambrian import config as C
    from tests.conftest import small

    return small(C.load("encoders/dinov2.py:runlocal"), cache_dir)


def _batch(model, tok, questions, images):
    from cambrian.data.chat_templates import get

    prompts = [conversation.encode_prompt(q, get("vicuna_v1"), tok, model.num_image_tokens,
                                          system="") for q in questions]
    from cambrian.eval.runner import make_batch

    return make_batch(prompts, images, model.host_images(), len(questions))


def test_visual_tokens_are_spliced_in_order(model_and_tok):
    model, tok, _ = model_and_tok
    img = np.random.default_rng(0).integers(0, 255, (2, 112, 112, 3), dtype=np.uint8)
    b = _batch(model, tok, ["What is it?", "How many?"], list(img))
    embeds, seg, pos, _ = model.prepare(b)
    vis, _ = model.encode_images(b["image"], jnp.asarray(b["letterbox"]))
    for r in range(2):
        slots = np.flatnonzero(b["tokens"][r] == conversation.IMAGE_TOKEN)
        assert len(slots) == model.num_image_tokens
        np.testing.assert_allclose(embeds[r, slots], vis[r], atol=1e-6)
        text = b["tokens"][r] >= 0
        np.testing.assert_allclose(embeds[r, text & (b["segment_ids"][r] > 0)],
                                   model.llm.embed(jnp.asarray(b["tokens"][r][text & (
                                       b["segment_ids"][r] > 0)])), atol=1e-6)


def test_greedy_with_kv_cache_equals_full_recompute(model_and_tok):
    model, tok, _ = model_and_tok
    img = np.random.default_rng(1).integers(0, 255, (3, 90, 112, 3), dtype=np.uint8)
    b = _batch(model, tok, ["What is it?", "How many shapes are there?", "Hi"], list(img))
    graphdef, state = nnx.split(model)
    n_new = 6
    toks, lens = vlm.generate_fn(graphdef, max_new_tokens=n_new, eos_ids=(-1,))(state, b)
    # Reference: no cache; re-run the whole model on the growing sequence every step. The
    # sequence grows into right padding (segment 0), which no earlier position attends to, so
    # one compiled forward serves every step.
    n0 = b["tokens"].shape[1]
    grow = lambda x: jnp.pad(jnp.asarray(x), ((0, 0), (0, n_new)))  # noqa: E731
    cur = dict(b)
    cur.update(tokens=grow(b["tokens"]), segment_ids=grow(b["segment_ids"]),
               loss_mask=jnp.zeros((3, n0 + n_new), bool))
    forward = nnx.jit(lambda m, c: m(c)[0])
    ref = []
    for i in range(n_new):
        nxt = jnp.argmax(forward(model, cur)[:, n0 + i - 1], axis=-1).astype(jnp.int32)
        ref.append(nxt)
        cur["tokens"] = cur["tokens"].at[:, n0 + i].set(nxt)
        cur["segment_ids"] = cur["segment_ids"].at[:, n0 + i].set(1)
    np.testing.assert_array_equal(np.asarray(toks), np.stack(ref, 1))
    assert (np.asarray(lens) == n_new).all()
