"""EVA-02 CLIP trunk parity against timm ``Eva`` (bare and open_clip ``visual.trunk`` layout)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders, weights
from cambrian.models.encoders import eva_clip

from .utils import check_jit_and_bf16, forward, randomize

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
open_clip = pytest.importorskip("open_clip")

pytestmark = pytest.mark.parity

# eva02_large_patch14_clip_* switches at the size of eva_clip.VARIANTS["runlocal"]; the rotary
# reference grid (4) differs from the position grid (6), as 16 vs 24 for the 336 px tower.
TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4 * 2 / 3,
            qkv_fused=False, swiglu_mlp=True, scale_mlp=True, scale_attn_inner=True,
            use_rot_pos_emb=True, ref_feat_shape=(4, 4))
TOL = 1e-4


def _reference(state_dict, image_size: int):
    """timm's own route to another size: build at that size, resample via checkpoint_filter_fn."""
    from timm.models.eva import Eva, checkpoint_filter_fn

    model = Eva(img_size=image_size, global_pool="token", num_classes=0, **TINY)
    model.load_state_dict(checkpoint_filter_fn(dict(state_dict), model))
    return model.eval()


def _compare(path, state_dict, image_size, layer, seed):
    ref_model = _reference(state_dict, image_size)
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if layer is None:
            ref = ref_model.forward_features(x)[:, 1:]
        elif layer == 0:  # the embeddings: patches + positions, before the first block
            ref = ref_model._pos_embed(ref_model.patch_embed(x))[0][:, 1:]
        else:
            ref = ref_model.forward_intermediates(x, indices=[layer - 1], output_fmt="NLC",
                                                 intermediates_only=True)[0]
    enc = encoders.load("eva_clip", path, variant="runlocal", image_size=image_size, layer=layer)
    feats, _ = forward(enc, jnp.asarray(x.permute(0, 2, 3, 1).numpy()))
    g = image_size // TINY["patch_size"]
    assert feats.shape == (2, g, g, 32) and enc.grid == (g, g)
    np.testing.assert_allclose(np.asarray(feats).reshape(ref.shape), ref.numpy(), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def timm_ckpt(tmp_path_factory):
    from timm.models.eva import Eva

    model = randomize(Eva(img_size=48, global_pool="token", num_classes=0, **TINY), 0)
    path = tmp_path_factory.mktemp("eva_timm") / "eva.pth"
    torch.save(model.state_dict(), path)
    return model.state_dict(), str(path)


@pytest.fixture(scope="module")
def open_clip_ckpt(tmp_path_factory):
    """open_clip CLIP around a timm Eva trunk, configured like ``EVA02-L-14-336``."""
    from timm.models import build_model_with_cfg, register_model
    from timm.models.eva import Eva, checkpoint_filter_fn

    name = "cambrian_test_eva02"
    if name not in timm.list_models(name):
        def cambrian_test_eva02(pretrained=False, **kw):
            return build_model_with_cfg(Eva, name, pretrained, img_size=48,
                                        pretrained_filter_fn=checkpoint_filter_fn, **TINY, **kw)
        register_model(cambrian_test_eva02)
    cfg_dir = tmp_path_factory.mktemp("open_clip_cfg")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 48, "timm_model_name": name,
                          "timm_model_pretrained": False, "timm_pool": "token",
                          "timm_proj": None},
           "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                        "layers": 1}}
    (cfg_dir / "cambrian-test-eva02.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(str(cfg_dir))
    model = randomize(open_clip.create_model("cambrian-test-eva02"), 1)
    out = tmp_path_factory.mktemp("eva_open_clip")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "open_clip_model.safetensors"))
    trunk = {k: v for k, v in model.visual.trunk.state_dict().items()
             if not k.startswith("head.")}  # open_clip's projection lives in the trunk head
    return trunk, str(out)


@pytest.mark.parametrize("image_size,layer", [(48, None), (64, None), (40, 1), (48, 0)])
def test_timm_parity(timm_ckpt, image_size, layer):
    sd, path = timm_ckpt
    _compare(path, sd, image_size, layer, seed=2)


@pytest.mark.parametrize("image_size,layer", [(48, None), (64, 2)])
def test_open_clip_parity(open_clip_ckpt, image_size, layer):
    sd, path = open_clip_ckpt
    _compare(path, sd, image_size, layer, seed=3)


def test_create_jit_and_bf16():
    enc = encoders.create("eva_clip", "runlocal", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 48, 48, 3))
    check_jit_and_bf16(enc, x, (1, 6, 6, 32))


def test_missing_and_misshaped_tensors_are_named(timm_ckpt, tmp_path):
    sd, _ = timm_ckpt
    bad = dict(sd)
    del bad["blocks.1.attn.k_proj.weight"]
    torch.save(bad, tmp_path / "a.pth")
    with pytest.raises(weights.CheckpointError, match=r"'blocks.1.attn.k_proj.weight' is missing"):
        eva_clip.load(str(tmp_path / "a.pth"), variant="runlocal")
    bad = dict(sd)
    bad["pos_embed"] = bad["pos_embed"][:, :17]
    torch.save(bad, tmp_path / "b.pth")
    with pytest.raises(weights.CheckpointError,
                       match=r"'pos_embed' has shape \(1, 17, 32\), expected \(1, 37, 32\)"):
        eva_clip.load(str(tmp_path / "b.pth"), variant="runlocal")
