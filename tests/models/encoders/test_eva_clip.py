"""EVA-02 CLIP trunk parity against timm ``Eva`` (bare and open_clip ``visual.trunk`` layout), with
``eva_clip.reference``."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import eva_clip

from .utils import forward, open_clip_with_timm_trunk, randomize, save_edited

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


def _compare(path, state_dict, image_size, layer, seed):
    x = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    enc = encoders.load("eva_clip", path, variant="runlocal", image_size=image_size, layer=layer)
    with torch.no_grad():
        ref = eva_clip.reference(path, x, enc.config)
        if layer is None and image_size == 48:  # the reference, built from our config, is timm's
            from timm.models.eva import Eva

            model = Eva(img_size=48, global_pool="token", num_classes=0, **TINY).eval()
            model.load_state_dict(state_dict)
            want = model.forward_features(x)[:, 1:].reshape(ref.shape).numpy()
            np.testing.assert_allclose(ref, want, atol=1e-6, rtol=0)
    feats, _ = forward(enc, jnp.asarray(x.permute(0, 2, 3, 1).numpy()))
    g = image_size // TINY["patch_size"]
    assert feats.shape == ref.shape == (2, g, g, 32) and enc.grid == (g, g)
    np.testing.assert_allclose(np.asarray(feats), ref, atol=TOL, rtol=0)


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
    from timm.models.eva import Eva, checkpoint_filter_fn

    model = open_clip_with_timm_trunk(
        tmp_path_factory.mktemp("open_clip_cfg"), "cambrian_test_eva02", Eva,
        dict(image_size=48, timm_pool="token", timm_proj=None), 1, img_size=48,
        pretrained_filter_fn=checkpoint_filter_fn, **TINY)
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


def test_missing_and_misshaped_tensors_are_named(timm_ckpt, tmp_path):
    sd, _ = timm_ckpt
    path = save_edited(sd, tmp_path / "a.pth", drop="blocks.1.attn.k_proj.weight")
    with pytest.raises(weights.CheckpointError, match=r"'blocks.1.attn.k_proj.weight' is missing"):
        eva_clip.load(path, variant="runlocal")
    path = save_edited(sd, tmp_path / "b.pth", replace={"pos_embed": sd["pos_embed"][:, :17]})
    with pytest.raises(weights.CheckpointError,
                       match=r"'pos_embed' has shape \(1, 17, 32\), expected \(1, 37, 32\)"):
        eva_clip.load(path, variant="runlocal")
