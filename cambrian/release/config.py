"""A released Cambrian-1 ``config.json`` -> our ``config.model``; the released models' recipes.

``read(checkpoint, towers_root=..., towers=...)`` reads a local copy of nyu-visionx/cambrian-8b,
-13b or -34b (``model_type`` ``cambrian_llama``, or ``llava_llama`` in the 8B's first revision):
towers in upstream order with their token lengths (``towers.py``), the SVA options, the in-LLM
layers, the LLM (the release directory itself: its safetensors hold the LLM) and the chat
template, plus what has no place in ``config.model`` yet (``image_position``, eos ids). Keys the
released configs do not have, and values the released models do not use, are errors that name the
key, the file and what to do: a silently ignored key could change the numbers.

``RELEASES`` holds the three models as the paper and upstream's scripts describe them
(``scripts/cambrian/{pretrain,finetune}_cambrian_*.sh``); ``recipe(size, arg)`` is the whole
train-from-scratch config of ``configs/cambrian/<size>.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import ml_collections as mlc

from cambrian import config as C
from cambrian.release import towers as T


class ReleaseConfigError(ValueError):
    """An upstream config.json this loader cannot honour; the message names key, file and fix."""


# Every key of the released config.json files (LlamaConfig's, upstream's training arguments it
# stores, and transformers' bookkeeping); values are checked below where they change numbers.
LLM_KEYS = {
    "_name_or_path", "architectures", "attention_bias", "attention_dropout", "bos_token_id",
    "eos_token_id", "pad_token_id", "hidden_act", "hidden_size", "initializer_range",
    "intermediate_size", "max_position_embeddings", "model_type", "num_attention_heads",
    "num_hidden_layers", "num_key_value_heads", "pretraining_tp", "rms_norm_eps", "rope_scaling",
    "rope_theta", "tie_word_embeddings", "torch_dtype", "transformers_version", "use_cache",
    "vocab_size"}
CAMBRIAN_KEYS = {
    "connector_depth", "connector_only", "freeze_mm_mlp_adapter", "image_aspect_ratio",
    "image_position", "image_token_len", "mm_patch_merge_type", "mm_projector_lr",
    "mm_projector_type", "mm_use_im_patch_token", "mm_use_im_start_end", "mm_vision_sampler_lr",
    "mm_vision_select_feature", "mm_vision_select_layer", "mm_vision_tower_aux_list",
    "mm_vision_tower_aux_token_len_list", "mm_vision_tower_lr", "num_of_vision_sampler_layers",
    "num_query_group", "query_num_list", "spmd_debug", "spmd_fsdp_sharding", "spmd_mesh",
    "start_of_vision_sampler_layers", "stride_of_vision_sampler_layers",
    "tokenizer_model_max_length", "tokenizer_padding_side", "tune_mm_mlp_adapter",
    "unfreeze_mm_vision_tower", "use_mm_proj", "vision_hidden_size",
    "vision_tower_aux_token_len_list"}
KNOWN_KEYS = LLM_KEYS | CAMBRIAN_KEYS
MODEL_TYPES = ("cambrian_llama", "llava_llama")
# values the released models have that the computation depends on; anything else is refused
REQUIRED = {"mm_projector_type": "sva", "mm_vision_select_feature": "patch",
            "image_aspect_ratio": "pad", "mm_use_im_start_end": False, "hidden_act": "silu",
            "attention_bias": False, "tie_word_embeddings": False, "rope_scaling": None,
            "mm_patch_merge_type": "flat"}
SVA_HEADS = 16  # vision_sampler.py:251, not a config key
# Tower.pos_resize -> our encoder pos_interp ("": the checkpoint library's own rule)
POS_INTERP = {None: "", "scale_factor": "bicubic_scale"}


@dataclasses.dataclass(frozen=True)
class Release:
    """One released model: what the paper and upstream's scripts give for it."""

    llm: str  # hub repo of the base LLM (under $CAMBRIAN_CHECKPOINTS for training)
    template: str
    image_position: int  # index of the image token in the template's prompt (scripts)
    in_llm: tuple[int, int, int]  # num_of_vision_sampler_layers, start, stride
    batch: tuple[int, int]  # global batch of stage 1, stage 2
    lr: tuple[float, float]  # stage 1 (connector; SVA at 1e-4), stage 2


# scripts/cambrian/*.sh and README: 34B's stride is 7 (the paper's 9 would run past 60 layers)
RELEASES = {
    "8b": Release("meta-llama/Meta-Llama-3-8B-Instruct", "llama_3", 91, (10, 0, 3),
                  (512, 512), (1e-3, 4e-5)),
    "13b": Release("lmsys/vicuna-13b-v1.5", "vicuna_v1", 35, (10, 0, 4), (512, 512),
                   (1e-3, 4e-5)),
    "34b": Release("NousResearch/Nous-Hermes-2-Yi-34B", "chatml_direct", 87, (9, 0, 7),
                   (1024, 1024), (1e-3, 2e-5)),
}
RELEASE_TOWERS = (("siglip/CLIP-ViT-SO400M-14-384", 576),
                  ("openai/clip-vit-large-patch14-336", 576),
                  ("facebook/dinov2-giant-res378", 576), ("clip-convnext-XXL-multi-stage", 9216))
ALIGNMENT_EXAMPLES, INSTRUCTION_EXAMPLES = 2_500_000, 7_060_000  # Cambrian-Alignment, 7M (approx)
# _name_or_path fragments of the base LLMs -> the conv_mode upstream's eval scripts use
_TEMPLATE_BY_LLM = (("llama-3", "llama_3"), ("llama3", "llama_3"), ("vicuna", "vicuna_v1"),
                    ("yi-34b", "chatml_direct"))


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
    path: str  # the release directory
    upstream: dict  # its config.json
    towers: tuple[T.Tower, ...]
    template: str
    image_position: int  # where the in-LLM aggregator reads, whatever the prompt
    eos_token_ids: tuple[int, ...]  # generation_config.json (else config.json)
    model: mlc.ConfigDict  # our config.model


def _fail(path: str, msg: str) -> None:
    raise ReleaseConfigError(f"{path}: {msg}")


def check(upstream: dict, path: str = "config.json") -> None:
    """Refuses keys and values the released models do not have (see module docstring)."""
    unknown = sorted(set(upstream) - KNOWN_KEYS)
    if unknown:
        _fail(path, f"unknown keys {unknown}; the release reader knows the keys of the "
                    "nyu-visionx/cambrian-{8b,13b,34b} configs. If upstream added one, check "
                    "what it changes and add it to cambrian/release/config.py:KNOWN_KEYS")
    missing = sorted(k for k in ("mm_vision_tower_aux_list", "mm_vision_tower_aux_token_len_list",
                                 "image_token_len", "vision_hidden_size", "connector_depth",
                                 "num_query_group", "query_num_list", "connector_only",
                                 "image_position", "hidden_size", "num_hidden_layers",
                                 "vocab_size") if k not in upstream)
    if missing:
        _fail(path, f"missing keys {missing}: not a Cambrian SVA release config")
    if upstream.get("model_type") not in MODEL_TYPES:
        _fail(path, f"model_type = {upstream.get('model_type')!r}, expected one of {MODEL_TYPES}")
    for key, want in REQUIRED.items():
        if key in upstream and upstream[key] != want:
            _fail(path, f"{key} = {upstream[key]!r}; the released models use {want!r} and the "
                        "loader implements only that")
    n = len(upstream["mm_vision_tower_aux_list"])
    if len(upstream["mm_vision_tower_aux_token_len_list"]) != n or n == 0:
        _fail(path, f"mm_vision_tower_aux_list has {n} towers but "
                    f"mm_vision_tower_aux_token_len_list has "
                    f"{len(upstream['mm_vision_tower_aux_token_len_list'])} lengths")
    queries = upstream["query_num_list"]
    if len(queries) != upstream["num_query_group"]:
        _fail(path, f"query_num_list {queries} has {len(queries)} entries, num_query_group = "
                    f"{upstream['num_query_group']}")
    if math.isqrt(upstream["image_token_len"]) ** 2 != upstream["image_token_len"]:
        _fail(path, f"image_token_len = {upstream['image_token_len']} is not a perfect square")
    bad = [q for q in queries if math.isqrt(q) ** 2 != q]
    if bad:
        _fail(path, f"query_num_list = {queries}: {bad} not perfect squares")
    if upstream["vision_hidden_size"] % SVA_HEADS:
        _fail(path, f"vision_hidden_size = {upstream['vision_hidden_size']} is not divisible by "
                    f"the SVA's {SVA_HEADS} heads")


def infer_template(upstream: dict, conv_mode: str | None = None, path: str = "config.json"
                   ) -> str:
    """``conv_mode`` if given, else the one upstream's eval uses with this base LLM."""
    if conv_mode:
        return conv_mode
    name = str(upstream.get("_name_or_path", "")).lower()
    for fragment, template in _TEMPLATE_BY_LLM:
        if fragment in name:
            return template
    _fail(path, f"cannot tell the chat template from _name_or_path = "
                f"{upstream.get('_name_or_path')!r}; pass conv_mode (llama_3 for cambrian-8b, "
                "vicuna_v1 for -13b, chatml_direct for -34b)")


def parse_towers(upstream: dict) -> tuple[T.Tower, ...]:
    """The towers of an upstream config, in its order."""
    return tuple(T.parse(n, k, select_layer=upstream.get("mm_vision_select_layer", -2))
                 for n, k in zip(upstream["mm_vision_tower_aux_list"],
                                 upstream["mm_vision_tower_aux_token_len_list"]))


def model_config(upstream: dict, *, checkpoint: str, tower_paths: list[str], template: str
                 ) -> mlc.ConfigDict:
    """Our ``config.model`` for a checked upstream config (pretrained, from these paths)."""
    towers = parse_towers(upstream)
    model = C.base_config().model
    for tower, path in zip(towers, tower_paths):
        C.add_encoder(model, tower.family, C.encoder(
            tower.family, tower.variant, checkpoint=path, image_size=tower.image_size or 0,
            layer=tower.layer, tokens=tower.tokens, pos_interp=POS_INTERP[tower.pos_resize]))
    num, start, stride = (0, 0, 1) if upstream["connector_only"] else (
        upstream["num_of_vision_sampler_layers"], upstream["start_of_vision_sampler_layers"],
        upstream["stride_of_vision_sampler_layers"])
    queries = list(upstream["query_num_list"])
    model.connector.name = "sva"
    model.connector.options = mlc.ConfigDict(dict(
        query_side=math.isqrt(upstream["image_token_len"]), depth=upstream["connector_depth"],
        groups=upstream["num_query_group"],
        vision_hidden=upstream["vision_hidden_size"], heads=SVA_HEADS, in_llm_layers=num,
        in_llm_start=start, in_llm_stride=stride, global_context_encoder=0,
        image_position=upstream["image_position"]))
    if set(queries) != {upstream["image_token_len"]}:  # the released models: all of that size
        model.connector.options.query_tokens = queries
    model.llm.checkpoint = checkpoint
    model.tokenizer = checkpoint
    model.template = template
    model.max_len = upstream.get("tokenizer_model_max_length") or model.max_len
    return model


def read(checkpoint: str, *, towers_root: str | None = None,
         towers: dict[str, str] | None = None, conv_mode: str | None = None) -> ReleaseConfig:
    """A release directory (``config.json``, ``generation_config.json``) -> ``ReleaseConfig``."""
    path = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(path):
        raise ReleaseConfigError(f"{checkpoint}: no config.json; point checkpoint at a local "
                                 "copy of nyu-visionx/cambrian-8b, -13b or -34b")
    with open(path) as fh:
        upstream = json.load(fh)
    check(upstream, path)
    parsed = parse_towers(upstream)
    paths = [T.tower_path(t, towers_root=towers_root, towers=towers) for t in parsed]
    template = infer_template(upstream, conv_mode, path)
    eos = upstream.get("eos_token_id")
    gen_path = os.path.join(checkpoint, "generation_config.json")
    if os.path.isfile(gen_path):
        with open(gen_path) as fh:
            eos = json.load(fh).get("eos_token_id", eos)
    eos_ids = tuple(eos if isinstance(eos, list) else [eos]) if eos is not None else ()
    return ReleaseConfig(checkpoint, upstream, parsed, template, upstream["image_position"],
                         eos_ids, model_config(upstream, checkpoint=checkpoint,
                                               tower_paths=paths, template=template))


# ------------------------------------------------------------------------------ training recipes


def recipe(size: str, arg: str | None) -> mlc.ConfigDict:
    """The released architecture ``size`` trained from scratch with the paper's recipe: stage 1
    aligns the connector (SVA and in-LLM layers at 1e-4 under the 1e-3 connector LR) on
    Cambrian-Alignment, stage 2 tunes connector + LLM on Cambrian-7M with system prompts; the
    towers stay frozen. Args: runlocal."""
    if size not in RELEASES:
        raise C.ConfigError(f"unknown Cambrian-1 size {size!r}; known: {', '.join(RELEASES)}")
    a = C.parse_arg(arg, runlocal=False)
    rel = RELEASES[size]
    ck = C.CHECKPOINTS
    c = C.base_config()
    for tname, tokens in RELEASE_TOWERS:
        t = T.parse(tname, tokens)
        C.add_encoder(c.model, t.family, C.encoder(
            t.family, t.variant, checkpoint=os.path.join(ck, t.repo), image_size=t.image_size or 0,
            layer=t.layer, tokens=t.tokens, pos_interp=POS_INTERP[t.pos_resize]))
    num, start, stride = rel.in_llm
    c.model.connector.name = "sva"
    c.model.connector.options = mlc.ConfigDict(dict(
        query_side=24, depth=3, groups=1, vision_hidden=1024, heads=SVA_HEADS, in_llm_layers=num,
        in_llm_start=start, in_llm_stride=stride, global_context_encoder=0))
    c.model.llm.checkpoint = os.path.join(ck, rel.llm)
    c.model.tokenizer = c.model.llm.checkpoint
    c.model.template = rel.template
    c.model.max_len = 2048
    c.model.dtype = "bfloat16"  # fp32 master weights, bf16 compute (XLA FSDP in upstream)
    c.model.encoder_dtype = "bfloat16"  # frozen towers run in bf16 upstream
    for name, st, examples, data, warmup in (
            ("stage1", 0, ALIGNMENT_EXAMPLES, "alignment_2.5m.jsonl", 0.06),
            ("stage2", 1, INSTRUCTION_EXAMPLES, "Cambrian7M_withsystemprompt.jsonl", 0.03)):
        c.stages[name].update(dict(
            steps=-(-examples // rel.batch[st]), batch_size=rel.batch[st], lr=rel.lr[st],
            warmup_ratio=warmup, weight_decay=0.0, data=os.path.join(C.DATA, data),
            image_root=os.path.join(C.DATA, "images")))
    c.stages.stage1.lr_multipliers = {"vision_sampler|vision_query": 0.1}  # 1e-4 under 1e-3
    c.eval.root = os.path.join(C.DATA, "benchmarks")
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    if a.runlocal:
        C.runlocal_connector(c, query_side=4, depth=2, vision_hidden=64, heads=2,
                             in_llm_layers=1, in_llm_stride=1)
        c.model.dtype = c.model.encoder_dtype = "float32"
    return c
