"""SigLIP 2 parity: NaFlex against HF ``Siglip2VisionModel`` (square, wide, tall, resampled and
padded mixed-aspect batches), FixRes against HF ``SiglipVisionModel`` and timm, and the NaFlex
host batching against HF's ``Siglip2ImageProcessorPil`` -- all through ``siglip2.reference``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import naflex, siglip2

from .utils import forward, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4
# == siglip2.VARIANTS["runlocal"]: width 64, 2 blocks, 2 heads, MLP 256, 8-px patches, 4x4 table
HF_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
               patch_size=8)


@pytest.fixture(scope="module")
def naflex_ckpt(tmp_path_factory):
    model = randomize(transformers.Siglip2VisionModel(
        transformers.Siglip2VisionConfig(**HF_TINY, num_patches=16)), 0)
    path = tmp_path_factory.mktemp("siglip2_naflex")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def fixres_ckpt(tmp_path_factory):
    """A full HF ``SiglipModel``, as the FixRes SigLIP 2 checkpoints are published."""
    text = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
                vocab_size=64, max_position_embeddings=16)
    model = randomize(transformers.SiglipModel(transformers.SiglipConfig(
        vision_config=HF_TINY | dict(image_size=32), text_config=text)), 1)
    path = tmp_path_factory.mktemp("siglip2_fixres")
    model.save_pretrained(path)
    return str(path)


def _pixels(h: int, w: int, seed: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, h, w, 3)).astype(np.float32)


def _ref(path, x, config, spatial_shapes=None):
    with torch.no_grad():
        return siglip2.reference(path, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
                                 config, spatial_shapes)


# 32 px = the 4x4 table; 40 / 24 resample it up / down; wide, tall and odd grids (44 x 60 px
# drops the pixels past the last whole patch, as the patch conv does)
@pytest.mark.parametrize("hw,layer", [((32, 32), None), ((40, 40), 1), ((24, 24), None),
                                      ((24, 56), None), ((56, 24), 0), ((44, 60), 1)])
def test_naflex_parity_one_sequence_per_image(naflex_ckpt, hw, layer):
    h, w = hw
    enc = encoders.load("siglip2", naflex_ckpt, image_size=h, layer=layer)
    assert isinstance(enc, naflex.NaFlexViT)
    x = _pixels(h, w, seed=h + w)
    feats, out = forward(enc, jnp.asarray(x))
    want = _ref(naflex_ckpt, x, enc.config)
    grid = (h // 8, w // 8)
    assert feats.shape == want.shape == (2, *grid, 64)
    assert out["hidden_states"][0].shape[1] == grid[0] * grid[1]  # no padding tokens
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)


@pytest.mark.parametrize("layer", [None, 0])
def test_naflex_parity_padded_mixed_batch(naflex_ckpt, layer):
    """Square, wide and tall images on one 5 x 7 canvas, sequences cut to max_num_patches = 16
    (HF pads each to 16); the valid cells are each image's top-left grid. The 5 x 2 image's
    padding would sit past its 5-row grid (no position weights: NaN once)."""
    enc = encoders.load("siglip2", naflex_ckpt, layer=layer)
    assert enc.config.max_num_patches == 16
    shapes = np.array([[4, 4], [2, 7], [5, 2]], np.int32)
    x = _pixels(40, 56, seed=3, batch=3)
    feats, out = forward(enc, jnp.asarray(x), jnp.asarray(shapes))  # traced spatial_shapes
    want = _ref(naflex_ckpt, x, enc.config, shapes)
    assert feats.shape == want.shape == (3, 5, 7, 64)
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)
    rows, cols = np.indices((5, 7))
    boxes = (rows[None] < shapes[:, :1, None]) & (cols[None] < shapes[:, 1:, None])
    np.testing.assert_array_equal(np.asarray(out["valid"]), boxes)
    np.testing.assert_array_equal(np.asarray(out["sequence_valid"]).sum(1), [16, 14, 10])
    assert not np.asarray(feats)[~boxes].any()


def test_naflex_padding_never_reaches_the_image(naflex_ckpt):
    """Changing the canvas outside an image's box changes nothing; a full-canvas shape is the
    unpadded call."""
    enc = encoders.load("siglip2", naflex_ckpt)
    shapes = jnp.asarray([[3, 5], [4, 4]], jnp.int32)
    x = _pixels(32, 40, seed=4)
    y = x.copy()
    y[0, 24:], y[0, :, 40:], y[1, :, 32:] = 9.0, 9.0, 9.0
    a, _ = forward(enc, jnp.asarray(x), shapes)
    b, _ = forward(enc, jnp.asarray(y), shapes)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    full, _ = forward(enc, jnp.asarray(x[:, :32, :32]), jnp.asarray([[4, 4], [4, 4]], jnp.int32))
    plain, _ = forward(enc, jnp.asarray(x[:, :32, :32]))
    np.testing.assert_allclose(np.asarray(full), np.asarray(plain), atol=1e-5, rtol=0)


def test_naflex_spatial_shapes_are_checked(naflex_ckpt):
    enc = encoders.load("siglip2", naflex_ckpt)
    x = jnp.zeros((2, 40, 56, 3))
    with pytest.raises(ValueError, match=r"image 1 has spatial shape \(3, 6\).*rows \* cols <= 16"):
        enc(x, np.array([[4, 4], [3, 6]]))
    with pytest.raises(ValueError, match=r"image 0 has spatial shape \(6, 2\).*rows <= 5"):
        enc(x, np.array([[6, 2], [1, 1]]))


def test_axis_weights_match_torch_antialiased_bilinear():
    """The traced per-image position weights are torch's antialiased bilinear resize (shrinking,
    identity and enlarging)."""
    for n_src, size in ((4, 1), (4, 3), (4, 4), (4, 7), (16, 9), (16, 24)):
        eye = torch.eye(n_src)[:, None, None]  # resizing the basis: the weights, a row per input
        want = torch.nn.functional.interpolate(eye, size=(1, size), mode="bilinear",
                                               align_corners=False, antialias=True)
        got = naflex.axis_weights(np.arange(size)[None], np.asarray([[size]]), n_src)[0]
        np.testing.assert_allclose(np.asarray(got), want[:, 0, 0].T.numpy(), atol=1e-6, rtol=0,
                                   err_msg=f"{n_src} -> {size}")


@pytest.mark.parametrize("layer,hw", [(None, (32, 32)), (1, (24, 56))])
def test_fixres_hf_parity(fixres_ckpt, layer, hw):
    """HF SigLIP layout; other sizes use its ``interpolate_pos_encoding`` (bicubic)."""
    h, w = hw
    enc = encoders.load("siglip2", fixres_ckpt, image_size=h, layer=layer)
    assert type(enc).__name__ == "VisionTransformer" and enc.config.pos_interp == "bicubic"
    x = _pixels(h, w, seed=5)
    want = _ref(fixres_ckpt, x, enc.config)
    feats = np.asarray(forward(enc, jnp.asarray(x))[0])
    assert feats.shape == want.shape == (2, h // 8, w // 8, 64)
    np.testing.assert_allclose(feats, want, atol=TOL, rtol=0)


def test_fixres_timm_parity(tmp_path):
    """A timm / open_clip SigLIP 2 trunk (``variant`` names its architecture)."""
    import timm.models.vision_transformer as tv
    from safetensors.torch import save_file

    model = randomize(tv.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0,
        class_token=False, global_pool="map", act_layer="gelu_tanh", num_classes=0,
        dynamic_img_size=True), 6)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({"visual.trunk." + k: v.contiguous() for k, v in model.state_dict().items()},
              str(path))
    for size, layer in ((32, None), (48, 1)):
        enc = encoders.load("siglip2", str(path), variant="runlocal-fixres", image_size=size,
                            layer=layer)
        x = _pixels(size, size, seed=size)
        want = _ref(str(path), x, enc.config)
        if layer is None:  # the reference, built from our config, is the saved model
            with torch.no_grad():
                direct = model.forward_features(torch.from_numpy(x).permute(0, 3, 1, 2))
            np.testing.assert_allclose(want, direct.reshape(want.shape).numpy(), atol=1e-6)
        np.testing.assert_allclose(np.asarray(forward(enc, jnp.asarray(x))[0]), want,
                                   atol=TOL, rtol=0)


def test_checkpoint_kind_and_variant_must_agree(naflex_ckpt, fixres_ckpt):
    with pytest.raises(weights.CheckpointError, match="NaFlex .* variant 'So400m/14-384'"):
        encoders.load("siglip2", naflex_ckpt, variant="So400m/14-384")
    with pytest.raises(weights.CheckpointError, match="FixRes .* variant 'So400m/16-naflex'"):
        encoders.load("siglip2", fixres_ckpt, variant="So400m/16-naflex")
    enc = encoders.load("siglip2", naflex_ckpt, variant="So400m/16-naflex")
    assert enc.config.width == 64 and enc.config.max_num_patches == 256  # the variant's


def test_naflex_size_matches_hf():
    from transformers.models.siglip2.image_processing_siglip2 import (
        get_image_size_for_max_num_patches as hf_size,
    )

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 2000, 2))
        patch, n = int(rng.choice([14, 16])), int(rng.choice([64, 256, 576, 1024]))
        assert naflex.naflex_size(h, w, patch, n) == hf_size(h, w, patch, n), (h, w, patch, n)


def test_naflex_batch_matches_hf_processor():
    """Sizes, patches (row-major, (py, px, rgb)-flattened) and masks of HF's processor."""
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in ((60, 60), (30, 90), (100, 37))]
    pixels, shapes = naflex.naflex_batch(images, patch=8, max_num_patches=16)
    proc = transformers.Siglip2ImageProcessorPil(patch_size=8, max_num_patches=16)
    hf = proc(images=images, return_tensors="np")
    np.testing.assert_array_equal(shapes, hf["spatial_shapes"])
    assert pixels.shape == (3, 8 * shapes[:, 0].max(), 8 * shapes[:, 1].max(), 3)
    for i, (r, c) in enumerate(shapes):
        patches = pixels[i, :r * 8, :c * 8].reshape(r, 8, c, 8, 3).transpose(0, 2, 1, 3, 4)
        np.testing.assert_allclose(patches.reshape(r * c, -1), hf["pixel_values"][i, :r * c],
                                   atol=1e-6, rtol=0)
        np.testing.assert_array_equal(hf["pixel_attention_mask"][i], np.arange(16) < r * c)
    fixed, _ = naflex.naflex_batch(images, patch=8, max_num_patches=16, canvas=(6, 8))
    assert fixed.shape == (3, 48, 64, 3)  # a fixed canvas: one compiled shape for every batch
    np.testing.assert_array_equal(fixed[:, :pixels.shape[1], :pixels.shape[2]], pixels)
    with pytest.raises(ValueError, match=r"image 1 needs a grid of \(2, 6\) patches, larger "
                                         r"than the canvas \(4, 4\)"):
        naflex.naflex_batch(images, patch=8, max_num_patches=16, canvas=(4, 4))


def test_runlocal_naflex_bf16_padded_batch():
    """A bf16 tower (frozen towers run in bf16) on a padded batch stays near fp32, features
    float32 and zero outside the images."""
    shapes = jnp.asarray([[4, 2], [2, 4]], jnp.int32)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    f32, _ = forward(encoders.create("siglip2", "runlocal"), x, shapes)
    bf16, out = forward(encoders.create("siglip2", "runlocal", dtype="bfloat16"), x, shapes)
    assert bf16.dtype == jnp.float32 and not np.asarray(bf16)[~np.asarray(out["valid"])].any()
    assert float(jnp.abs(bf16 - f32).max()) <= 0.05 * float(jnp.abs(f32).max())


def test_naflex_converted_dir_keeps_the_naflex_tower(naflex_ckpt, tmp_path, capsys):
    """``convert`` writes the NaFlex tower (its class and max_num_patches) and ``--verify``
    runs against HF."""
    from PIL import Image

    from cambrian.models.encoders import convert

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (40, 60, 3), np.uint8)).save(image)
    dst = tmp_path / "dst"
    assert convert.main(["--family", "siglip2", "--src", naflex_ckpt, "--dst", str(dst),
                         "--image-size", "40", "--verify", str(image)]) == 0
    err = float(capsys.readouterr().out.rsplit("= ", 1)[1])
    assert err <= TOL
    converted = encoders.load("siglip2", str(dst))
    assert isinstance(converted, naflex.NaFlexViT) and converted.config.max_num_patches == 16
    shapes = jnp.asarray([[2, 7], [5, 2]], jnp.int32)
    x = jnp.asarray(_pixels(40, 56, seed=9))
    native = encoders.load("siglip2", naflex_ckpt)
    np.testing.assert_array_equal(np.asarray(forward(converted, x, shapes)[0]),
                                  np.asarray(forward(native, x, shapes)[0]))


@pytest.mark.parametrize("name,options", [("mlp2x_gelu", {"newline": False}),
                                          ("sva", dict(query_side=4, depth=1, vision_hidden=32,
                                                       heads=2))])
def test_connectors_take_the_padded_canvas_and_its_mask(name, options):
    """The canvas grid and ``out["valid"]`` go to a connector as ``feats`` / ``valid``; its
    tokens over padding come out invalid (a 4 x 4 token grid over the 4 x 4 canvas)."""
    from flax import nnx

    from cambrian.models import connectors

    enc = encoders.create("siglip2", "runlocal")
    shapes = jnp.asarray([[4, 2], [2, 4]], jnp.int32)
    feats, out = forward(enc, jax.random.normal(jax.random.key(2), (2, 32, 32, 3)), shapes)
    conn = connectors.create(name, encoder_channels=[64], encoder_grids=[(4, 4)], llm_dim=32,
                             rngs=nnx.Rngs(0), **options)
    tokens, cout = conn([feats], [out["valid"]])
    assert np.isfinite(np.asarray(tokens)).all()
    valid = np.asarray(cout["token_valid"]).reshape(2, 4, -1)[:, :, :4]  # SVA ends rows in \n
    np.testing.assert_array_equal(valid[0], np.asarray(out["valid"][0]))  # the 4 x 2 image
    np.testing.assert_array_equal(valid[1], np.asarray(out["valid"][1]))  # the 2 x 4 image
