"""MetaCLIP 2 parity against HF ``MetaClip2Model`` (``metaclip2.reference``): the default
penultimate layer, other layers, resampled and non-square sizes, QuickGELU and GELU towers."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import metaclip2

from .utils import forward, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

TOL = 1e-4
# == metaclip2.VARIANTS["runlocal"]: width 64, 2 blocks, 2 heads, MLP 256, patch 14, 56 px
VISION = dict(hidden_size=64, intermediate_size=256, num_attention_heads=2, num_hidden_layers=2,
              image_size=56, patch_size=14)
TEXT = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
            vocab_size=64, max_position_embeddings=16)


@pytest.fixture(scope="module", params=["gelu", "quick_gelu"])
def ckpt(request, tmp_path_factory):
    """A full ``MetaClip2Model`` directory, as ``facebook/metaclip-2-worldwide-*`` ship."""
    config = transformers.MetaClip2Config(
        vision_config=VISION | dict(hidden_act=request.param),
        text_config=TEXT | dict(hidden_act=request.param), projection_dim=16)
    path = tmp_path_factory.mktemp("metaclip2")
    randomize(transformers.MetaClip2Model(config), 0).save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("hw,layer", [((56, 56), None), ((56, 56), -1), ((56, 56), 0),
                                      ((84, 84), None), ((42, 70), 1)])
def test_parity_with_hf(ckpt, hw, layer):
    h, w = hw
    enc = encoders.load("metaclip2", ckpt, image_size=h, layer=layer)
    assert enc.config.layer == (-2 if layer is None else layer)  # penultimate by default
    x = np.random.default_rng(h + w).standard_normal((2, h, w, 3)).astype(np.float32)
    with torch.no_grad():
        want = metaclip2.reference(ckpt, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
                                   enc.config)
    feats = np.asarray(forward(enc, jnp.asarray(x))[0])
    assert feats.shape == want.shape == (2, h // 14, w // 14, 64)  # CLS dropped
    np.testing.assert_allclose(feats, want, atol=TOL, rtol=0)


def test_default_layer_is_hf_penultimate_hidden_state(ckpt):
    """Independent of our indexing: HF's own ``hidden_states[-2]`` without its CLS token."""
    model = transformers.MetaClip2VisionModel.from_pretrained(ckpt).eval()
    x = np.random.default_rng(1).standard_normal((1, 56, 56, 3)).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(x).permute(0, 3, 1, 2), output_hidden_states=True)
    want = out.hidden_states[-2][:, 1:].reshape(1, 4, 4, 64).numpy()
    feats = np.asarray(forward(encoders.load("metaclip2", ckpt), jnp.asarray(x))[0])
    np.testing.assert_allclose(feats, want, atol=TOL, rtol=0)


def test_variant_sets_the_size_and_the_layout_is_required(ckpt, tmp_path):
    enc = encoders.load("metaclip2", ckpt, variant="H/14-378")
    assert enc.config.image_size == 378 and enc.config.width == 64  # config.json wins
    from safetensors.numpy import save_file

    save_file({"vision_model.embeddings.class_embedding": np.zeros(64, np.float32)},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(weights.CheckpointError, match="no HF config.json; metaclip2 reads"):
        encoders.load("metaclip2", str(tmp_path))
