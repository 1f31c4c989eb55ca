"""SAM 2 Hiera trunk parity against transformers ``Sam2Model`` (its ``save_pretrained`` layout) and
SAM 2's own ``sam2*_hiera_*.pt`` layout (timm ``HieraDet``), with ``sam2.reference``."""

from __future__ import annotations

import numpy as np
import pytest

from cambrian.models import encoders, weights
from cambrian.models.encoders import sam2

from .utils import forward, nhwc, randomize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

pytestmark = pytest.mark.parity

TOL = 1e-4
# == sam2.VARIANTS["runlocal"]: stem grid 16 at 64 px, padded windows in stages 2 and 3, block 4
# global, a 3x3 position grid resized to every stem grid
TINY = dict(embed_dim=16, heads=1, blocks=(1, 2, 2, 1), global_blocks=(4,), windows=(8, 4, 6, 3),
            pos_bkg=(3, 3))


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    """A whole ``Sam2Model`` (trunk, neck, prompt encoder, mask decoder), as the hub has it."""
    backbone = dict(
        model_type="sam2_hiera_det_model", hidden_size=16, num_attention_heads=1,
        blocks_per_stage=[1, 2, 2, 1], embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[8, 4, 6, 3],
        global_attention_blocks=[4], window_positional_embedding_background_size=[3, 3],
        image_size=[64, 64])
    cfg = transformers.Sam2Config(
        vision_config=dict(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                           backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=1,
                                 num_attention_heads=2, iou_head_hidden_dim=16))
    model = randomize(transformers.Sam2Model(cfg), 0)
    path = tmp_path_factory.mktemp("sam2_hf")
    model.save_pretrained(path)
    return model, str(path)


@pytest.fixture(scope="module")
def original_ckpt(tmp_path_factory):
    """timm's HieraDet saved in SAM 2's checkpoint layout ({"model": {"image_encoder.trunk.*",
    neck, ...}})."""
    from timm.models.hieradet_sam2 import HieraDet, checkpoint_filter_fn

    kw = dict(embed_dim=16, num_heads=1, stages=TINY["blocks"], global_att_blocks=(4,),
              window_spec=TINY["windows"], global_pos_size=(3, 3), num_classes=0, global_pool="")
    model = randomize(HieraDet(**kw), 1)
    sd = {"image_encoder.trunk." + k.replace("mlp.fc1", "mlp.layers.0")
          .replace("mlp.fc2", "mlp.layers.1"): v for k, v in model.state_dict().items()}
    sd["image_encoder.neck.convs.0.conv.weight"] = torch.zeros(8, 128, 1, 1)
    # timm's converter accepts it as SAM 2's trunk
    HieraDet(**kw).load_state_dict(checkpoint_filter_fn(sd, model, "image_encoder.trunk."),
                                   strict=False)
    path = tmp_path_factory.mktemp("sam2_orig") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sd}, path)
    return model, str(path)


def _compare(path, size, layer, seed=2):
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    enc = encoders.load("sam2", path, variant="runlocal", layer=layer)
    feats, out = forward(enc, nhwc(x))
    with torch.no_grad():
        ref = sam2.reference(path, x, enc.config)
    stage = 3 if layer is None else layer % 4
    s = 4 * 2 ** stage
    assert feats.shape == ref.shape == (2, -(-h // s), -(-w // s), 16 * 2 ** stage)
    np.testing.assert_allclose(np.asarray(feats), ref, atol=TOL, rtol=0)
    assert [m.shape[-1] for m in out["stages"]] == [16, 32, 64, 128]
    assert len(out["hidden_states"]) == sum(TINY["blocks"]) + 1
    return x, ref


@pytest.mark.parametrize("size,layer", [(64, None), ((64, 96), 2), (96, -4)])
def test_hf_parity(hf_ckpt, size, layer):
    """Native, non-square, larger (odd stage grids: 3x3 at stride 32), each stage."""
    model, path = hf_ckpt
    x, ref = _compare(path, size, layer)
    if size == 64 and layer is None:  # the reference, built from our config, is the saved model's
        with torch.no_grad():
            want = model.vision_encoder.backbone(x).intermediate_hidden_states[-1]
        np.testing.assert_allclose(ref, want.numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size,layer", [(64, None), ((96, 64), 1)])
def test_original_layout_parity(original_ckpt, size, layer):
    model, path = original_ckpt
    x, ref = _compare(path, size, layer)
    if size == 64:
        with torch.no_grad():
            want = model.forward_intermediates(x, indices=4, intermediates_only=True,
                                               output_fmt="NHWC")[-1]
        np.testing.assert_allclose(ref, want.numpy(), atol=1e-6, rtol=0)


def test_config_matches_the_variant_table():
    cfg = sam2._config("L", None, None, "float32")
    assert cfg.dims == (144, 288, 576, 1152) and cfg.grid == (32, 32)
    assert cfg.out_channels == 1152 and sam2._config("L", None, 2, "float32").grid == (64, 64)
    specs = sam2.block_specs(cfg)
    assert len(specs) == 48 and [i for i, s in enumerate(specs) if s[3] == 0] == [23, 33, 43]
    assert [i for i, s in enumerate(specs) if s[4]] == [2, 8, 44]  # query pooling starts stages


def test_sizes_and_checkpoints_are_checked(original_ckpt, tmp_path):
    with pytest.raises(ValueError, match="image_size 80 must be a multiple of 32"):
        encoders.create("sam2", "runlocal", image_size=80)
    enc = encoders.create("sam2", "runlocal")
    with pytest.raises(ValueError, match=r"input 64x80 gives a 16x20 stem grid"):
        enc(np.zeros((1, 64, 80, 3), np.float32))
    sd = torch.load(original_ckpt[1])["model"]
    del sd["image_encoder.trunk.blocks.3.proj.weight"]
    torch.save({"model": sd}, tmp_path / "a.pt")
    with pytest.raises(weights.CheckpointError,
                       match=r"'image_encoder.trunk.blocks.3.proj.weight' is missing"):
        sam2.load(str(tmp_path / "a.pt"), variant="runlocal")
    torch.save({"stem.0.weight": torch.zeros(1)}, tmp_path / "b.pt")
    with pytest.raises(weights.CheckpointError, match="not a SAM 2 image encoder checkpoint"):
        sam2.load(str(tmp_path / "b.pt"), variant="runlocal")


def test_variants_match_the_published_architectures():
    """Each variant's SAM 2 layout is exactly timm's registered ``sam2_hiera_*`` trunk (shapes;
    SAM 2's MLP names), and its global blocks are timm's."""
    from timm.models.hieradet_sam2 import checkpoint_filter_fn

    registered = {"T": "sam2_hiera_tiny", "S": "sam2_hiera_small", "B+": "sam2_hiera_base_plus",
                  "L": "sam2_hiera_large"}
    assert set(registered) == {v for v in sam2.VARIANTS if v != "runlocal"}
    for variant, name in registered.items():
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=0)
        want = {k: tuple(t.shape) for k, t in model.state_dict().items()
                if not k.startswith("head.")}  # timm's classifier head: not in SAM 2
        cfg = sam2._config(variant, None, None, "float32")
        names = sam2._LAYOUTS["sam2"] | {"prefix": ""}
        ours = {n: s for n, s, _ in sam2.checkpoint_layout(cfg, names).values()}
        got = {k: tuple(v.shape) for k, v in checkpoint_filter_fn(
            {n: torch.empty(s, device="meta") for n, s in ours.items()}, model).items()}
        assert got == want, variant
        glob = [i for i, blk in enumerate(model.blocks) if not blk.is_windowed]
        assert glob == [i for i, s in enumerate(sam2.block_specs(cfg)) if s[3] == 0], variant
