"""SVA behaviour: window locality, key masking, in-LLM updates, attention mass, presets, errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import connectors
from cambrian.models.connectors import sva
from cambrian.models.connectors.common import letterbox_mask
from cambrian.models.encoders.features import resize_grid
from cambrian.models.encoders.preprocess import letterbox

L, MULT, CH, HID, HEADS, LLM = 3, (1, 2, 4), (8, 12, 16), 16, 4, 20
GRIDS = [(L * m, L * m) for m in MULT]


@pytest.fixture(scope="module")
def make(random_module):
    def build(grids=GRIDS, channels=CH, seed=0, **kw):
        opts = dict(query_side=L, depth=2, groups=2, vision_hidden=HID, heads=HEADS,
                    in_llm_layers=2, in_llm_stride=2)
        opts.update(kw)
        return random_module(lambda: connectors.create(
            "sva", encoder_channels=channels, encoder_grids=grids, llm_dim=LLM,
            rngs=nnx.Rngs(0), **opts), seed)
    return build


@pytest.fixture(scope="module")
def model(make):
    return make()


def _feats(bs=3, seed=0):
    r = np.random.default_rng(seed)
    return [r.normal(size=(bs, g[0], g[1], c)).astype(np.float32) for g, c in zip(GRIDS, CH)]


def _masks():
    """Item 0 unpadded. Item 1 letter-boxed top/bottom: query rows 0 and 2 are all padding in every
    encoder, row 1 is partly padded in encoder 2 (rows 4 and 7 of 12). Item 2: query column 0 is
    all padding in encoders 1 and 2 but valid in encoder 0."""
    v = [np.ones((3,) + g, bool) for g in GRIDS]
    v[0][1, [0, 2]] = False
    v[1][1, [0, 1, 4, 5]] = False
    v[2][1, [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]] = False
    v[1][2, :, [0, 1]] = False
    v[2][2, :, [0, 1, 2, 3]] = False
    return v


def _token(i, j):
    return i * (L + 1) + j


def test_token_valid_and_window_masks(model):
    _, out = model([jnp.asarray(f) for f in _feats()], [jnp.asarray(m) for m in _masks()])
    tv = np.asarray(out["token_valid"])
    assert tv.shape == (3, L * (L + 1))
    assert tv[0].all() and tv[2].all()  # item 2: encoder 0 still sees column 0
    want1 = np.array([[False] * 4, [True] * 4, [False] * 4]).reshape(-1)
    np.testing.assert_array_equal(tv[1], want1)
    wm = [np.asarray(m) for m in out["window_masks"]]
    assert [m.shape for m in wm] == [(3, L * L, m * m) for m in MULT]
    # encoder 1 (m=2), item 1: windows of query row 0 / 2 are all padding -> reset to all True.
    assert wm[1][1, :L].all() and wm[1][1, 2 * L:].all()
    # encoder 2 (m=4), item 1, query row 1 covers rows 4..7: rows 4 and 7 padded.
    want = np.array([[False] * 4, [True] * 4, [True] * 4, [False] * 4]).reshape(-1)
    for j in range(L):
        np.testing.assert_array_equal(wm[2][1, L + j], want)
    # encoder 1, item 2, query column 0 is all padding -> reset; column 1 fully valid.
    assert wm[1][2, 0::L].all() and wm[1][2, 1::L].all()


def test_masked_keys_get_zero_weight(model):
    feats = [jnp.asarray(f) for f in _feats()]
    masks = [jnp.asarray(m) for m in _masks()]
    tokens, out = model(feats, masks, return_attention=True)
    keep = np.concatenate([np.asarray(m) for m in out["window_masks"]], axis=-1)  # b, q, k
    assert len(out["attention"]) == 2 * 2  # depth x groups
    for w in out["attention"]:
        w = np.asarray(w)
        assert np.isfinite(w).all()
        np.testing.assert_array_equal(np.moveaxis(w, 2, 3)[~keep], 0.0)
        assert (np.moveaxis(w, 2, 3)[keep] > 0).all()
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
    assert np.isfinite(np.asarray(tokens)).all()
    # Features under masked keys of encoders 1, 2 (not the global-context encoder) do not matter.
    bumped = list(feats)
    for k in (1, 2):
        pad = ~_masks()[k]
        keep_k = np.asarray(out["window_masks"][k])
        reset = keep_k.all(-1)  # windows reset to all True do read padding cells
        m = L * MULT[k] // L
        win = np.repeat(np.repeat(reset.reshape(3, L, L), m, 1), m, 2)
        noise = np.where((pad & ~win)[..., None], 50.0, 0.0).astype(np.float32)
        bumped[k] = feats[k] + noise
    t2, _ = model(bumped, masks)
    np.testing.assert_allclose(np.asarray(t2), np.asarray(tokens), atol=1e-5)


@pytest.mark.parametrize("context_encoder,perturbed", [(0, (1, 2)), (2, (0, 1))])
def test_query_sees_only_its_window(make, context_encoder, perturbed):
    m = make(global_context_encoder=context_encoder)
    feats = _feats()
    i, j = 1, 2
    base, out = m([jnp.asarray(f) for f in feats])
    changed = list(feats)
    for k in perturbed:
        s = MULT[k]
        outside = np.ones(GRIDS[k], bool)
        outside[s * i:s * (i + 1), s * j:s * (j + 1)] = False
        changed[k] = feats[k] + np.where(outside[None, ..., None], 3.0, 0.0).astype(np.float32)
    new, out2 = m([jnp.asarray(f) for f in changed])
    base, new = np.asarray(base), np.asarray(new)
    np.testing.assert_allclose(new[:, _token(i, j)], base[:, _token(i, j)], atol=1e-6)
    others = [_token(a, b) for a in range(L) for b in range(L) if (a, b) != (i, j)]
    assert np.abs(new[:, others] - base[:, others]).max(-1).min() > 1e-4
    # The in-LLM layer reads the same windows.
    h = jnp.asarray(np.random.default_rng(1).normal(size=(3, L * (L + 1), LLM)), jnp.float32)
    a, b = np.asarray(m.apply_in_llm(0, h, out)), np.asarray(m.apply_in_llm(0, h, out2))
    np.testing.assert_allclose(b[:, _token(i, j)], a[:, _token(i, j)], atol=1e-6)
    assert np.abs(b[:, others] - a[:, others]).max(-1).min() > 1e-4
    # Perturbing inside the window does change the query.
    inside = list(feats)
    k = perturbed[0]
    inside[k] = feats[k].copy()
    inside[k][:, MULT[k] * i, MULT[k] * j] += 3.0
    t3, _ = m([jnp.asarray(f) for f in inside])
    assert np.abs(np.asarray(t3)[:, _token(i, j)] - base[:, _token(i, j)]).max(-1).min() > 1e-4


def test_in_llm_updates_only_image_positions(model):
    feats = [jnp.asarray(f) for f in _feats()]
    _, out = model(feats, [jnp.asarray(m) for m in _masks()])
    assert model.in_llm_layers == (0, 2)
    h = np.random.default_rng(3).normal(size=(3, L * (L + 1), LLM)).astype(np.float32)
    for k in range(2):
        new = np.asarray(model.apply_in_llm(k, jnp.asarray(h), out))
        newline = [_token(i, L) for i in range(L)]
        image = [p for p in range(L * (L + 1)) if p not in newline]
        np.testing.assert_array_equal(new[:, newline], h[:, newline])
        assert (np.abs(new[:, image] - h[:, image]).max(-1) > 1e-4).all()
    with pytest.raises(ValueError, match="expected 12"):
        model.apply_in_llm(0, jnp.zeros((3, 9, LLM)), out)


def test_attention_mass(model, make):
    _, out = model([jnp.asarray(f) for f in _feats()], [jnp.asarray(m) for m in _masks()])
    mass = np.asarray(out["attention_mass"])
    assert mass.shape == (3, 3)
    assert (mass > 0).all()
    np.testing.assert_allclose(mass.sum(-1), 1.0, atol=1e-6)
    single = make(grids=[(6, 6)], channels=[12], depth=1, groups=1, in_llm_layers=0)
    _, o = single([jnp.asarray(_feats()[1])])
    np.testing.assert_allclose(np.asarray(o["attention_mass"]), 1.0, atol=1e-6)


def test_jit_matches_eager(model):
    feats = [jnp.asarray(f) for f in _feats()]
    masks = [jnp.asarray(m) for m in _masks()]
    eager, out = model(feats, masks)

    @nnx.jit
    def run(m, f, v):
        t, o = m(f, v)
        return t, m.apply_in_llm(1, t, o)

    tokens, hidden = run(model, feats, masks)
    np.testing.assert_allclose(np.asarray(tokens), np.asarray(eager), atol=1e-5)
    np.testing.assert_allclose(np.asarray(hidden), np.asarray(model.apply_in_llm(1, eager, out)),
                               atol=1e-5)


def test_grid_not_multiple_of_query_side(make):
    grids = [(3, 3), (7, 7)]
    a = make(grids=grids, channels=CH[:2])
    assert a.multiples == (1, 2)  # 7 -> round(7 / 3) * 3 = 6
    b = make(grids=GRIDS[:2], channels=CH[:2], seed=5)
    nnx.update(b, nnx.state(a))
    r = np.random.default_rng(0)
    f = [jnp.asarray(r.normal(size=(3, 3, 3, 8)), jnp.float32),
         jnp.asarray(r.normal(size=(3, 7, 7, 12)), jnp.float32)]
    got, _ = a(f)
    want, _ = b([f[0], resize_grid(f[1], (6, 6))])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
    with pytest.raises(ValueError, match=r"encoder 1 grid 7x7 .* query_side=3"):
        connectors.create("sva", encoder_channels=[8, 12], encoder_grids=grids, llm_dim=LLM,
                          rngs=nnx.Rngs(0), query_side=L, resize_to_multiple=False)


def test_input_errors_name_the_encoder(model):
    feats = [jnp.asarray(f) for f in _feats()]
    with pytest.raises(ValueError, match=r"feats\[1\] has shape \(3, 5, 6, 12\)"):
        model([feats[0], feats[1][:, :5], feats[2]])
    with pytest.raises(ValueError, match="got 2 feature maps"):
        model(feats[:2])
    with pytest.raises(ValueError, match=r"valid\[1\] has shape \(3, 3, 3\), expected \(3, 6"):
        model(feats, [jnp.ones((3, 3, 3), bool)] * 3)
    with pytest.raises(ValueError, match="unknown connector 'svb'.*sva"):
        connectors.create("svb", encoder_channels=CH, encoder_grids=GRIDS, llm_dim=LLM,
                          rngs=nnx.Rngs(0))


RELEASED = dict(encoder_channels=[1152, 1024, 1536, 5760],
                encoder_grids=[(27, 27), (24, 24), (27, 27), (96, 96)])


@pytest.mark.parametrize("name,hit", [
    ("cambrian-8b", tuple(range(0, 28, 3))),   # 0, 3, ..., 27 of Llama-3-8B's 32 layers
    ("cambrian-13b", tuple(range(0, 37, 4))),  # 0, 4, ..., 36 of Vicuna-13B's 40
    ("cambrian-34b", tuple(range(0, 57, 7))),  # 0, 7, ..., 56 of Yi-34B's 60
])
def test_presets_in_llm_layers(name, hit):
    p = sva.PRESETS[name]
    got = sva.in_llm_layer_indices(p["in_llm_layers"], p["in_llm_start"], p["in_llm_stride"])
    assert got == hit
    assert (p["query_side"], p["depth"], p["groups"], p["vision_hidden"], p["heads"]) == \
        (24, 3, 1, 1024, 16)


def test_cambrian_8b_preset_structure():
    m = nnx.eval_shape(lambda: sva.create(**RELEASED, llm_dim=4096, rngs=nnx.Rngs(0),
                                          llm_num_layers=32, **sva.PRESETS["cambrian-8b"]))
    assert m.in_llm_layers == tuple(range(0, 28, 3))
    assert m.multiples == (1, 1, 1, 4) and sum(k * k for k in m.multiples) == 19  # keys per query
    assert m.num_tokens == 24 * 25
    assert m.vision_query.shape == (1, 1024) and m.image_newline.shape == (4096,)
    assert m.mm_projector_aux_3.linear_1.kernel.shape == (5760, 1024)
    assert len(m.vision_sampler_0.layers) == 3 and len(m.vision_sampler_layers) == 10
    assert m.vision_sampler_0.layers[0].cross_attn.heads == 16
    assert m.vision_sampler_0.layers[0].pos_embed_3.shape == (16, 1024)
    assert not hasattr(m.vision_sampler_0.layers[0], "pos_embed_0")
    assert m.vision_sampler_layers[0].layers[0].proj_in.kernel.shape == (4096 + 1024, 1024)


def test_in_llm_layers_checked_against_llm_depth():
    with pytest.raises(ValueError, match="run past the LLM's 60 decoder layers"):
        nnx.eval_shape(lambda: sva.create(**RELEASED, llm_dim=64, rngs=nnx.Rngs(0),
                                          llm_num_layers=60,
                                          **{**sva.PRESETS["cambrian-34b"], "in_llm_stride": 9}))


def test_parameter_names_match_cambrian_lr_groups(model):
    m = model
    paths = ["/".join(str(p) for p in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(nnx.state(m, nnx.Param))[0]]
    paths = [re.sub(r"[\[\]'.]|DictKey|GetAttrKey|SequenceKey|\(|\)|key=|name=|idx=", "", p)
             .removesuffix("/value") for p in paths]
    sampler = [p for p in paths if re.search(r"vision_sampler|vision_query", p)]
    assert any(p.startswith("vision_query") for p in sampler)
    assert any(p.startswith("vision_sampler_0/") for p in sampler)
    assert any(p.startswith("vision_sampler_layers/") for p in sampler)
    assert any(p.startswith("mm_projector_aux_2/") for p in paths)
    assert any(p.startswith("mm_projector/") for p in paths)
    assert "image_newline" in paths


def _letterbox_valid(w, h, side):
    return np.asarray(letterbox_mask(jnp.asarray([letterbox(w, h, side)]), side))[0]


def test_letterbox_matches_cambrian_offsets():
    # 640x480 on 24: short side int(480 * 24 / 640) = 18 cells, (24 - 18) // 2 = 3 padded rows.
    v = _letterbox_valid(640, 480, 24)
    assert (~v[:3]).all() and (~v[-3:]).all() and v[3:-3].all()
    # 300x600 on 24: int(300 * 24 / 600) = 12 -> 6 padded columns each side.
    v = _letterbox_valid(300, 600, 24)
    assert (~v[:, :6]).all() and (~v[:, -6:]).all() and v[:, 6:-6].all()
    # 1000x999 on 24: int(999 * 0.024) = 23 -> (24 - 23) // 2 = 0, nothing padded.
    assert _letterbox_valid(1000, 999, 24).all()
    # 517x289 on 6: int(289 * 6 / 517) = 3, pad (6 - 3) // 2 = 1: upstream keeps 4 rows, not 3
    assert _letterbox_valid(517, 289, 6).any(1).sum() == 4
    # 88x55 on 24: 55 * (24 / 88) is 14.999... in float64, so 14 cells and pad 5 (not 4)
    assert letterbox(88, 55, 24) == (0, 5)
    assert _letterbox_valid(88, 55, 24).any(1).sum() == 14
