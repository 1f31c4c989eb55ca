"""Baseline connectors: shapes and token reduction, validity, interleaving order, the resampler's
masking and lack of spatial prior, and LLaVA-projector / concat parity with PyTorch."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import connectors
from cambrian.models.connectors import mlp
from cambrian.models.encoders.features import resize_grid

B, D = 2, 10
CH = (6, 8)


def _feats(grids, seed=0):
    r = np.random.default_rng(seed)
    return [jnp.asarray(r.normal(size=(B, g[0], g[1], c)), jnp.float32) for g, c in zip(grids, CH)]


@pytest.fixture(scope="module")
def make(random_module):
    def build(name, grids, **options):
        return random_module(lambda: connectors.create(
            name, encoder_channels=CH[:len(grids)], encoder_grids=grids, llm_dim=D,
            rngs=nnx.Rngs(0), **options))
    return build


@pytest.mark.parametrize("name,grids,options,n", [
    ("mlp2x_gelu", [(4, 4), (4, 4)], {}, 4 * 5),
    ("mlp2x_gelu", [(4, 4), (4, 4)], {"newline": False}, 16),
    ("mlp2x_gelu", [(4, 4)], {"tokens": 4}, 2 * 3),
    ("linear", [(4, 4), (4, 4)], {"tokens": 1}, 1 * 2),
    ("concat", [(4, 4), (8, 8)], {}, 4 * 5),
    ("concat", [(4, 4), (8, 8)], {"tokens": 36}, 6 * 7),
    ("concat", [(4, 4), (8, 8)], {"tokens": 4, "newline": False}, 4),
    ("interleave", [(4, 4), (8, 8)], {}, 4 * (8 + 1)),
    ("interleave", [(4, 4), (8, 8)], {"tokens": 4}, 2 * (4 + 1)),
    ("resampler", [(4, 4), (8, 8)], {"tokens": 9, "hidden": 16, "heads": 4}, 9),
    ("resampler", [(4, 4), (8, 8)], {"tokens": 4, "hidden": 16, "heads": 4, "newline": True},
     2 * 3),
])
def test_shapes_and_reduction(make, name, grids, options, n):
    conn = make(name, grids, **options)
    tokens, out = conn(_feats(grids))
    assert tokens.shape == (B, n, D) and conn.num_tokens == n
    assert out["token_valid"].shape == (B, n) and out["token_valid"].dtype == jnp.bool_
    assert conn.in_llm_layers == ()
    assert np.isfinite(np.asarray(tokens)).all()


def test_configuration_errors():
    kw = dict(llm_dim=D, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="encoder 1 grid 8x8 differs .* 'concat'"):
        connectors.create("mlp2x_gelu", encoder_channels=CH, encoder_grids=[(4, 4), (8, 8)], **kw)
    with pytest.raises(ValueError, match="tokens=10 is not a positive perfect square"):
        connectors.create("concat", encoder_channels=CH, encoder_grids=[(4, 4)] * 2, tokens=10,
                          **kw)
    with pytest.raises(ValueError, match="for one encoder use 'mlp2x_gelu'"):
        connectors.create("interleave", encoder_channels=CH[:1], encoder_grids=[(4, 4)], **kw)
    with pytest.raises(ValueError, match="newline=True needs a square grid"):
        connectors.create("resampler", encoder_channels=CH, encoder_grids=[(4, 4)] * 2, tokens=10,
                          newline=True, hidden=16, heads=4, **kw)


def test_concat_token_valid(make):
    # Encoder 0 (4x4): top row padded; encoder 1 (8x8): top two rows padded -> token row 0 and its
    # newline are padding. On a 2x2 grid, row 0 covers encoder 0 rows 0-1 (row 1 valid): valid.
    v = [np.ones((B, 4, 4), bool), np.ones((B, 8, 8), bool)]
    v[0][1, 0], v[1][1, :2] = False, False
    conn = make("concat", [(4, 4), (8, 8)])
    _, out = conn(_feats([(4, 4), (8, 8)]), [jnp.asarray(x) for x in v])
    tv = np.asarray(out["token_valid"]).reshape(B, 4, 5)
    assert tv[0].all() and not tv[1, 0].any() and tv[1, 1:].all()
    small = make("concat", [(4, 4), (8, 8)], tokens=4)
    _, out = small(_feats([(4, 4), (8, 8)]), [jnp.asarray(x) for x in v])
    assert np.asarray(out["token_valid"]).all()


def test_interleave_order_and_validity(make):
    grids = [(4, 4), (8, 8)]
    conn = make("interleave", grids, tokens=4)
    feats = _feats(grids)
    v = [np.ones((B, 4, 4), bool), np.ones((B, 8, 8), bool)]
    v[0][1, :, :2] = False  # encoder 0: left half padded -> its column-0 tokens are padding
    tokens, out = conn(feats, [jnp.asarray(x) for x in v])
    tokens = np.asarray(tokens).reshape(B, 2, 2 * 2 + 1, D)
    for e in range(2):
        want = np.asarray(getattr(conn, f"mm_projector_aux_{e}")(resize_grid(feats[e], (2, 2))))
        for i in range(2):
            for j in range(2):
                np.testing.assert_allclose(tokens[:, i, 2 * j + e], want[:, i, j], atol=1e-6)
    np.testing.assert_array_equal(tokens[:, :, 4], np.broadcast_to(
        np.asarray(conn.image_newline[...]), (B, 2, D)))
    tv = np.asarray(out["token_valid"]).reshape(B, 2, 5)
    assert tv[0].all()
    np.testing.assert_array_equal(tv[1], [[False, True, True, True, True]] * 2)


def test_resampler_masks_padding_and_has_no_spatial_prior(make):
    grids = [(4, 4), (8, 8)]
    conn = make("resampler", grids, tokens=9, hidden=16, heads=4)
    feats = _feats(grids)
    v = [np.ones((B, 4, 4), bool), np.ones((B, 8, 8), bool)]
    v[1][:, :3] = False
    valid = [jnp.asarray(x) for x in v]
    base, _ = conn(feats, valid)
    moved = [feats[0], feats[1] + jnp.asarray(np.where(~v[1][..., None], 25.0, 0.0), jnp.float32)]
    np.testing.assert_allclose(np.asarray(conn(moved, valid)[0]), np.asarray(base), atol=1e-5)
    changed = [feats[0], feats[1].at[:, 5, 5].add(3.0)]
    assert np.abs(np.asarray(conn(changed, valid)[0]) - np.asarray(base)).max() > 1e-4
    # No spatial prior: shuffling the cells of a map (with its mask) changes nothing.
    perm = np.random.default_rng(0).permutation(64)
    f1 = feats[1].reshape(B, 64, -1)[:, perm].reshape(B, 8, 8, -1)
    v1 = valid[1].reshape(B, 64)[:, perm].reshape(B, 8, 8)
    np.testing.assert_allclose(np.asarray(conn([feats[0], f1], [valid[0], v1])[0]),
                               np.asarray(base), atol=1e-5)


@pytest.mark.parity
@pytest.mark.parametrize("name,grids,tokens", [
    ("mlp2x_gelu", [(4, 4), (4, 4)], None),
    ("linear", [(4, 4), (4, 4)], None),
    ("concat", [(4, 4), (8, 8)], 9),  # 8x8 and 4x4 both resampled to 3x3
])
def test_llava_projector_parity(tmp_path, name, grids, tokens):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    layers = [nn.Linear(sum(CH), D)] + ([nn.GELU(), nn.Linear(D, D)] if name != "linear" else [])
    ref = nn.Sequential(*layers)
    newline = torch.randn(D)
    sd = {f"model.mm_projector.{k}": t for k, t in ref.state_dict().items()}
    sd["model.image_newline"] = newline
    torch.save(sd, tmp_path / "mm_projector.bin")
    conn = mlp.load(str(tmp_path / "mm_projector.bin"), encoder_channels=CH, encoder_grids=grids,
                    llm_dim=D, name=name, tokens=tokens)
    feats = _feats(grids, seed=3)
    side = grids[0][0] if tokens is None else int(tokens**0.5)
    with torch.no_grad():
        maps = []
        for f in feats:  # Cambrian's towers: bilinear, align_corners=False, on NCHW
            t = torch.from_numpy(np.array(f)).permute(0, 3, 1, 2)
            if t.shape[-1] != side:
                t = torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear",
                                                    align_corners=False)
            maps.append(t.permute(0, 2, 3, 1))
        x = ref(torch.cat(maps, -1))
        x = torch.cat([x, newline.view(1, 1, 1, D).expand(B, side, 1, D)], 2).flatten(1, 2)
    got, _ = conn(feats)
    np.testing.assert_allclose(np.asarray(got), x.numpy(), atol=1e-5, rtol=0)
