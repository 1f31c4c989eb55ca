"""DINOv3 ViT parity: tiny random transformers ``DINOv3ViTModel`` checkpoints saved with
``save_pretrained`` (the hub layout), loaded by ``dinov3.load`` and compared in fp32 with
``dinov3.reference`` at odd and non-square sizes and several layers."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import common, dinov3, layout

from .utils import check_jit_and_bf16, forward, nhwc, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=8,
            image_size=64)
CASES = {  # S/B/L-like: GELU MLP; S+/H+/7B-like: SwiGLU, and the 7B's bias-free q / k / v
    "mlp": dict(intermediate_size=128, num_register_tokens=4),
    "swiglu": dict(intermediate_size=96, num_register_tokens=2, use_gated_mlp=True,
                   hidden_act="silu", query_bias=False, value_bias=False, mlp_bias=False),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def ckpt(request, tmp_path_factory):
    cfg = transformers.DINOv3ViTConfig(**TINY, **CASES[request.param])
    path = tmp_path_factory.mktemp(f"dinov3_{request.param}")
    randomize(transformers.DINOv3ViTModel(cfg), 0).save_pretrained(path)
    return str(path)


def _pixels(h, w, seed=1):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _compare(enc, path, x):
    feats, out = forward(enc, jnp.asarray(nhwc(x)))
    with torch.no_grad():
        want = dinov3.reference(path, x, enc.config)
    assert feats.shape == want.shape
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)
    return out


@pytest.mark.parametrize("size,layer", [((64, 64), None), ((48, 80), None), ((52, 76), 1),
                                        ((64, 64), 0), ((40, 64), -1)])
def test_parity(ckpt, size, layer):
    """Native, non-square and odd sizes (the conv drops the last partial patch) and layers."""
    enc = encoders.load("dinov3", ckpt, image_size=size[0], layer=layer)
    out = _compare(enc, ckpt, _pixels(*size))
    assert out["prefix_tokens"].shape == (2, enc.config.num_prefix, 64)
    assert len(out["hidden_states"]) == enc.config.depth + 1


def test_blocks_named_as_in_transformers_module_tree(ckpt, tmp_path):
    """``model.layer.i.*`` (transformers' own module names) loads like the hub's ``layer.i.*``."""
    from safetensors.numpy import save_file

    reader = weights.open_checkpoint(ckpt)
    save_file({("model." + k if k.startswith("layer.") else k): np.asarray(reader[k])
               for k in reader}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(open(f"{ckpt}/config.json").read())
    x = jnp.asarray(nhwc(_pixels(64, 64)))
    a = forward(encoders.load("dinov3", ckpt), x)[0]
    b = forward(encoders.load("dinov3", str(tmp_path)), x)[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_config_names_the_published_layout(ckpt, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(open(f"{ckpt}/model.safetensors", "rb").read())
    with pytest.raises(weights.CheckpointError, match="no config.json.*facebook/dinov3-vit"):
        encoders.load("dinov3", str(tmp_path))


def test_variants_match_published_parameter_counts():
    """facebookresearch/dinov3 README: S 21M, S+ 29M, B 86M, L 300M, H+ 840M, 7B 6,716M."""
    published = {"S/16": 21, "S+/16": 29, "B/16": 86, "L/16": 300, "H+/16": 840,
                 "7B/16": 6716, "7B/16-sat": 6716}
    for variant, millions in published.items():
        enc = common.abstract(dinov3.DINOv3ViT, dinov3._config(variant, None, None, "float32"))
        n = sum(math.prod(s) for s in layout.param_paths(enc).values()) / 1e6
        assert abs(n - millions) <= max(1.0, 0.015 * millions), (variant, n)


def test_rope_rotates_patches_by_position_and_leaves_the_prefix():
    cos, sin = dinov3.rope_tables((3, 5), 8, 100.0)
    assert cos.shape == (15, 8) and np.allclose(cos**2 + sin**2, 1.0, atol=1e-6)
    x = jnp.ones((1, 2 + 15, 1, 8))
    y = dinov3.apply_rope(x, (cos, sin))
    np.testing.assert_array_equal(np.asarray(y[:, :2]), 1.0)
    assert not np.allclose(np.asarray(y[:, 2]), np.asarray(y[:, 3]))


def test_jit_and_bfloat16():
    x = jnp.asarray(nhwc(_pixels(64, 64)))
    check_jit_and_bf16(lambda dtype: encoders.create("dinov3", "runlocal", rngs=nnx.Rngs(0),
                                                     dtype=dtype), x, (2, 4, 4, 64))


def test_sat_weights_use_their_own_normalisation():
    assert encoders.preprocessing("dinov3", "L/16").mean == (0.485, 0.456, 0.406)
    assert encoders.preprocessing("dinov3", "7B/16-sat").std == dinov3.SAT_STD
    cfg = dinov3._config("7B/16-sat", None, None, "float32")
    assert dataclasses.asdict(cfg) == dataclasses.asdict(dinov3._config("7B/16", None, None,
                                                                        "float32"))


def test_converted_directory_gives_the_same_features(ckpt, tmp_path):
    enc = encoders.load("dinov3", ckpt, layer=1)
    layout.save(enc, str(tmp_path), family="dinov3")
    x = jnp.asarray(nhwc(_pixels(48, 64)))
    again = encoders.load("dinov3", str(tmp_path))
    assert again.config == enc.config
    np.testing.assert_array_equal(np.asarray(forward(again, x)[0]), np.asarray(forward(enc, x)[0]))


@pytest.mark.parametrize("variant", ["L/16", "7B/16-sat"])
def test_preprocessing_is_the_dinov3_readme_transform(variant):
    """The DINOv3 README's ``make_transform`` (torchvision v2: uint8 resize with antialias,
    bilinear; ImageNet or SAT-493M mean/std). It rounds its resized bytes like PIL except at
    ties: values may differ by one uint8 level, on a small fraction of them (a different filter,
    rounding rule or normalisation would move most values, or by more than a level)."""
    from torchvision.transforms import v2

    from cambrian.models.encoders import preprocess

    from .utils import cambrian_square, photos

    spec = encoders.preprocessing("dinov3", variant)
    tf = v2.Compose([v2.ToImage(), v2.Resize((224, 224), antialias=True),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)])
    level = 1 / (255 * min(spec.std))
    for name, img in photos("astronaut", "coffee").items():
        for pad in (True, False):
            src = cambrian_square(img, spec.mean, spec.image_size) if pad else img
            want = tf(src).numpy().transpose(1, 2, 0)
            err = np.abs(preprocess.apply(img, spec, pad=pad) - want)
            assert err.max() <= level + 1e-6 and (err > 1e-5).mean() < 0.01, (name, pad)


def test_default_layer_is_the_final_normed_patch_tokens(ckpt):
    """The default is ``last_hidden_state`` without CLS and registers (DINOv3's
    ``x_norm_patchtokens``), computed here straight from transformers."""
    enc = encoders.load("dinov3", ckpt)
    x = _pixels(48, 64, seed=3)
    with torch.no_grad():
        model = transformers.DINOv3ViTModel.from_pretrained(ckpt)
        tokens = model(pixel_values=x).last_hidden_state
    p = 1 + model.config.num_register_tokens
    want = tokens[:, p:].reshape(2, 6, 8, 64).numpy()
    np.testing.assert_allclose(np.asarray(forward(enc, jnp.asarray(nhwc(x)))[0]), want,
                               atol=TOL, rtol=0)
