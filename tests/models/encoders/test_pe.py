"""Perception Encoder parity against timm ``Eva`` (the ``vit_pe_*`` models, hub layout) and the
authors' ``PE-*.pt`` layout (read by timm's converter), with ``pe.reference``."""

from __future__ import annotations

import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import pe

from .utils import forward, nhwc, randomize, save_edited

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.parity

TOL = 1e-4
# tiny sizes over timm's registered switches: one registered model per pe.VARIANTS runlocal kind
SIZES = dict(embed_dim=64, depth=2, num_heads=2, mlp_ratio=4.0, patch_size=14, img_size=56,
             ref_feat_shape=(4, 4))
TIMM_MODELS = {"runlocal": "vit_pe_lang_large_patch14_448",
               "runlocal-core": "vit_pe_core_large_patch14_336",
               "runlocal-G": "vit_pe_spatial_gigantic_patch14_448"}


def _timm_model(variant: str, seed: int):
    return randomize(timm.create_model(TIMM_MODELS[variant], pretrained=False, **SIZES), seed)


@pytest.fixture(scope="module")
def timm_ckpts(tmp_path_factory):
    """variant -> (timm model, hub-layout directory with model.safetensors)."""
    from safetensors.torch import save_file

    out = {}
    for seed, variant in enumerate(TIMM_MODELS):
        model = _timm_model(variant, seed)
        path = tmp_path_factory.mktemp(f"pe_{variant}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(path / "model.safetensors"))
        out[variant] = (model, str(path))
    return out


_TO_ORIGINAL = [("patch_embed.proj", "conv1"), ("pos_embed", "positional_embedding"),
                ("cls_token", "class_embedding"), ("norm_pre", "ln_pre"),
                ("blocks.", "transformer.resblocks."), (".norm1", ".ln_1"), (".norm2", ".ln_2"),
                ("gamma_1", "ls_1.gamma"), ("gamma_2", "ls_2.gamma"),
                ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"),
                ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def _to_original(sd: dict) -> dict:
    """A timm PE state dict in perception_models names, as ``facebook/PE-Core-*.pt`` has them:
    a CLIP model whose vision tower is under ``visual.`` beside a text tower."""
    out = {"logit_scale": torch.ones(()), "token_embedding.weight": torch.zeros(8, 4)}
    pool = {}
    for k, v in sd.items():
        if k.startswith("attn_pool."):
            pool[k[len("attn_pool."):]] = v
            continue
        if k == "head.weight":
            out["visual.proj"] = v.T
            continue
        if k == "head.bias":
            continue
        if k == "norm.weight" or k == "norm.bias":
            k = "ln_post" + k[len("norm"):]
        for ours, theirs in _TO_ORIGINAL:
            k = k.replace(ours, theirs)
        if k == "positional_embedding":
            v = v[0]
        elif k == "class_embedding":
            v = v.reshape(-1)
        out["visual." + k] = v
    p = "visual.attn_pool."
    out[p + "probe"] = pool["latent"]
    out[p + "attn.in_proj_weight"] = torch.cat([pool["q.weight"], pool["kv.weight"]])
    out[p + "attn.in_proj_bias"] = torch.cat([pool["q.bias"], pool["kv.bias"]])
    for ours, theirs in [("proj", "attn.out_proj"), ("norm", "layernorm"), ("mlp.fc1", "mlp.c_fc"),
                         ("mlp.fc2", "mlp.c_proj")]:
        for w in ("weight", "bias"):
            out[f"{p}{theirs}.{w}"] = pool[f"{ours}.{w}"]
    return out


@pytest.fixture(scope="module")
def original_ckpt(timm_ckpts, tmp_path_factory):
    from timm.models.eva import checkpoint_filter_fn

    model, _ = timm_ckpts["runlocal-core"]
    sd = _to_original(model.state_dict())
    # timm's converter turns it back into exactly the timm model (attention pool and head too)
    fresh = timm.create_model(TIMM_MODELS["runlocal-core"], pretrained=False, **SIZES)
    fresh.load_state_dict(checkpoint_filter_fn(sd, fresh), strict=True)
    path = tmp_path_factory.mktemp("pe_original") / "PE-Core-tiny.pt"
    torch.save(sd, path)
    return model, str(path)


def _compare(path, variant, size, layer, seed=3):
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    enc = encoders.load("pe", path, variant=variant, layer=layer)
    feats, out = forward(enc, nhwc(x))
    with torch.no_grad():
        ref = pe.reference(path, x, enc.config)
    assert feats.shape == ref.shape == (2, h // 14, w // 14, 64)
    np.testing.assert_allclose(np.asarray(feats), ref, atol=TOL, rtol=0)
    return enc, x, ref, out


@pytest.mark.parametrize("variant,size,layer", [
    ("runlocal", 56, None), ("runlocal", 84, None), ("runlocal", (56, 98), 1),
    ("runlocal", 70, 0), ("runlocal-core", 56, None), ("runlocal-core", 42, 2),
    ("runlocal-G", 56, None), ("runlocal-G", (70, 42), 1)])
def test_timm_parity(timm_ckpts, variant, size, layer):
    """Native, interpolated (larger, smaller, odd grids), non-square; chosen layers."""
    model, path = timm_ckpts[variant]
    enc, x, ref, out = _compare(path, variant, size, layer)
    assert len(out["hidden_states"]) == 3
    assert out["prefix_tokens"].shape[1] == (variant != "runlocal-G")
    if size == 56 and layer is None:  # the reference, built from our config, is timm's model
        with torch.no_grad():
            want = model.forward_features(x)[:, enc.config.num_prefix:]
        np.testing.assert_allclose(ref, want.reshape(ref.shape).numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size,layer", [(56, None), (70, 0)])
def test_original_layout_parity(original_ckpt, size, layer):
    model, path = original_ckpt
    enc, x, ref, _ = _compare(path, "runlocal-core", size, layer)
    if size == 56:
        with torch.no_grad():
            want = model.forward_features(x)[:, 1:]
        np.testing.assert_allclose(ref, want.reshape(ref.shape).numpy(), atol=1e-6, rtol=0)


def test_rope_positions_follow_timm():
    """Column bands first, CLS offset, rescaled onto the pretraining grid (non-square grid)."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingCat

    rope = RotaryEmbeddingCat(dim=32, in_pixels=False, ref_feat_shape=(4, 4), grid_offset=1.0,
                              grid_indexing="xy")
    sin, cos = rope.get_embed(shape=(3, 5)).chunk(2, -1)
    ours = pe.rope_tables((3, 5), 32, 4, 1.0, 10000.0)
    np.testing.assert_allclose(ours[0], sin.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[1], cos.numpy(), atol=1e-6, rtol=0)


def test_wrong_variant_and_layout_are_named(timm_ckpts, tmp_path):
    model, path = timm_ckpts["runlocal"]
    with pytest.raises(weights.CheckpointError, match=r"'norm\.(weight|bias)' is missing"):
        pe.load(path, variant="runlocal-core")  # a lang tower has no final norm
    edited = save_edited(model.state_dict(), tmp_path / "pe.pth", drop="blocks.1.gamma_2")
    with pytest.raises(weights.CheckpointError, match=r"'blocks.1.gamma_2' is missing"):
        pe.load(edited, variant="runlocal")
    torch.save({"stem.0.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(weights.CheckpointError, match="not a Perception Encoder checkpoint"):
        pe.load(str(tmp_path / "x.pth"), variant="runlocal")


# every published variant -> the timm model registered for it
TIMM_REGISTERED = {
    "core-T/16@384": "vit_pe_core_tiny_patch16_384",
    "core-S/16@384": "vit_pe_core_small_patch16_384",
    "core-B/16@224": "vit_pe_core_base_patch16_224",
    "core-L/14@336": "vit_pe_core_large_patch14_336",
    "core-G/14@448": "vit_pe_core_gigantic_patch14_448",
    "lang-L/14@448": "vit_pe_lang_large_patch14_448",
    "lang-G/14@448": "vit_pe_lang_gigantic_patch14_448",
    "spatial-T/16@512": "vit_pe_spatial_tiny_patch16_512",
    "spatial-S/16@512": "vit_pe_spatial_small_patch16_512",
    "spatial-B/16@512": "vit_pe_spatial_base_patch16_512",
    "spatial-L/14@448": "vit_pe_spatial_large_patch14_448",
    "spatial-G/14@448": "vit_pe_spatial_gigantic_patch14_448"}


def test_variants_match_the_published_architectures():
    """Each variant's checkpoint layout is exactly timm's registered model (shapes, CLS token,
    layer scale, final norm; the attention pool and head are not read), at its resolution."""
    assert set(TIMM_REGISTERED) == {v for v in pe.VARIANTS if not v.startswith("runlocal")}
    for variant, name in TIMM_REGISTERED.items():
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        want = {k: tuple(t.shape) for k, t in model.state_dict().items()
                if not k.startswith(("attn_pool.", "head."))}
        cfg = pe._config(variant, None, None, "float32")
        got = {n: tuple(s) for n, s, _ in pe.timm_layout(cfg).values()}
        assert got == want, variant
        assert model.patch_embed.img_size == (cfg.image_size,) * 2, variant
