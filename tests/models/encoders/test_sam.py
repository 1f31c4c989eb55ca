"""SAM image-encoder parity against HF ``SamModel`` and timm ``samvit`` (original SAM layout), with
``sam.reference``."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import sam

from .utils import forward, randomize, torch_pixels

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.parity

# == sam.VARIANTS["runlocal"]: grid 8 in windows of 3 (padded to 9), block 1 global
TINY = dict(width=32, depth=3, heads=2, global_layers=[1], window=3, patch=8, image_size=64)
TOL = 1e-4


def _run(enc, x):
    feats, out = forward(enc, jnp.asarray(x.permute(0, 2, 3, 1).numpy()))
    return np.asarray(feats), out


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    from transformers import SamConfig, SamModel, SamVisionConfig

    vision = SamVisionConfig(
        hidden_size=TINY["width"], num_hidden_layers=TINY["depth"],
        num_attention_heads=TINY["heads"], global_attn_indexes=TINY["global_layers"],
        window_size=TINY["window"], patch_size=TINY["patch"], image_size=TINY["image_size"],
        mlp_dim=4 * TINY["width"], output_channels=16)
    cfg = SamConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=dict(hidden_size=16, image_embedding_size=8, image_size=64,
                                   patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=1,
                                 num_attention_heads=2, iou_head_hidden_dim=16))
    model = randomize(SamModel(cfg), 0)
    path = tmp_path_factory.mktemp("sam_hf")
    model.save_pretrained(path)
    return model, str(path)


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory):
    """timm samvit with SAM's LayerNorm eps, saved in the original ``sam_vit_*.pth`` layout."""
    from timm.models.vision_transformer_sam import VisionTransformerSAM, checkpoint_filter_fn

    kw = dict(img_size=TINY["image_size"], patch_size=TINY["patch"], embed_dim=TINY["width"],
              depth=TINY["depth"], num_heads=TINY["heads"],
              global_attn_indexes=TINY["global_layers"], window_size=TINY["window"],
              use_rel_pos=True, neck_chans=16, num_classes=0,
              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    model = randomize(VisionTransformerSAM(**kw), 1)
    sd = {"image_encoder." + k.replace("mlp.fc", "mlp.lin"): v
          for k, v in model.state_dict().items()}
    # the renamed dict is what timm accepts as an original SAM checkpoint
    VisionTransformerSAM(**kw).load_state_dict(checkpoint_filter_fn(sd, model), strict=True)
    path = tmp_path_factory.mktemp("sam_orig") / "sam_vit_t.pth"
    torch.save(sd, path)
    return model, str(path)


@pytest.mark.parametrize("layer", [None, 1, 0])
def test_hf_parity(hf_ckpt, layer):
    _, path = hf_ckpt
    x = torch_pixels(64, 2)
    enc = encoders.load("sam", path, variant="runlocal", layer=layer)
    feats, out = _run(enc, x)
    with torch.no_grad():
        ref = sam.reference(path, x, enc.config)
    assert feats.shape == ref.shape == (2, *enc.grid, enc.out_channels)
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)
    assert len(out["hidden_states"]) == TINY["depth"] + 1


@pytest.mark.parametrize("image_size,layer", [(64, None), (80, None), (80, 2), (40, 1)])
def test_original_layout_any_size(original_ckpt, image_size, layer):
    """Other sizes: bicubic-antialiased position grid, linearly resized global rel-pos tables."""
    model, path = original_ckpt
    x = torch_pixels(image_size, 3)
    enc = sam.load(path, variant="runlocal", image_size=image_size, layer=layer)
    feats, _ = _run(enc, x)
    with torch.no_grad():
        ref = sam.reference(path, x, enc.config)
        if layer is None and image_size == TINY["image_size"]:  # built from our config: timm's
            last = model.forward_intermediates(x, indices=[TINY["depth"] - 1],
                                               intermediates_only=True)[0]
            np.testing.assert_allclose(ref, last.permute(0, 2, 3, 1).numpy(), atol=1e-6, rtol=0)
    assert feats.shape == ref.shape and enc.grid == ref.shape[1:3]
    np.testing.assert_allclose(feats, ref, atol=TOL, rtol=0)


def test_missing_tensor_is_named(original_ckpt, tmp_path):
    _, path = original_ckpt
    sd = torch.load(path)
    name = "image_encoder.blocks.1.attn.rel_pos_h"
    del sd[name]
    torch.save(sd, tmp_path / "sam.pth")
    with pytest.raises(weights.CheckpointError, match=rf"'{name}' is missing"):
        sam.load(str(tmp_path / "sam.pth"), variant="runlocal")


def test_misshaped_tensor_is_named(original_ckpt, tmp_path):
    _, path = original_ckpt
    sd = torch.load(path)
    name = "image_encoder.pos_embed"
    sd[name] = sd[name][:, :4, :4]
    torch.save(sd, tmp_path / "sam.pth")
    with pytest.raises(weights.CheckpointError,
                       match=rf"'{name}' has shape \(1, 4, 4, 32\), expected \(1, 8, 8, 32\)"):
        sam.load(str(tmp_path / "sam.pth"), variant="runlocal")


def test_not_a_sam_checkpoint(tmp_path):
    torch.save({"stem.0.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(weights.CheckpointError, match="not a SAM image encoder checkpoint"):
        sam.load(str(tmp_path / "x.pth"), variant="runlocal")


def test_converted_dir_round_trip(tmp_path):
    from cambrian.models.encoders import layout

    enc = encoders.create("sam", "runlocal", rngs=nnx.Rngs(1))
    layout.save(enc, str(tmp_path), family="sam", variant="runlocal")
    back = encoders.load("sam", str(tmp_path), image_size=80)
    assert back.config.global_layers == (1,) and back.grid == (10, 10)
    x = jax.random.normal(jax.random.key(0), (1, 80, 80, 3))
    np.testing.assert_array_equal(np.asarray(forward(back, x)[0]),
                                  np.asarray(forward(encoders.create(
                                      "sam", "runlocal", image_size=80, rngs=nnx.Rngs(1)), x)[0]))
