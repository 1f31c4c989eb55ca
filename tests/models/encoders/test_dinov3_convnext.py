"""DINOv3 ConvNeXt parity: tiny random transformers ``DINOv3ConvNextModel`` checkpoints saved
with ``save_pretrained`` (the hub layout), loaded by ``dinov3_convnext.load`` and compared in fp32
with ``dinov3_convnext.reference``: every stage, the final-norm output, multi-stage, non-square
and odd sizes."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import common, dinov3_convnext, layout

from .utils import check_jit_and_bf16, forward, nhwc, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = transformers.DINOv3ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1])
    path = tmp_path_factory.mktemp("dinov3_convnext")
    randomize(transformers.DINOv3ConvNextModel(cfg), 0).save_pretrained(path)
    return str(path)


def _compare(enc, path, h, w):
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h + w))
    feats, out = forward(enc, jnp.asarray(nhwc(x)))
    with torch.no_grad():
        want = dinov3_convnext.reference(path, x, enc.config)
    assert feats.shape == want.shape
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)
    return feats, out


@pytest.mark.parametrize("size,layer", [((64, 64), None), ((64, 96), None), ((72, 100), None),
                                        ((64, 64), 0), ((64, 96), 1), ((72, 100), 2),
                                        ((64, 64), -1)])
def test_single_stage(ckpt, size, layer):
    """``layer=None``: the last stage after the final norm; ``layer=k``: stage k, raw."""
    enc = encoders.load("dinov3_convnext", ckpt, variant="runlocal", image_size=size[0],
                        layer=layer)
    feats, out = _compare(enc, ckpt, *size)
    assert feats.shape[-1] == enc.out_channels
    if layer == -1:  # the raw last stage is not the normalised output
        assert not np.allclose(np.asarray(out["last_hidden_state"]), np.asarray(feats),
                               atol=1e-2)


@pytest.mark.parametrize("size,num_tokens", [((64, 64), None), ((96, 96), 25), ((64, 96), 36)])
def test_multi_stage(ckpt, size, num_tokens):
    """Every stage bilinear to one grid and concatenated, as ``convnext``'s multi-stage."""
    enc = dinov3_convnext.load(ckpt, variant="runlocal-multi-stage",
                               image_size=size[0], num_tokens=num_tokens)
    feats, _ = _compare(enc, ckpt, *size)
    assert feats.shape[-1] == 8 + 16 + 24 + 32


def test_missing_config_names_the_published_layout(ckpt, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(open(f"{ckpt}/model.safetensors", "rb").read())
    with pytest.raises(weights.CheckpointError, match="no config.json.*dinov3-convnext"):
        encoders.load("dinov3_convnext", str(tmp_path))


def test_variants_match_published_parameter_counts():
    """facebookresearch/dinov3 README: T 29M, S 50M, B 89M, L 198M, counted (as the ConvNeXt
    paper's sizes) with a 1000-class linear head."""
    for variant, millions in {"T": 29, "S": 50, "B": 89, "L": 198}.items():
        cfg = dinov3_convnext._config(variant, None, None, None, "float32")
        enc = common.abstract(dinov3_convnext.DINOv3ConvNeXt, cfg)
        head = cfg.dims[-1] * 1000 + 1000
        n = (sum(math.prod(s) for s in layout.param_paths(enc).values()) + head) / 1e6
        assert abs(n - millions) <= max(1.0, 0.015 * millions), (variant, n)


def test_jit_and_bfloat16():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 64, 64, 3)), jnp.float32)
    check_jit_and_bf16(lambda dtype: encoders.create(
        "dinov3_convnext", "runlocal-multi-stage", rngs=nnx.Rngs(0), dtype=dtype), x,
        (2, 6, 6, 80))


def test_converted_directory_gives_the_same_features(ckpt, tmp_path):
    enc = dinov3_convnext.load(ckpt, variant="runlocal-multi-stage")
    layout.save(enc, str(tmp_path), family="dinov3_convnext")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 64, 64, 3)), jnp.float32)
    again = encoders.load("dinov3_convnext", str(tmp_path))
    assert again.config == enc.config and type(again) is type(enc)
    np.testing.assert_array_equal(np.asarray(forward(again, x)[0]), np.asarray(forward(enc, x)[0]))


def test_default_layer_is_the_final_normed_last_stage(ckpt):
    """The default single-stage output is ``last_hidden_state`` without its pooled token,
    computed here straight from transformers."""
    enc = encoders.load("dinov3_convnext", ckpt, variant="runlocal")
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        tokens = transformers.DINOv3ConvNextModel.from_pretrained(ckpt)(
            pixel_values=x).last_hidden_state
    want = tokens[:, 1:].reshape(1, 2, 3, 32).numpy()
    np.testing.assert_allclose(np.asarray(forward(enc, jnp.asarray(nhwc(x)))[0]), want,
                               atol=TOL, rtol=0)
