"""OpenCLIP / timm ConvNeXt parity: tiny random trunks saved natively, loaded and compared in fp32
with ``convnext.reference``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import convnext

from .utils import forward, nhwc, open_clip_with_timm_trunk, randomize

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip")

pytestmark = pytest.mark.parity

TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))  # == convnext.VARIANTS["runlocal"]
TOL = 1e-4


def _run(enc, x):
    feats, out = forward(enc, jnp.asarray(nhwc(x)))
    return np.asarray(feats), out


def _reference(path, x, config, **changes):
    with torch.no_grad():
        return convnext.reference(path, x, dataclasses.replace(config, **changes))


@pytest.fixture(scope="module")
def timm_ckpt(tmp_path_factory):
    from timm.models.convnext import ConvNeXt

    model = randomize(ConvNeXt(**TINY, num_classes=0), 0)
    path = tmp_path_factory.mktemp("convnext_timm") / "convnext.pth"
    torch.save(model.state_dict(), path)
    return model, str(path)


@pytest.fixture(scope="module")
def open_clip_ckpt(tmp_path_factory):
    """An open_clip CLIP whose visual tower is a timm trunk, saved as open_clip stores it."""
    from timm.models.convnext import ConvNeXt

    model = open_clip_with_timm_trunk(
        tmp_path_factory.mktemp("open_clip_cfg"), "cambrian_test_convnext", ConvNeXt,
        dict(timm_pool="", timm_proj="linear", image_size=64), 1, **TINY)
    out = tmp_path_factory.mktemp("convnext_open_clip")
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    return model.visual.trunk, str(out)


@pytest.mark.parametrize("image_size,layer", [(64, None), (96, None), (96, 1), (64, -4)])
def test_timm_single_stage(timm_ckpt, image_size, layer):
    model, path = timm_ckpt
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(2))
    enc = encoders.load("convnext", path, variant="runlocal", image_size=image_size, layer=layer)
    feats, out = _run(enc, x)
    ref = _reference(path, x, enc.config)
    if layer is None:  # the reference, built from our config, is the saved model
        with torch.no_grad():
            np.testing.assert_allclose(ref, nhwc(model.forward_features(x)), atol=1e-6, rtol=0)
    assert feats.shape == ref.shape and enc.grid == ref.shape[1:3]
    assert enc.out_channels == ref.shape[-1]
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)
    for stage, ours in enumerate(out["stages"]):
        np.testing.assert_allclose(np.asarray(ours), _reference(path, x, enc.config, layer=stage),
                                   atol=TOL, rtol=0)


@pytest.mark.parametrize("image_size,num_tokens", [(64, None), (96, None), (96, 25)])
def test_open_clip_multi_stage(open_clip_ckpt, image_size, num_tokens):
    """Cambrian's multi-stage tower: every stage bilinear to one grid, concatenated on channels."""
    _, path = open_clip_ckpt
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(3))
    side = 6 if num_tokens is None else 5  # runlocal-multi-stage: 36 tokens
    enc = convnext.load(path, variant="runlocal-multi-stage", image_size=image_size,
                        num_tokens=num_tokens)
    feats, _ = _run(enc, x)
    assert enc.out_channels == sum(TINY["dims"]) and enc.grid == (side, side)
    np.testing.assert_allclose(feats, _reference(path, x, enc.config), atol=TOL, rtol=0)


def test_open_clip_single_stage_interpolated(open_clip_ckpt):
    """Single-stage tower with ``-interp<N>``: the last stage bilinear to sqrt(N) x sqrt(N)."""
    _, path = open_clip_ckpt
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    enc = convnext.load(path, variant="runlocal", image_size=128, num_tokens=9)
    feats, _ = _run(enc, x)
    assert feats.shape == (1, 3, 3, 32)
    np.testing.assert_allclose(feats, _reference(path, x, enc.config), atol=TOL, rtol=0)


def _save_safetensors(path, model, edit):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    edit(sd)
    save_file(sd, str(path))
    return str(path)


def test_missing_tensor_is_named(timm_ckpt, tmp_path):
    model, _ = timm_ckpt
    name = "stages.2.blocks.1.mlp.fc1.weight"
    path = _save_safetensors(tmp_path / "m.safetensors", model, lambda sd: sd.pop(name))
    with pytest.raises(weights.CheckpointError, match=rf"'{name}' is missing"):
        convnext.load(path, variant="runlocal")


def test_misshaped_tensor_is_named(timm_ckpt, tmp_path):
    model, _ = timm_ckpt
    name = "stages.1.downsample.1.weight"

    def edit(sd):
        sd[name] = sd[name][:, :4].contiguous()

    path = _save_safetensors(tmp_path / "m.safetensors", model, edit)
    with pytest.raises(weights.CheckpointError,
                       match=rf"'{name}' has shape \(16, 4, 2, 2\), expected \(16, 8, 2, 2\)"):
        convnext.load(path, variant="runlocal")


def test_stage_sizes_come_from_the_checkpoint(timm_ckpt):
    """Widths and depths are read from the tensors (a release names its tower, not its size);
    the variant gives eps, stages and grid only."""
    _, path = timm_ckpt
    enc = convnext.load(path, variant="L@512")
    assert enc.config.dims == tuple(TINY["dims"]) and enc.config.depths == tuple(TINY["depths"])


def test_converted_dir_round_trip(tmp_path):
    """A converted directory restores the same module (tuple fields survive the JSON config)."""
    from cambrian.models.encoders import layout

    enc = encoders.create("convnext", "runlocal-multi-stage", rngs=nnx.Rngs(1))
    layout.save(enc, str(tmp_path), family="convnext", variant="runlocal-multi-stage")
    back = encoders.load("convnext", str(tmp_path), layer=2)
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(forward(back, x)[1]["stages"][3]),
                                  np.asarray(forward(enc, x)[1]["stages"][3]))
    assert back.config.used_stages == (2,) and back.grid == (6, 6) and back.out_channels == 24
