"""The PyTorch reference of upstream's inference path, on the tiny release fixtures.

Numbers in these tests are derived by hand from upstream's code (cited), not from the reference.
"""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.release import fixtures, torch_towers
from tests.release import torch_reference as ref
from tests.release.conftest import IMAGES, image

pytestmark = pytest.mark.parity


@pytest.mark.parametrize("kind", list(fixtures.KINDS))
def test_each_release_gives_finite_image_dependent_logits(references, kind):
    r = references[kind]
    out = {name: r.next_token_logits(image(*wh, seed=1), "What is it?")
           for name, wh in IMAGES.items()}
    for name, logits in out.items():
        assert logits.shape == (r.config["vocab_size"],), name
        assert np.isfinite(logits).all(), name
    # the image reaches the answer: every aspect ratio gives different logits
    names = list(out)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(out[a] - out[b]).max() > 1e-3, (a, b)


def test_image_token_counts_follow_upstreams_unpad(references):
    r = references["8b"]
    # 200 wide x 720 tall on 24x24: int(200 * 24/720) = 6 columns, pad (24 - 6) // 2 = 9 each
    # side -> 24 rows x 6 = 144 image tokens, + 24 newlines (cambrian_arch.py:251-254)
    enc = r.encode_image(image(200, 720))
    assert enc.grid == (24, 6) and enc.tokens.shape[0] == 24 * 7
    assert enc.windows[0].shape[0] == 144 and enc.masks[3].shape == (144, 16)
    enc = r.encode_image(image(256, 256))
    assert enc.grid == (24, 24) and enc.tokens.shape[0] == 24 * 25


@pytest.mark.parametrize("size,g,rows_or_cols", [
    ((517, 289), 6, (0, 1)),  # int(289 * 6/517) = 3, pad (6-3)//2 = 1: 4 rows kept, not 3
    ((200, 720), 24, (1, 9)),
    ((720, 200), 24, (0, 9)),
    ((256, 256), 24, (1, 0)),
    ((88, 55), 24, (0, 5)),  # 55 * (24/88) = 14.999...: int -> 14, pad 5 (exact maths: 4)
])
def test_letterbox_rule_hand_derived(size, g, rows_or_cols):
    assert ref.letterbox(size, g) == rows_or_cols
    axis, pad = rows_or_cols
    kept = ref.crop(torch.zeros(g, g), size, g).shape[axis]
    assert kept == g - 2 * pad


def test_window_masks_on_the_towers_own_grid():
    # ConvNeXt grid 96 under a 24-query grid (m = 4); 200x720: int(200 * 96/720) = 26 valid
    # columns, pad (96 - 26) // 2 = 35 -> columns 35..60 valid (cambrian_arch.py:218-224)
    feat = torch.zeros(96 * 96, 2)
    _, masks = ref.windows(feat, 24, (200, 720), unpad=False)
    row0 = masks.view(24, 24, 4, 4)[0]
    assert row0[7].all()  # columns 28..31: all padding -> reset to attend everywhere (:318)
    assert row0[8].sum() == 4 and row0[8][:, 3].all()  # only column 35
    assert row0[9].all()
    assert row0[15].sum() == 4 and row0[15][:, 0].all()  # only column 60
    assert row0[16].all()  # all padding again
    # the in-LLM windows are cropped to the 6 kept columns 9..14 of the 24 grid (:427): columns
    # 36..59 of the 96 grid, all valid (the partly valid windows 8 and 15 are cut off)
    wins, masks = ref.windows(feat, 24, (200, 720), unpad=True)
    assert wins.shape == (144, 16, 2) and masks.all()


def test_prompts_and_bos_as_upstreams_eval_produces_them(releases, references):
    q = "What is it?"
    # conversation.py:100-123 with the system prompt of :520-523 (newlines, indentation, spaces)
    assert ref.render_prompt("llama_3", q) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>You are Cambrian, a highly "
        "intelligent multimodal AI trained by NYU Vision X. \n    As a multimodal AI, you have the "
        "ability to process and analyze images. Whenever an image is present in the conversation, "
        "very carefully examine it and consider its content when formulating your response.\n"
        "    You should give concise responses to very simple questions, but provide thorough "
        "responses to more complex and open-ended questions. <|eot_id|><|start_header_id|>user"
        "<|end_header_id|><image>\nWhat is it?<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>")
    assert ref.render_prompt("vicuna_v1", q).endswith(
        "questions. USER: <image>\nWhat is it? ASSISTANT:")
    assert ref.render_prompt("mistral_v2", q) == "[INST] <image>\nWhat is it? [/INST]"
    tok8 = references["8b"].tokenizer
    ids = references["8b"].prompt_ids(q)
    # the Llama-3 tokenizer adds BOS and the template writes one: two BOS (mm_utils.py:212-217)
    assert ids[:3] == [tok8.bos_token_id, tok8.bos_token_id,
                       tok8.convert_tokens_to_ids("<|start_header_id|>")]
    ids13 = references["13b"].prompt_ids(q)
    assert ids13[0] == references["13b"].tokenizer.bos_token_id != ids13[1]
    ids34 = references["34b"].prompt_ids(q)  # Yi adds no BOS
    assert ids34[0] == references["34b"].tokenizer.convert_tokens_to_ids("<|im_start|>")
    for kind, r in references.items():
        p = r.prompt_ids(q)
        assert p.count(ref.IMAGE_TOKEN_INDEX) == 1
        assert p.index(ref.IMAGE_TOKEN_INDEX) == releases[kind].config["image_position"]


def test_in_llm_aggregation_reads_the_configured_image_position(tmp_path, releases, references):
    base = releases["8b"]
    shifted = fixtures.build_release(str(tmp_path / "shifted"), "8b", towers_root=base.towers_root,
                                     seed=0, image_position=base.config["image_position"] + 1)
    img = image(300, 200, seed=3)
    a = references["8b"].next_token_logits(img, "Why?")
    b = ref.Reference(shifted.checkpoint, shifted.towers_root).next_token_logits(img, "Why?")
    assert np.abs(a - b).max() > 1e-3  # same weights and prompt: only where layer s reads moved


def test_layouts_do_not_change_numbers(tmp_path, releases, references):
    """The .bin shards and the old ``llava_llama`` config hold the same model."""
    base = releases["8b"]
    other = fixtures.build_release(str(tmp_path / "bin"), "8b", towers_root=base.towers_root,
                                   seed=0, weights="bin", shards=2, model_type="llava_llama")
    assert os.path.isfile(os.path.join(other.checkpoint, "pytorch_model.bin.index.json"))
    img = image(333, 222, seed=4)
    a = references["8b"].next_token_logits(img, "Why?")
    b = ref.Reference(other.checkpoint, other.towers_root).next_token_logits(img, "Why?")
    np.testing.assert_array_equal(a, b)


def test_release_layout_keys_and_parameter_names(releases):
    r = releases["34b"]
    with open(os.path.join(r.checkpoint, "config.json")) as fh:
        cfg = json.load(fh)
    for key in ("mm_vision_tower_aux_list", "mm_vision_tower_aux_token_len_list",
                "image_token_len", "vision_hidden_size", "connector_depth", "num_query_group",
                "query_num_list", "num_of_vision_sampler_layers",
                "start_of_vision_sampler_layers", "stride_of_vision_sampler_layers",
                "image_position", "image_aspect_ratio"):
        assert key in cfg, key
    assert cfg["model_type"] == "cambrian_llama" and cfg["mm_projector_type"] == "sva"
    with open(os.path.join(r.checkpoint, "model.safetensors.index.json")) as fh:
        names = json.load(fh)["weight_map"]
    for name in ("lm_head.weight", "model.embed_tokens.weight", "model.vision_query",
                 "model.image_newline", "model.mm_projector.2.weight",
                 "model.mm_projector_aux_3.3.bias",
                 "model.vision_sampler_0.layers.2.cross_attn.k_proj_3.1.weight",
                 "model.vision_sampler_0.layers.0.pos_embed_3",
                 "model.vision_sampler_layers.1.layers.0.proj_in.weight"):
        assert name in names, name
    assert "model.vision_sampler_0.layers.0.pos_embed_0" not in names  # m = 1: no table
    for repo in ref.TOWER_REPOS.values():
        assert os.path.isdir(os.path.join(r.towers_root, repo)), repo


def test_per_group_query_sizes(tmp_path, releases):
    """query_num_list [576, 144]: group 1 samples a 12x12 grid (m = 2 and 8), then bilinear to
    24x24 (cambrian_arch.py:58-60, :395-401)."""
    rel = fixtures.build_release(str(tmp_path / "g2"), "13b",
                                 towers_root=releases["13b"].towers_root, seed=5,
                                 query_num_list=[576, 144])
    r = ref.Reference(rel.checkpoint, rel.towers_root)
    assert r.sva.vision_sampler_1.layers[0].pos_embed_0.shape == (4, 32)
    assert r.sva.vision_sampler_1.layers[0].pos_embed_3.shape == (64, 32)
    logits = r.next_token_logits(image(300, 400), "Why?")
    assert np.isfinite(logits).all()


def test_tower_names_mean_what_upstream_makes_them_mean():
    p = torch_towers.parse
    assert p("siglip/CLIP-ViT-SO400M-14-384", 576) == {
        "kind": "siglip", "repo": "timm/ViT-SO400M-14-SigLIP-384", "res": 384, "interp": 576}
    assert p("openai/clip-vit-large-patch14-336", 576) == {
        "kind": "clip", "repo": "openai/clip-vit-large-patch14-336", "res": None, "interp": 576}
    assert p("facebook/dinov2-giant-res378", 576) == {
        "kind": "dinov2", "repo": "facebook/dinov2-giant", "res": 378, "interp": 576}
    assert p("clip-convnext-XXL-multi-stage", 9216) == {
        "kind": "convnext", "repo": "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup",
        "res": 1024, "interp": 9216, "multi_stage": True}
    assert p("facebook/dinov2-giant-imagenet1k-1-layer", 576)["repo"] == \
        "facebook/dinov2-giant-imagenet1k-1-layer"
    with pytest.raises(NotImplementedError, match="not one of the release's four"):
        p("facebook/sam-vit-huge", 576)


def _bicubic_1d(values: np.ndarray, n_out: int, step: float) -> np.ndarray:
    """PyTorch's bicubic (A = -0.75, align_corners=False, edge taps clamped), output cell i
    sampling the source at (i + 0.5) * step - 0.5."""
    a, n = -0.75, len(values)

    def w(x):  # Keys' cubic convolution kernel
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a if x < 2 else 0.0

    out = np.zeros(n_out)
    for i in range(n_out):
        src = (i + 0.5) * step - 0.5
        x0 = int(np.floor(src))
        for k in range(x0 - 1, x0 + 3):
            out[i] += w(src - k) * values[min(max(k, 0), n - 1)]
    return out


def test_dinov2_positions_resize_by_scale_factor(references):
    """4.37: bicubic with scale_factor (378 // 14 + 0.1) / 37 = 27.1 / 37, so cell i samples the
    37-grid at (i + 0.5) * 37 / 27.1 - 0.5, not (i + 0.5) * 37 / 27 - 0.5 as ``size=`` would."""
    tower = next(t for t in references["8b"].towers if t.kind == "dinov2")
    emb = tower.model.embeddings
    c = emb.position_embeddings.shape[-1]
    col = np.random.default_rng(0).normal(size=37)  # varies along rows only
    table = torch.tensor(col, dtype=torch.float32).view(37, 1, 1).expand(37, 37, c)
    saved = emb.position_embeddings.data.clone()
    try:
        emb.position_embeddings.data = torch.cat([torch.zeros(1, 1, c),
                                                  table.reshape(1, 37 * 37, c)], 1)
        with torch.no_grad():
            out = emb.interpolate_pos_encoding(torch.zeros(1, 1 + 27 * 27, c), 378, 378)
    finally:
        emb.position_embeddings.data = saved
    rows = out[0, 1:, 0].view(27, 27)[:, 5].numpy()
    np.testing.assert_allclose(rows, _bicubic_1d(col, 27, 37 / 27.1), atol=1e-5)
    assert np.abs(rows - _bicubic_1d(col, 27, 37 / 27)).max() > 1e-2  # not the size= rule


def test_preprocessing_is_the_towers_own_processor(references):
    """expand2square(int(mean * 255)) + one PIL bicubic resize, then the processor: at that size
    its resize and crop change nothing (mm_utils.py:193-196)."""
    import open_clip
    from transformers import AutoImageProcessor

    img = Image.fromarray(image(300, 170, seed=2))
    for tower in references["8b"].towers:
        fill = tuple(int(m * 255) for m in tower.pad_mean)
        sq = torch_towers.expand2square(img, fill).resize((tower.image_size,) * 2,
                                                           Image.BICUBIC)
        if tower.kind in ("clip", "dinov2"):
            size = tower.image_size
            proc = AutoImageProcessor.from_pretrained(
                tower.path, backend="pil", crop_size=dict(height=size, width=size),
                size=dict(shortest_edge=size))
            want = torch.as_tensor(np.asarray(proc(sq)["pixel_values"][0]))[None]
        else:
            _, preprocess = open_clip.create_model_from_pretrained(
                "local-dir:" + tower.path)
            if tower.kind == "convnext":  # clip_convnext_encoder.py:86-87
                preprocess.transforms[0].size = tower.image_size
                preprocess.transforms[1].size = (tower.image_size, tower.image_size)
            want = preprocess(sq)[None]
        got = tower.pixels(img)
        assert got.shape == want.shape, tower.kind
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, err_msg=tower.kind)
    # the padding colour: CLIP's int(0.48145466 * 255) = 122 on a wide image's top rows
    clip = next(t for t in references["8b"].towers if t.kind == "clip")
    top = clip.pixels(img)[0, :, 0, 0]
    want = (torch.tensor([122, 116, 104]) / 255 - torch.tensor(clip.mean)) / torch.tensor(clip.std)
    np.testing.assert_allclose(top.numpy(), want.numpy(), atol=1e-6)


def test_greedy_stops_on_eos_and_skips_special_tokens(references):
    r = references["8b"]
    eot = r.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert eot in r.eos
    head = r.lm.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features)
    biased.weight.data, biased.bias.data = head.weight.data, torch.zeros(head.out_features)
    biased.bias.data[eot] = 1e4  # <|eot_id|> wins at once
    try:
        r.lm.lm_head = biased
        assert r.answer(image(100, 100), "Hi", max_new_tokens=4) == ""
    finally:
        r.lm.lm_head = head
    text = r.answer(image(100, 100), "Hi", max_new_tokens=3)
    assert isinstance(text, str) and text == text.strip()
    assert ref.clean_up_tokenization("a , b . c 've") == "a, b. c've"
