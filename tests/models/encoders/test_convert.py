"""``python -m cambrian.models.encoders.convert``: native checkpoint -> converted directory that
``encoders.load`` accepts, with identical features; ``--verify`` against the family's PyTorch
reference."""

from __future__ import annotations

import json
import re
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cambrian.models import encoders
from cambrian.models.encoders import convert, layout
from cambrian.models.weights import CheckpointError

from .utils import forward, param_dtypes, randomize, write_hf_dinov2


def _feats(enc, size, seed=0):
    x = jax.random.normal(jax.random.key(seed), (2, size, size, 3))
    return np.asarray(forward(enc, x)[0])


def test_converted_dir_loads_with_identical_features(tmp_path, capsys):
    src, dst = write_hf_dinov2(tmp_path / "src"), tmp_path / "dst"
    assert convert.main(["--family", "dinov2", "--src", str(src), "--dst", str(dst),
                         "--variant", "runlocal"]) == 0
    assert "converted dinov2" in capsys.readouterr().out
    meta = json.loads((dst / layout.MARKER).read_text())
    assert meta["family"] == "dinov2" and meta["config"]["width"] == 64
    for size, layer in ((56, None), (84, 1), (42, 0)):  # native, up- and down-sampled positions
        native = encoders.load("dinov2", str(src), variant="runlocal", image_size=size,
                               layer=layer)
        converted = encoders.load("dinov2", str(dst), image_size=size, layer=layer)
        assert converted.grid == native.grid == (size // 14, size // 14)
        np.testing.assert_array_equal(_feats(converted, size), _feats(native, size))
    for path, kw in ((src, dict(variant="runlocal")), (dst, {})):  # native and converted
        low = encoders.load("dinov2", str(path), dtype="bfloat16", **kw)
        assert low.config.dtype == "bfloat16" and param_dtypes(low) == {jnp.dtype("bfloat16")}


def test_converted_dir_of_another_family_is_refused(tmp_path):
    src, dst = write_hf_dinov2(tmp_path / "src"), tmp_path / "dst"
    convert.main(["--family", "dinov2", "--src", str(src), "--dst", str(dst),
                  "--variant", "runlocal"])
    with pytest.raises(CheckpointError, match="converted for encoder family 'dinov2'"):
        encoders.load("clip", str(dst))


def test_native_dirs_are_not_converted_dirs(tmp_path):
    assert layout.restore(str(write_hf_dinov2(tmp_path)), "dinov2") is None


def _image(tmp_path):
    from PIL import Image

    skd = pytest.importorskip("skimage.data")
    path = tmp_path / "chelsea.png"
    Image.fromarray(skd.chelsea()).save(path)
    return str(path)


def _verify(capsys, *args):
    assert convert.main(list(args)) == 0
    out = capsys.readouterr().out
    return float(re.search(r"max abs feature error vs reference = (\S+)", out).group(1))


@pytest.mark.parity
def test_verify_hf_checkpoint(tmp_path, capsys):
    import transformers as T

    cfg = T.Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=256, image_size=56, patch_size=14,
                                      num_register_tokens=4)
    T.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path / "src")
    err = _verify(capsys, "--family", "dinov2", "--src", str(tmp_path / "src"), "--dst",
                  str(tmp_path / "dst"), "--image-size", "70", "--verify", _image(tmp_path))
    assert err <= 1e-4


@pytest.mark.parity
def test_verify_timm_checkpoint(tmp_path, capsys):
    import timm.models.vision_transformer as tv
    import torch

    m = tv.VisionTransformer(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2,
                             num_classes=0)
    torch.save({"state_dict": {"module.base_encoder." + k: v for k, v in m.state_dict().items()}},
               tmp_path / "ckpt.pth.tar")
    err = _verify(capsys, "--family", "mocov3", "--variant", "runlocal", "--src",
                  str(tmp_path / "ckpt.pth.tar"), "--dst", str(tmp_path / "dst"),
                  "--verify", _image(tmp_path))
    assert err <= 1e-4


@pytest.mark.parity
def test_verify_open_clip_checkpoint(tmp_path, capsys):
    import open_clip
    import torch

    vision = dict(image_size=56, layers=2, width=64, head_width=32, patch_size=14)
    text = dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    m = open_clip.model.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text, quick_gelu=True)
    (tmp_path / "src").mkdir()
    torch.save(m.state_dict(), tmp_path / "src" / "open_clip_pytorch_model.bin")
    err = _verify(capsys, "--family", "dfn_clip", "--variant", "runlocal", "--src",
                  str(tmp_path / "src"), "--dst", str(tmp_path / "dst"), "--image-size", "84",
                  "--verify", _image(tmp_path))
    assert err <= 1e-4


# --- --verify for the families with their own module (not ViTConfig) --------------------------
# Each case writes a tiny randomised reference model in a native layout and names the variant of
# the same architecture; parameters are O(1) so that every tensor moves the features.

def _torch_save(state_dict, path, prefix=""):
    import torch

    torch.save({prefix + k: v for k, v in state_dict.items()}, path)
    return path


def _case_convnext(tmp):
    from timm.models.convnext import ConvNeXt

    m = randomize(ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=0), 0)
    src = _torch_save(m.state_dict(), tmp / "open_clip_pytorch_model.bin", "visual.trunk.")
    return dict(src=src, variant="runlocal-multi-stage", size=96)  # every stage resized to 6x6


def _case_sam(tmp):
    import torch
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    m = randomize(VisionTransformerSAM(
        img_size=64, patch_size=8, embed_dim=32, depth=3, num_heads=2, global_attn_indexes=[1],
        window_size=3, use_rel_pos=True, neck_chans=16, num_classes=0,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)), 1)
    sd = {k.replace("mlp.fc", "mlp.lin"): v for k, v in m.state_dict().items()}
    src = _torch_save(sd, tmp / "sam_vit_t.pth", "image_encoder.")  # the original SAM layout
    return dict(src=src, variant="runlocal", size=80)


def _case_eva_clip(tmp):
    from timm.models.eva import Eva

    m = randomize(Eva(img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                      mlp_ratio=4 * 2 / 3, qkv_fused=False, swiglu_mlp=True, scale_mlp=True,
                      scale_attn_inner=True, use_rot_pos_emb=True, ref_feat_shape=(4, 4),
                      global_pool="token", num_classes=0), 2)
    return dict(src=_torch_save(m.state_dict(), tmp / "eva.pth"), variant="runlocal", size=64)


def _case_aimv2(tmp):
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    cfg = Aimv2VisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=2, image_size=48, patch_size=8, use_head=False)
    randomize(Aimv2VisionModel(cfg), 3).save_pretrained(tmp / "src")
    return dict(src=tmp / "src", variant="runlocal", size=None)  # HF runs at its own size only


VERIFY_CASES = {name[len("_case_"):]: fn for name, fn in dict(globals()).items()
                if name.startswith("_case_")}


@pytest.mark.parity
@pytest.mark.parametrize("family", sorted(VERIFY_CASES))
def test_verify_other_families(family, tmp_path, capsys):
    c = VERIFY_CASES[family](tmp_path)
    args = ["--family", family, "--variant", c["variant"], "--src", str(c["src"]), "--dst",
            str(tmp_path / "dst"), "--verify", _image(tmp_path)]
    if c["size"]:
        args += ["--image-size", str(c["size"])]
    assert _verify(capsys, *args) <= 1e-4
