"""ViT encoder families: shapes/jit of random encoders, and parity with the PyTorch references
(each family's ``reference``, the function ``convert --verify`` runs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import encoders

from .utils import forward

VIT_FAMILIES = ["clip", "siglip", "dfn_clip", "dinov2", "mae", "mocov3", "ijepa", "supvit", "dpt"]


@pytest.mark.parametrize("family", VIT_FAMILIES)
def test_runlocal_encoder_shapes_and_jit(family):
    enc = encoders.create(family, "runlocal", image_size=64, rngs=nnx.Rngs(0))
    pixels = jax.random.normal(jax.random.key(1), (2, 64, 64, 3))
    feats, out = enc(pixels)
    p = enc.config.patch
    assert enc.grid == (64 // p, 64 // p)
    assert feats.shape == (2, *enc.grid, enc.out_channels) and feats.dtype == jnp.float32
    assert len(out["hidden_states"]) == enc.config.depth + 1
    jitted = forward(enc, pixels)[0]
    np.testing.assert_allclose(jitted, feats, atol=1e-5)


# --- parity with the PyTorch references --------------------------------------------------------
# Each case builds a tiny reference model with random weights and saves it in its native format;
# the family's ``reference`` computes the features from that checkpoint. Tokens, position tables
# and norms are re-randomised at O(1) scale so attention patterns, position-embedding resampling
# and norm parameters all move the output well beyond the tolerance. Where the reference model is
# built from our config (timm and open_clip files carry none), ``direct`` gives the saved model's
# own forward, which the reference must reproduce at the native size.

ATOL = 1e-4


def _scramble(model, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and name.endswith(("weight", "lambda1", "gamma")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif any(k in name for k in ("pos", "token", "class_embedding", "position")):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    return model.eval()


def _grid(tokens, num_prefix):
    t = tokens[:, num_prefix:].detach().numpy()
    side = int(round(t.shape[1] ** 0.5))
    return t.reshape(t.shape[0], side, side, t.shape[-1])


def _hf_kw(**kw):
    return dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                **kw)


def case_clip(tmp):
    import json

    import transformers as T

    # a full CLIPModel whose config.json, like the hub's older ones, lists only non-defaults
    vision = dict(hidden_size=64, intermediate_size=256, num_attention_heads=2,
                  num_hidden_layers=2, image_size=56, patch_size=14)
    text = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1,
                vocab_size=64, max_position_embeddings=16)
    m = _scramble(T.CLIPModel(T.CLIPConfig(vision_config=vision, text_config=text,
                                           projection_dim=16)))
    m.save_pretrained(tmp)
    (tmp / "config.json").write_text(json.dumps({"model_type": "clip", "projection_dim": 16,
                                                 "vision_config": vision, "text_config": text}))
    return dict(family="clip", path=tmp, sizes=(56, 84), layers=(None, -1, 1))


def case_siglip(tmp):
    import transformers as T

    m = _scramble(T.SiglipVisionModel(T.SiglipVisionConfig(**_hf_kw(image_size=56, patch_size=14))))
    m.save_pretrained(tmp)
    return dict(family="siglip", path=tmp, sizes=(56, 84), layers=(None, 1))


def case_siglip2(tmp):
    import transformers as T

    m = _scramble(T.Siglip2VisionModel(T.Siglip2VisionConfig(**_hf_kw(num_patches=16,
                                                                      patch_size=14))))
    m.save_pretrained(tmp)
    return dict(family="siglip", path=tmp, sizes=(56, 42, 84), layers=(None, 1))


def _timm_vit(img_size, patch, **kw):
    import timm.models.vision_transformer as tv

    return _scramble(tv.VisionTransformer(
        img_size=img_size, patch_size=patch, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0,
        num_classes=0, dynamic_img_size=True, **kw))


def _timm_direct(m, num_prefix):
    return lambda px: _grid(m.forward_features(px), num_prefix)


def case_siglip_timm(tmp):
    from safetensors.torch import save_file

    m = _timm_vit(56, 14, class_token=False, global_pool="map")
    save_file({"visual.trunk." + k: v for k, v in m.state_dict().items()},
              str(tmp / "open_clip_model.safetensors"))
    return dict(family="siglip", path=tmp, sizes=(56, 84), layers=(None, 1),
                kw=dict(variant="runlocal"), direct=_timm_direct(m, 0))


def case_siglip_timm_by_name(tmp):
    """timm's own ``vit_so400m_patch14_siglip_384`` (what the open_clip hub repo Cambrian loads
    names), shrunk: its activation and layout come from timm's definition, not from ours."""
    import timm
    from safetensors.torch import save_file

    m = _scramble(timm.create_model("vit_so400m_patch14_siglip_384", pretrained=False,
                                    embed_dim=32, depth=2, num_heads=16, img_size=56))
    save_file({"visual.trunk." + k: v for k, v in m.state_dict().items()},
              str(tmp / "open_clip_model.safetensors"))
    return dict(family="siglip", path=tmp, sizes=(56,), layers=(None,),
                kw=dict(variant="So400m/14-384"), direct=_timm_direct(m, 0))


def case_mae_timm(tmp):
    import torch

    m = _timm_vit(64, 16)
    torch.save(m.state_dict(), tmp / "pytorch_model.bin")
    return dict(family="mae", path=tmp / "pytorch_model.bin", sizes=(64, 48, 96),
                layers=(None, 1), kw=dict(variant="runlocal"), direct=_timm_direct(m, 1))


def case_mae_hf(tmp):
    import transformers as T

    m = _scramble(T.ViTMAEModel(T.ViTMAEConfig(**_hf_kw(image_size=64, patch_size=16),
                                               mask_ratio=0.0)))
    m.save_pretrained(tmp)
    return dict(family="mae", path=tmp, sizes=(64, 96), layers=(None, 1))


def case_mocov3(tmp):
    import torch

    m = _timm_vit(64, 16)
    sd = {"module.base_encoder." + k: v for k, v in m.state_dict().items()}
    sd["module.momentum_encoder.cls_token"] = torch.zeros(1, 1, 64)
    torch.save({"epoch": 300, "state_dict": sd}, tmp / "vit-b-300ep.pth.tar")
    return dict(family="mocov3", path=tmp / "vit-b-300ep.pth.tar", sizes=(64, 96),
                layers=(None, 1), kw=dict(variant="runlocal"), direct=_timm_direct(m, 1))


def case_supvit(tmp):
    from safetensors.torch import save_file

    m = _timm_vit(64, 16)
    save_file(dict(m.state_dict()), str(tmp / "model.safetensors"))
    return dict(family="supvit", path=tmp, sizes=(64, 96), layers=(None, 0),
                kw=dict(variant="runlocal"), direct=_timm_direct(m, 1))


def case_dinov2(tmp):
    import transformers as T

    m = _scramble(T.Dinov2Model(T.Dinov2Config(**_hf_kw(image_size=56, patch_size=14))))
    m.save_pretrained(tmp)
    return dict(family="dinov2", path=tmp, sizes=(56, 84), layers=(None, 1))


def case_dinov2_swiglu(tmp):
    import transformers as T

    cfg = T.Dinov2Config(**_hf_kw(image_size=56, patch_size=14), use_swiglu_ffn=True)
    _scramble(T.Dinov2Model(cfg)).save_pretrained(tmp)
    return dict(family="dinov2", path=tmp, sizes=(56, 70), layers=(None, 2))


def case_dinov2_registers(tmp):
    import transformers as T

    cfg = T.Dinov2WithRegistersConfig(**_hf_kw(image_size=56, patch_size=14),
                                      num_register_tokens=4)
    _scramble(T.Dinov2WithRegistersModel(cfg)).save_pretrained(tmp)
    return dict(family="dinov2", path=tmp, sizes=(56, 42, 84), layers=(None, 1))


def case_ijepa(tmp):
    import transformers as T

    m = _scramble(T.IJepaModel(T.IJepaConfig(**_hf_kw(image_size=56, patch_size=14))))
    m.save_pretrained(tmp)
    return dict(family="ijepa", path=tmp, sizes=(56, 84), layers=(None, 1))


def case_dpt(tmp):
    import transformers as T

    kw = _hf_kw(image_size=64, patch_size=16) | dict(num_hidden_layers=4)
    cfg = T.DPTConfig(**kw, neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                      backbone_out_indices=[0, 1, 2, 3])
    _scramble(T.DPTForDepthEstimation(cfg)).save_pretrained(tmp)
    return dict(family="dpt", path=tmp, sizes=(64, 96), layers=(None, 1))


def case_dfn_clip(tmp):
    import open_clip
    import torch

    vision = dict(image_size=56, layers=2, width=64, head_width=32, patch_size=14, mlp_ratio=4.0)
    text = dict(context_length=8, vocab_size=64, width=32, heads=2, layers=1)
    m = _scramble(open_clip.model.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=text,
                                       quick_gelu=True))
    torch.save(m.state_dict(), tmp / "open_clip_pytorch_model.bin")
    m.visual.output_tokens = True  # the patch tokens after ln_post, which Cambrian takes
    return dict(family="dfn_clip", path=tmp, sizes=(56, 84), layers=(None, 1),
                kw=dict(variant="runlocal"), direct=lambda px: _grid(m.visual(px)[1], 0))


CASES = {name[5:]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}


@pytest.mark.parity
@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_reference(case, tmp_path):
    import torch

    c = CASES[case](tmp_path)
    reference = encoders.family_module(c["family"]).reference
    rng = np.random.default_rng(0)
    for size in c["sizes"]:
        x = rng.standard_normal((2, size, size, 3)).astype(np.float32)
        px = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        for layer in c["layers"]:
            enc = encoders.load(c["family"], str(c["path"]), image_size=size, layer=layer,
                                **c.get("kw", {}))
            feats, _ = enc(jnp.asarray(x))
            with torch.no_grad():
                want = reference(str(c["path"]), px, enc.config)
                if "direct" in c and size == c["sizes"][0] and layer is None:
                    np.testing.assert_allclose(want, c["direct"](px), atol=1e-6, rtol=0)
            assert feats.shape == want.shape, (size, layer)
            assert enc.grid == want.shape[1:3] and enc.out_channels == want.shape[-1]
            err = float(np.abs(np.asarray(feats) - want).max())
            assert err <= ATOL, f"{case} size={size} layer={layer}: max abs err {err:.2e}"


@pytest.mark.parity
@pytest.mark.parametrize("method", ["bicubic", "bilinear", "bicubic_aa", "bilinear_aa",
                                    "bicubic_scale"])
def test_resample_grid_matches_torch_interpolate(method):
    import torch
    import torch.nn.functional as F

    from cambrian.models.encoders import vit

    mode, aa = method.removesuffix("_aa").removesuffix("_scale"), method.endswith("_aa")
    g = np.random.default_rng(0).standard_normal((7, 5, 3)).astype(np.float32)
    for size in [(7, 5), (16, 11), (3, 2), (24, 4), (1, 9)]:
        if method == "bicubic_scale" and size == g.shape[:2]:
            continue  # the same grid: 4.37 returns the table as it is, as resample_grid does
        # "bicubic_scale": transformers 4.37's DINOv2, scale_factor=(n + 0.1) / N, not size=n
        how = dict(scale_factor=tuple((n + 0.1) / m for n, m in zip(size, g.shape))) \
            if method == "bicubic_scale" else dict(size=size)
        want = F.interpolate(torch.from_numpy(g).permute(2, 0, 1)[None], mode=mode,
                             align_corners=False, antialias=aa, **how)[0].permute(1, 2, 0).numpy()
        assert want.shape[:2] == size
        got = np.asarray(vit.resample_grid(jnp.asarray(g), size, method))
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"{method} {size}")
