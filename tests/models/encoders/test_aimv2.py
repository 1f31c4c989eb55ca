"""AIMv2 parity against HF ``Aimv2VisionModel`` and timm ``aimv2_*`` (and Apple's layout), with
``aimv2.reference``."""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import aimv2

from .utils import forward, randomize, save_edited, torch_pixels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.parity

TOL = 1e-4
# == aimv2.VARIANTS["runlocal"]: width 32, 2 blocks, 2 heads, SwiGLU 48, patch 8, 48 px
HF_TINY = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
               image_size=48, patch_size=8, use_head=False)


def _feats(enc, x):
    return np.asarray(forward(enc, jnp.asarray(x.permute(0, 2, 3, 1).numpy()))[0])


def _timm_tiny(**kw):
    from timm.layers import RmsNorm, SwiGLU
    from timm.models.vision_transformer import VisionTransformer

    # aimv2_large_patch14_224's switches at the runlocal size
    return VisionTransformer(
        patch_size=8, embed_dim=32, depth=2, num_heads=2, class_token=False, fc_norm=False,
        mlp_ratio=1.5, global_pool="avg", qkv_bias=False, proj_bias=False, act_layer="silu",
        norm_layer=partial(RmsNorm, eps=1e-5), embed_norm_layer=partial(RmsNorm, eps=1e-5),
        mlp_layer=SwiGLU, num_classes=0, img_size=48, **kw)


@pytest.fixture(scope="module")
def hf_ckpts(tmp_path_factory):
    """variant -> (HF model, its save_pretrained dir): learned positions and sin-cos ("native")."""
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    out = {}
    for seed, (variant, native) in enumerate((("runlocal", False), ("runlocal-native", True))):
        model = randomize(Aimv2VisionModel(Aimv2VisionConfig(**HF_TINY, is_native=native)), seed)
        path = tmp_path_factory.mktemp("aimv2_hf")
        model.save_pretrained(path)
        out[variant] = (model, str(path))
    return out


@pytest.fixture(scope="module")
def timm_ckpt(tmp_path_factory):
    model = randomize(_timm_tiny(), 2)
    path = tmp_path_factory.mktemp("aimv2_timm") / "aimv2.pth"
    torch.save(model.state_dict(), path)
    return model.state_dict(), str(path)


@pytest.mark.parametrize("variant", ["runlocal", "runlocal-native"])
@pytest.mark.parametrize("layer", [None, 1, 0])
def test_hf_parity(hf_ckpts, variant, layer):
    _, path = hf_ckpts[variant]
    x = torch_pixels(48, 3)
    enc = encoders.load("aimv2", path, variant=variant, layer=layer)
    feats = _feats(enc, x)
    with torch.no_grad():
        ref = aimv2.reference(path, x, enc.config)
    assert feats.shape == ref.shape == (2, *enc.grid, enc.out_channels) == (2, 6, 6, 32)
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("image_size", [64, 40])
def test_hf_native_any_size(hf_ckpts, image_size):
    """Sin-cos positions are built for the input grid (HF's learned-position model runs at its
    checkpoint size only; other sizes are covered against timm below)."""
    _, path = hf_ckpts["runlocal-native"]
    x = torch_pixels(image_size, 4)
    enc = aimv2.load(path, variant="runlocal-native", image_size=image_size)
    with torch.no_grad():
        ref = aimv2.reference(path, x, enc.config)
    np.testing.assert_allclose(_feats(enc, x), ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("image_size,layer", [(48, None), (64, None), (40, 1)])
def test_timm_parity_any_size(timm_ckpt, image_size, layer):
    """timm resamples the learned grid (bicubic, antialiased) for other sizes."""
    sd, path = timm_ckpt
    x = torch_pixels(image_size, 5)
    enc = aimv2.load(path, variant="runlocal", image_size=image_size, layer=layer)
    with torch.no_grad():
        ref = aimv2.reference(path, x, enc.config)
        if layer is None:  # the reference, built from our config, is the saved timm model
            model = _timm_tiny(dynamic_img_size=True).eval()
            model.load_state_dict(sd)
            want = model.forward_features(x).reshape(ref.shape).numpy()
            np.testing.assert_allclose(ref, want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(_feats(enc, x), ref, atol=TOL, rtol=0)


def _apple_name(k: str) -> str:
    if k.startswith("norm."):
        return "trunk.post_trunk_norm." + k[len("norm."):]
    for a, b in (("patch_embed.", "preprocessor.patchifier."),
                 ("pos_embed", "preprocessor.pos_embed"), ("blocks.", "trunk.blocks."),
                 ("norm1", "norm_1"), ("norm2", "norm_2"),
                 ("mlp.fc1_g", "mlp.fc1"), ("mlp.fc1_x", "mlp.fc3")):
        k = k.replace(a, b)
    return k


def test_apple_layout(timm_ckpt, tmp_path):
    """Apple's original names; timm's own converter must map them back to the timm model."""
    from timm.models.vision_transformer import _convert_aimv2

    sd, _ = timm_ckpt
    apple = {_apple_name(k): v for k, v in sd.items()}
    _timm_tiny().load_state_dict(_convert_aimv2(apple, None), strict=True)
    path = str(tmp_path / "aimv2_apple.pth")
    torch.save(apple, path)
    x = torch_pixels(48, 6)
    enc = aimv2.load(path, variant="runlocal")
    with torch.no_grad():
        ref = aimv2.reference(path, x, enc.config)
    np.testing.assert_allclose(_feats(enc, x), ref, atol=TOL, rtol=0)


def test_missing_and_misshaped_tensors_are_named(timm_ckpt, tmp_path):
    sd, _ = timm_ckpt
    path = save_edited(sd, tmp_path / "a.pth", drop="blocks.0.mlp.fc1_x.weight")
    with pytest.raises(weights.CheckpointError, match=r"'blocks.0.mlp.fc1_x.weight' is missing"):
        aimv2.load(path, variant="runlocal")
    name = "blocks.1.attn.qkv.weight"
    path = save_edited(sd, tmp_path / "b.pth", replace={name: sd[name][:64]})
    msg = r"'blocks.1.attn.qkv.weight' has shape \(64, 32\), expected \(96, 32\)"
    with pytest.raises(weights.CheckpointError, match=msg):
        aimv2.load(path, variant="runlocal")
