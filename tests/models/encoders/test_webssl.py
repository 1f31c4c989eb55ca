"""Web-SSL parity: tiny random checkpoints in the two published layouts -- Web-DINO as
transformers ``Dinov2Model`` (SwiGLU, layer scale, no registers), Web-MAE as ``ViTModel`` --
saved with ``save_pretrained``, loaded by ``webssl.load`` and compared in fp32 with
``webssl.reference`` at native, interpolated and non-square sizes and several layers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import preprocess, webssl

from .utils import forward, nhwc, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
            patch_size=14, layer_norm_eps=1e-6)


def _web_dino(path):
    cfg = transformers.Dinov2Config(**TINY, mlp_ratio=4, use_swiglu_ffn=True)
    randomize(transformers.Dinov2Model(cfg), 0).save_pretrained(path)
    return "runlocal"


def _web_mae(path):
    cfg = transformers.ViTConfig(**TINY, intermediate_size=256, qkv_bias=True)
    randomize(transformers.ViTModel(cfg), 1).save_pretrained(path)
    return "runlocal-mae"


@pytest.fixture(scope="module", params=["dino", "mae"])
def ckpt(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"webssl_{request.param}")
    variant = {"dino": _web_dino, "mae": _web_mae}[request.param](path)
    return str(path), variant


@pytest.mark.parametrize("size,layer", [((56, 56), None), ((84, 84), None), ((56, 84), 1),
                                        ((70, 56), 0)])
def test_parity(ckpt, size, layer):
    path, variant = ckpt
    enc = encoders.load("webssl", path, variant=variant, image_size=size[0], layer=layer)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(size[1]))
    feats, _ = forward(enc, jnp.asarray(nhwc(x)))
    with torch.no_grad():
        want = webssl.reference(path, x, enc.config)
    assert feats.shape == want.shape == (2, size[0] // 14, size[1] // 14, 64)
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)


def test_variant_of_another_architecture_is_refused(ckpt):
    path, variant = ckpt
    other = {"runlocal": "runlocal-mae", "runlocal-mae": "runlocal"}[variant]
    with pytest.raises(weights.CheckpointError, match=f"variant '{other}' is width 64"):
        encoders.load("webssl", path, variant=other)


def test_checkpoint_without_config_names_the_published_layout(tmp_path):
    path = tmp_path / "ckpt"
    _web_dino(path)
    (path / "config.json").unlink()
    with pytest.raises(weights.CheckpointError, match="no config.json.*facebook/webssl"):
        encoders.load("webssl", str(path))


def test_web_dino_ffn_widths_are_transformers_swiglu_sizing():
    """Each Web-DINO variant's SwiGLU width is what transformers builds for a Dinov2Config of
    that width with ``use_swiglu_ffn`` (the hub configs): built on the meta device."""
    from transformers.models.dinov2 import modeling_dinov2

    for name, v in webssl.VARIANTS.items():
        if not name.startswith("dino"):
            continue
        cfg = transformers.Dinov2Config(hidden_size=v["width"], use_swiglu_ffn=True)
        with torch.device("meta"):
            ffn = modeling_dinov2.Dinov2SwiGLUFFN(cfg)
        assert ffn.gate_proj.out_features == ffn.up_proj.out_features == v["mlp_dim"], name
        assert v["width"] % v["heads"] == 0, name


@pytest.mark.parametrize("pad", [True, False], ids=["pad", "nopad"])
def test_preprocessing_is_the_demos_processor(pad):
    """``demo_webdino.py``: the checkpoint's HF processor (PIL backend) with the centre crop off
    and ``size`` = the square resolution; Cambrian pads to a square with its mean first."""
    from .utils import cambrian_square, photos

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for variant in ("dino1b", "dino7b@518"):
        spec = encoders.preprocessing("webssl", variant)
        proc = transformers.BitImageProcessorPil(
            size={"height": spec.image_size, "width": spec.image_size}, do_center_crop=False,
            resample=3, image_mean=mean, image_std=std)
        for name, img in photos("astronaut", "coffee").items():
            want = proc(images=cambrian_square(img, mean, spec.image_size) if pad else img,
                        return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
            got = preprocess.apply(img, spec, pad=pad)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{variant} {name}")


def test_protocol_config_covers_every_released_tower():
    """``webssl_protocol.py:model=NAME`` for every published variant: it builds, reads that
    variant's hub repo, and an unknown tower is refused with the list."""
    from cambrian import config as C

    released = [v for v in webssl.VARIANTS if not v.startswith("runlocal")]
    for name in released:  # repo names as in the facebookresearch/webssl README table
        tower, _, res = name.partition("@")
        size, _, data = tower.partition("-")
        data = f"{data}2b" if data else "full8b" if size == "dino7b" else "full2b"
        enc = C.load(f"encoders/webssl_protocol.py:model={name}").model.encoders.webssl
        assert enc.variant == name, name
        assert enc.checkpoint.endswith(f"/facebook/webssl-{size}-{data}-{res or 224}"), name
    with pytest.raises(C.ConfigError, match="model='dino9b'.*dino300m"):
        C.load("encoders/webssl_protocol.py:model=dino9b")


def test_default_layer_is_what_the_demos_extract(ckpt):
    """``demo_webdino.py`` / ``demo_webmae.py``: ``last_hidden_state[:, 1:]`` (final norm, CLS
    dropped), computed here straight from transformers, not through ``webssl.reference``."""
    path, _ = ckpt
    enc = encoders.load("webssl", path)
    x = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        tokens = transformers.AutoModel.from_pretrained(path)(pixel_values=x).last_hidden_state
    want = tokens[:, 1:].reshape(1, 4, 4, 64).numpy()
    np.testing.assert_allclose(np.asarray(forward(enc, jnp.asarray(nhwc(x)))[0]), want,
                               atol=TOL, rtol=0)
