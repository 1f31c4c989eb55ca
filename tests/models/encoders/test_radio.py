"""C-RADIO parity against transformers ``RadioModel`` (its ``save_pretrained`` layout and the
published ``radio_model.*`` layout it converts on load), with ``radio.reference``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import preprocess, radio

from .utils import forward, nhwc, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4
# radio.VARIANTS["runlocal"] sizes; 2 summary tokens + 3 registers (runlocal says 1 + 3: the
# count must come from the weights)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=4.0,
            patch_size=8, image_size=48, max_img_size=128, num_cls_tokens=2, num_registers=3)


def _tiny_model(seed: int):
    model = randomize(transformers.RadioModel(transformers.RadioConfig(**TINY)), seed)
    with torch.no_grad():  # C-RADIO has no layer scale: transformers keeps it at 1
        for name, p in model.named_parameters():
            if "layer_scale" in name:
                p.fill_(1.0)
    return model


def _to_published(sd: dict) -> dict:
    """transformers names -> the published ``nvidia/C-RADIO*`` ``model.safetensors`` names."""
    g = "radio_model.model.patch_generator."
    out = {g + "embedder.weight": sd["embeddings.patch_projection.weight"],
           g + "pos_embed": sd["embeddings.position_embedding"],
           g + "cls_token.token": sd["embeddings.cls_register_token"],
           "radio_model.summary_idxs": sd["summary_idxs"]}
    for k, v in sd.items():
        if k.startswith("input_conditioner."):
            out["radio_model." + k] = v
        if not k.startswith("encoder.layer.") or "attention.q_proj" in k or "layer_scale" in k:
            continue
        i, rest = k.split(".")[2], ".".join(k.split(".")[3:])
        if rest.startswith(("attention.k_proj", "attention.v_proj")):
            continue
        out[f"radio_model.model.blocks.{i}.{rest.replace('attention.o_proj', 'attn.proj')}"] = v
    for i in range(TINY["num_hidden_layers"]):
        for w in ("weight", "bias"):
            out[f"radio_model.model.blocks.{i}.attn.qkv.{w}"] = torch.cat(
                [sd[f"encoder.layer.{i}.attention.{q}_proj.{w}"] for q in "qkv"])
    return out


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    model = _tiny_model(0)
    path = tmp_path_factory.mktemp("radio_hf")
    model.save_pretrained(path)
    return model, str(path)


@pytest.fixture(scope="module")
def published_ckpt(tmp_path_factory):
    """The published layout beside a remote-code ``config.json`` (no architecture fields)."""
    from safetensors.torch import save_file

    model = _tiny_model(1)
    path = tmp_path_factory.mktemp("radio_published")
    save_file({k: v.contiguous() for k, v in _to_published(model.state_dict()).items()},
              str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"args": {"model": "vit_tiny"},
                                                  "version": "c-radio_v3-h"}))
    return model, str(path)


def _compare(path, size, layer, seed=2):
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    enc = encoders.load("radio", path, variant="runlocal", layer=layer)
    feats, out = forward(enc, nhwc(x))
    ref = radio.reference(path, x, enc.config)
    assert feats.shape == ref.shape == (2, h // 8, w // 8, 64)
    np.testing.assert_allclose(np.asarray(feats), ref, atol=TOL, rtol=0)
    assert out["prefix_tokens"].shape[1] == 5 and enc.config.num_prefix == 5
    return enc


@pytest.mark.parametrize("size,layer", [(48, None), (64, None), ((48, 80), 1), ((72, 40), None),
                                        (40, 0)])
def test_hf_parity(hf_ckpt, size, layer):
    """Native, larger / smaller (odd grid), non-square both ways (CPE window); chosen layers."""
    _compare(hf_ckpt[1], size, layer)


@pytest.mark.parametrize("size,layer", [(48, None), ((56, 40), 2)])
def test_published_layout_parity(published_ckpt, size, layer):
    _compare(published_ckpt[1], size, layer)


def test_preprocessing_matches_the_input_conditioner(hf_ckpt):
    """HF on [0, 1] pixels (its own conditioner) == ours on ``radio.preprocessing`` pixels."""
    model, path = hf_ckpt
    raw = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = model(raw).features.reshape(1, 6, 6, 64).numpy()
    enc = encoders.load("radio", path, variant="runlocal")
    spec = radio.preprocessing("runlocal")
    feats, _ = forward(enc, preprocess.normalize(nhwc(raw) * 255.0, spec))
    np.testing.assert_allclose(np.asarray(feats), want, atol=TOL, rtol=0)


def test_size_not_a_multiple_of_the_patch_is_an_error(hf_ckpt):
    enc = encoders.load("radio", hf_ckpt[1], variant="runlocal")
    with pytest.raises(ValueError, match=r"input 50x48 is not a multiple of the patch size 8"):
        enc(np.zeros((1, 50, 48, 3), np.float32))
    with pytest.raises(ValueError, match="image_size 50 is not a multiple of the patch size 8"):
        encoders.create("radio", "runlocal", image_size=50)


def test_unsupported_checkpoints_are_named(published_ckpt, tmp_path):
    from safetensors.torch import save_file

    sd = _to_published(published_ckpt[0].state_dict())
    bad = dict(sd, **{"radio_model.model.blocks.0.mlp.norm.weight": torch.ones(256)})
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "a.safetensors"))
    with pytest.raises(weights.CheckpointError, match=r"mlp.norm.weight'.*MLP LayerNorm"):
        radio.load(str(tmp_path / "a.safetensors"), variant="runlocal")
    bad = dict(sd, **{"radio_model.input_conditioner.norm_mean": torch.full((3, 1, 1), 0.5)})
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "b.safetensors"))
    with pytest.raises(weights.CheckpointError, match=r"norm_mean is \[0.5, 0.5, 0.5\]"):
        radio.load(str(tmp_path / "b.safetensors"), variant="runlocal")
    del sd["radio_model.model.blocks.1.attn.qkv.bias"]
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "c.safetensors"))
    with pytest.raises(weights.CheckpointError, match=r"'radio_model.model.blocks.1.attn.qkv.bias"
                                                      r"' is missing"):
        radio.load(str(tmp_path / "c.safetensors"), variant="runlocal")
    save_file({"stem.weight": torch.zeros(1)}, str(tmp_path / "d.safetensors"))
    with pytest.raises(weights.CheckpointError, match="not a C-RADIO checkpoint"):
        radio.load(str(tmp_path / "d.safetensors"), variant="runlocal")
