"""OpenCLIP / timm ConvNeXt parity: tiny random trunks saved natively, loaded, compared in fp32."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import convnext

from .utils import check_jit_and_bf16, forward, nhwc, randomize

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip")
F = torch.nn.functional

pytestmark = pytest.mark.parity

TINY = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32))  # == convnext.VARIANTS["runlocal"]
TOL = 1e-4


def _stage_maps(trunk, x):
    """Cambrian's CLIPConvNextTower._forward: stem, then every stage, NCHW."""
    with torch.no_grad():
        h = trunk.stem(x)
        maps = []
        for stage in trunk.stages:
            h = stage(h)
            maps.append(h)
    return maps


def _run(enc, x):
    feats, out = forward(enc, jnp.asarray(nhwc(x)))
    return np.asarray(feats), out


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
    from timm.models import build_model_with_cfg, register_model
    from timm.models.convnext import ConvNeXt

    name = "cambrian_test_convnext"
    if name not in timm.list_models(name):
        def cambrian_test_convnext(pretrained=False, **kw):
            return build_model_with_cfg(ConvNeXt, name, pretrained, **TINY, **kw)
        register_model(cambrian_test_convnext)
    cfg_dir = tmp_path_factory.mktemp("open_clip_cfg")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"timm_model_name": name, "timm_model_pretrained": False,
                          "timm_pool": "", "timm_proj": "linear", "image_size": 64},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                        "layers": 1}}
    (cfg_dir / "cambrian-test-convnext.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(cfg_dir))
    model = randomize(open_clip.create_model("cambrian-test-convnext"), 1)
    out = tmp_path_factory.mktemp("convnext_open_clip")
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    return model.visual.trunk, str(out)


@pytest.mark.parametrize("image_size,layer", [(64, None), (96, None), (96, 1), (64, -4)])
def test_timm_single_stage(timm_ckpt, image_size, layer):
    model, path = timm_ckpt
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(2))
    maps = _stage_maps(model, x)
    enc = encoders.load("convnext", path, variant="runlocal", image_size=image_size, layer=layer)
    feats, out = _run(enc, x)
    ref = nhwc(maps[-1 if layer is None else layer])
    assert feats.shape == ref.shape and enc.grid == ref.shape[1:3]
    assert enc.out_channels == ref.shape[-1]
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)
    for ours, theirs in zip(out["stages"], maps):
        np.testing.assert_allclose(np.asarray(ours), nhwc(theirs), atol=TOL, rtol=0)


@pytest.mark.parametrize("image_size,num_tokens", [(64, None), (96, None), (96, 25)])
def test_open_clip_multi_stage(open_clip_ckpt, image_size, num_tokens):
    """Cambrian's multi-stage tower: every stage bilinear to one grid, concatenated on channels."""
    trunk, path = open_clip_ckpt
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(3))
    side = 6 if num_tokens is None else 5  # runlocal-multi-stage: 36 tokens
    ref = torch.cat([F.interpolate(m, size=(side, side), mode="bilinear", align_corners=False)
                     for m in _stage_maps(trunk, x)], dim=1)
    enc = convnext.load(path, variant="runlocal-multi-stage", image_size=image_size,
                        num_tokens=num_tokens)
    feats, _ = _run(enc, x)
    assert enc.out_channels == sum(TINY["dims"]) and enc.grid == (side, side)
    np.testing.assert_allclose(feats, nhwc(ref), atol=TOL, rtol=0)


def test_open_clip_single_stage_interpolated(open_clip_ckpt):
    """Single-stage tower with ``-interp<N>``: the last stage bilinear to sqrt(N) x sqrt(N)."""
    trunk, path = open_clip_ckpt
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    ref = F.interpolate(_stage_maps(trunk, x)[-1], size=(3, 3), mode="bilinear",
                        align_corners=False)
    enc = convnext.load(path, variant="runlocal", image_size=128, num_tokens=9)
    feats, _ = _run(enc, x)
    np.testing.assert_allclose(feats, nhwc(ref), atol=TOL, rtol=0)


def test_create_jit_and_bf16():
    enc = encoders.create("convnext", "runlocal-multi-stage", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
    check_jit_and_bf16(enc, x, (1, 6, 6, 80))


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


def test_wrong_variant_reports_shapes(timm_ckpt):
    _, path = timm_ckpt
    with pytest.raises(weights.CheckpointError, match="expected"):
        convnext.load(path, variant="L@512")


def test_converted_dir_round_trip(tmp_path):
    """A converted directory restores the same module (tuple fields survive the JSON config)."""
    from cambrian.models.encoders import convert

    enc = encoders.create("convnext", "runlocal-multi-stage", rngs=nnx.Rngs(1))
    convert.save(enc, str(tmp_path), family="convnext", variant="runlocal-multi-stage")
    back = encoders.load("convnext", str(tmp_path), layer=2)
    x = jax.random.normal(jax.random.key(0), (1, 64, 64, 3))
    np.testing.assert_array_equal(np.asarray(forward(back, x)[1]["stages"][3]),
                                  np.asarray(forward(enc, x)[1]["stages"][3]))
    assert back.config.used_stages == (2,) and back.grid == (6, 6) and back.out_channels == 24
