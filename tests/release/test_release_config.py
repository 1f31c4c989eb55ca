"""Upstream tower names and config.json -> our configs; the shipped configs/cambrian/*.py."""

import copy
import json
import os

import pytest

from cambrian import config as C
from cambrian import optim
from cambrian.models import encoders
from cambrian.release import config as RC
from cambrian.release import towers as T

pytest.importorskip("torch")
from tests.release import fixtures, torch_towers  # noqa: E402

RELEASE_NAMES = [n for n, _ in RC.RELEASE_TOWERS]
UPSTREAM_ORDER = ["siglip", "clip", "dinov2", "convnext"]

# The released config.json values that define the architecture (nyu-visionx/cambrian-*/config.json
# and scripts/cambrian/finetune_cambrian_*.sh).
_COMMON = {
    "mm_vision_tower_aux_list": RELEASE_NAMES, "mm_vision_tower_aux_token_len_list":
    [576, 576, 576, 9216], "vision_tower_aux_token_len_list": [576, 576, 576, 9216],
    "image_token_len": 576, "connector_depth": 3, "num_query_group": 1, "query_num_list": [576],
    "vision_hidden_size": 1024, "connector_only": False, "start_of_vision_sampler_layers": 0,
    "mm_projector_type": "sva", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
    "image_aspect_ratio": "pad", "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
    "mm_patch_merge_type": "flat", "model_type": "cambrian_llama", "hidden_act": "silu",
    "rope_scaling": None, "tie_word_embeddings": False, "tokenizer_model_max_length": 2048}
REAL = {
    "8b": _COMMON | {"_name_or_path": "./Meta-Llama-3-8B-Instruct", "image_position": 91,
                     "num_of_vision_sampler_layers": 10, "stride_of_vision_sampler_layers": 3,
                     "hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256},
    "13b": _COMMON | {"_name_or_path": "lmsys/vicuna-13b-v1.5", "image_position": 35,
                      "num_of_vision_sampler_layers": 10, "stride_of_vision_sampler_layers": 4,
                      "hidden_size": 5120, "num_hidden_layers": 40, "vocab_size": 32000},
    "34b": _COMMON | {"_name_or_path": "NousResearch/Nous-Hermes-2-Yi-34B",
                      "image_position": 87, "num_of_vision_sampler_layers": 9,
                      "stride_of_vision_sampler_layers": 7, "hidden_size": 7168,
                      "num_hidden_layers": 60, "vocab_size": 64000},
}


def _ordered(model):
    """config.model's encoders in encoder order (a ConfigDict iterates its keys sorted)."""
    return [e for _, e in C.ordered_encoders(model.encoders)]


def _arch(model):
    """What defines the architecture in a config.model (paths left out)."""
    encs = [(e.family, e.variant, e.image_size, e.tokens, e.layer, e.pos_interp)
            for e in _ordered(model)]
    # image_position: where the released in-LLM layers read; our training reads the image's own
    # slots (-1), which is the same place for the prompts it trains on
    options = {k: v for k, v in model.connector.options.to_dict().items()
               if k != "image_position"}
    return encs, model.connector.name, options, model.template


def test_release_towers_map_to_our_encoders():
    got = [T.parse(n, k) for n, k in RC.RELEASE_TOWERS]
    assert [(t.family, t.variant, t.image_size, t.tokens) for t in got] == [
        ("siglip", "So400m/14-384", None, 576), ("clip", "L/14-336", None, 576),
        ("dinov2", "g/14", 378, 576), ("convnext", "XXL@1024-multi-stage", 1024, 9216)]
    assert [t.repo for t in got] == ["timm/ViT-SO400M-14-SigLIP-384",
                                     "openai/clip-vit-large-patch14-336", "facebook/dinov2-giant",
                                     "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup"]
    assert got[1].layer == -2 and got[2].pos_resize == "scale_factor"
    assert got[2].pad_color == (0.485, 0.456, 0.406) and got[0].pad_color[0] == 0.48145466
    for t in got:  # every target exists in its family's table
        assert t.variant in encoders.family_module(t.family).VARIANTS, t


@pytest.mark.parametrize("name,tokens", RC.RELEASE_TOWERS + (
    ("facebook/dinov2-large", 576), ("facebook/dinov2-giant-imagenet1k-1-layer-res518", 1369),
    ("siglip/CLIP-ViT-SO400M-14", 256), ("clip-convnext-L-res512", 256),
    ("timm/ViT-SO400M-14-SigLIP-384", 729)))
def test_tower_table_agrees_with_the_reference_reading_of_upstream(name, tokens):
    ours, theirs = T.parse(name, tokens), torch_towers.parse(name, tokens)
    assert (ours.family if ours.family != "clip" else "clip") == theirs["kind"]
    assert ours.repo == theirs["repo"] and ours.tokens == theirs["interp"]
    if ours.family in ("dinov2", "convnext"):
        assert ours.image_size == (theirs["res"] or T.DINOV2_CONFIG_SIZE)


def test_unknown_towers_and_missing_paths_are_errors(tmp_path):
    with pytest.raises(T.TowerError, match="reads it as 'sam'.*serves openai/clip, siglip"):
        T.parse("facebook/sam-vit-huge", 576)
    with pytest.raises(T.TowerError, match="unknown SigLIP name"):
        T.parse("siglip/ViT-L-16", 576)
    with pytest.raises(T.TowerError, match="no CLIP variant for repo 'openai/clip-vit-huge'"):
        T.parse("openai/clip-vit-huge", 576)
    t = T.parse(RELEASE_NAMES[2], 576)
    with pytest.raises(T.TowerError, match="download the hub repo facebook/dinov2-giant there"):
        T.tower_path(t, towers_root=str(tmp_path))
    with pytest.raises(T.TowerError, match="pass towers_root"):
        T.tower_path(t)
    assert T.tower_path(t, towers={RELEASE_NAMES[2]: str(tmp_path)}) == str(tmp_path)


@pytest.mark.parametrize("kind", list(fixtures.KINDS))
def test_read_a_release_directory(releases, kind):
    rel = releases[kind]
    rc = RC.read(rel.checkpoint, towers_root=rel.towers_root)
    enc = list(_ordered(rc.model))
    assert [e.family for e in enc] == UPSTREAM_ORDER  # encoder k = upstream's tower k
    assert [e.tokens for e in enc] == list(fixtures.TOKEN_LENS)
    assert enc[2].checkpoint == os.path.join(rel.towers_root, "facebook/dinov2-giant")
    num, start, stride = fixtures.KINDS[kind].in_llm
    opts = rc.model.connector.options
    assert (opts.query_side, opts.depth, opts.in_llm_layers, opts.in_llm_start,
            opts.in_llm_stride, opts.vision_hidden) == (24, 3, num, start, stride, 32)
    assert rc.template == fixtures.KINDS[kind].conv_mode
    assert rc.image_position == rel.config["image_position"]
    assert rc.model.llm.checkpoint == rc.model.tokenizer == rel.checkpoint
    if kind == "8b":
        assert len(rc.eos_token_ids) == 2  # <|end_of_text|> and <|eot_id|>


def test_config_errors_name_the_key_and_the_fix(tmp_path, releases):
    base = releases["8b"].config

    def attempt(**change):
        d = tmp_path / "r"
        d.mkdir(exist_ok=True)
        cfg = copy.deepcopy(base) | change
        (d / "config.json").write_text(json.dumps(cfg))
        return RC.read(str(d), towers_root=releases["8b"].towers_root)

    with pytest.raises(RC.ReleaseConfigError, match=r"config.json: unknown keys \['bogus'\].*"
                                                    "KNOWN_KEYS"):
        attempt(bogus=1)
    with pytest.raises(RC.ReleaseConfigError, match="mm_projector_type = 'mlp2x_gelu'"):
        attempt(mm_projector_type="mlp2x_gelu")
    with pytest.raises(RC.ReleaseConfigError, match=r"query_num_list = .576, 150.: \[150\] not"):
        attempt(query_num_list=[576, 150], num_query_group=2)
    with pytest.raises(RC.ReleaseConfigError, match="model_type = 'llama'"):
        attempt(model_type="llama")
    assert attempt(model_type="llava_llama").template == "llama_3"  # the 8B's first revision
    with pytest.raises(RC.ReleaseConfigError, match="pass conv_mode"):
        attempt(_name_or_path="/scratch/ckpt")  # leaves that config.json in place
    rc = RC.read(str(tmp_path / "r"), towers_root=releases["8b"].towers_root,
                 conv_mode="llama_3")
    assert rc.template == "llama_3"


@pytest.mark.parametrize("size", list(RC.RELEASES))
def test_shipped_configs_are_the_released_architectures(size):
    shipped = C.load(f"cambrian/{size}.py")
    assert [e.family for e in _ordered(shipped.model)] == UPSTREAM_ORDER
    paths = [e.checkpoint for e in _ordered(shipped.model)]
    RC.check(REAL[size], f"nyu-visionx/cambrian-{size}/config.json")
    released = RC.model_config(REAL[size], checkpoint="x", tower_paths=paths,
                               template=RC.infer_template(REAL[size]))
    assert _arch(shipped.model) == _arch(released)
    assert RC.RELEASES[size].image_position == REAL[size]["image_position"]
    runlocal = C.load(f"cambrian/{size}.py:runlocal")
    assert [e.family for e in _ordered(runlocal.model)] == UPSTREAM_ORDER


def test_stage_one_trains_the_sva_at_a_tenth_of_the_connector_lr():
    stage = C.load("cambrian/8b.py").stages.stage1
    assert stage.lr == 1e-3 and stage.trainable == "connector"
    params = {"connector": {"vision_query": 0, "vision_sampler_0": {"q": 0},
                            "vision_sampler_layers": {"3": 0}, "mm_projector": {"w": 0},
                            "mm_projector_aux_0": {"w": 0}, "image_newline": 0}}
    mult = optim.lr_multipliers(params, stage)["connector"]
    assert mult["vision_query"] == mult["vision_sampler_0"]["q"] == 0.1
    assert mult["vision_sampler_layers"]["3"] == 0.1
    assert mult["mm_projector"]["w"] == mult["mm_projector_aux_0"]["w"] == 1.0
    assert mult["image_newline"] == 1.0
