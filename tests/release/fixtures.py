"""Tiny random Cambrian-1 releases, in the exact layout of nyu-visionx/cambrian-8b, -13b, -34b.

A release directory holds what the Hugging Face repos hold:

    config.json                     upstream's keys (``model_type`` ``cambrian_llama``, or the old
                                    8B revision's ``llava_llama``), tiny values
    generation_config.json          bos / eos (the 8B stops on <|end_of_text|> and <|eot_id|>)
    model-0000k-of-0000n.safetensors + model.safetensors.index.json
      (or pytorch_model-0000k-of-0000n.bin + pytorch_model.bin.index.json)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json

with the real parameter names (``model.layers.*``, ``lm_head.weight``,
``model.mm_projector_aux_{k}.{0,2,3}.*``, ``model.vision_sampler_{g}.layers.{d}.*``,
``model.vision_sampler_layers.{s}.layers.0.*``, ``model.mm_projector.{0,2}.*``,
``model.vision_query``, ``model.image_newline``). The release holds no tower weights: the four
towers are written once under ``towers_root/<hub repo id>`` in each repo's native layout (HF
``save_pretrained`` + ``preprocessor_config.json`` for the CLIP and DINOv2 repos; the open_clip hub
layout ``open_clip_config.json`` + ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``
for the SigLIP and ConvNeXt repos). Tower sizes live in those saved configs only; the open_clip
towers name timm architectures registered by this module (``TINY_TIMM``), whose structure is that of
the real ones (SigLIP: no class token, MAP head, 16 heads; ConvNeXt: four stages, eps 1e-5).

Tokenizers are tiny vocabularies trained with the ``tokenizers`` library: a Llama-3-style byte-level
BPE that adds ``<|begin_of_text|>`` (8B), a Llama-2/Vicuna-style metaspace BPE that adds ``<s>``
(13B), and a Yi/chatml one that adds no BOS (34B).

Geometry defaults to the release's (576 image tokens, towers at 384/336/378/1024 px, ConvNeXt at
96x96); every size that the release stores in ``config.json`` can be shrunk through
``build_release`` arguments.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from tests.release import torch_reference as ref

TOWERS = ("siglip/CLIP-ViT-SO400M-14-384", "openai/clip-vit-large-patch14-336",
          "facebook/dinov2-giant-res378", "clip-convnext-XXL-multi-stage")
TOKEN_LENS = (576, 576, 576, 9216)
TINY_TIMM = {"siglip": "cambrian_tiny_vit_so400m_patch14_siglip_384",
             "convnext": "cambrian_tiny_convnext_xxlarge"}
# Channel widths of the tiny towers (distinct, so a swapped adapter cannot go unnoticed).
SIGLIP_WIDTH, CLIP_WIDTH, DINO_WIDTH = 32, 24, 40
CONVNEXT_DIMS = (8, 16, 24, 32)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclasses.dataclass(frozen=True)
class Kind:
    """What differs between the three releases (values as their config.json / scripts)."""

    conv_mode: str
    name_or_path: str
    tokenizer: str  # "llama3" | "llama2" | "yi"
    rope_theta: float
    num_kv_heads: int
    in_llm: tuple[int, int, int]  # num_of_vision_sampler_layers, start, stride (tiny LLM: 4 layers)


KINDS = {
    "8b": Kind("llama_3", "./Meta-Llama-3-8B-Instruct", "llama3", 500000.0, 2, (2, 0, 2)),
    "13b": Kind("vicuna_v1", "lmsys/vicuna-13b-v1.5", "llama2", 10000.0, 4, (3, 0, 1)),
    "34b": Kind("chatml_direct", "NousResearch/Nous-Hermes-2-Yi-34B", "yi", 5000000.0, 2,
                (2, 1, 2)),
}


@dataclasses.dataclass(frozen=True)
class Release:
    checkpoint: str
    towers_root: str
    kind: str
    config: dict


# ---------------------------------------------------------------------------------- tokenizers

_CORPUS = [
    ref.LLAMA3_SYSTEM, ref.CHATML_SYSTEM, ref.VICUNA_SYSTEM,
    "What is in the image? Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly. A. cat B. dog C. bird",
    "How many people are there? There are 3 people, 12 cars and 105 trees.",
    "The quick brown fox jumps over the lazy dog. Is it red, green or blue?",
    "USER: ASSISTANT: user assistant system [INST] [/INST] <<SYS>>",
]

LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                   "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|reserved_special_token_4|>", "<|eot_id|>")
# Llama-3's pre-tokenizer split (its tokenizer.json).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _added(tok, tokens) -> dict:
    return {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False,
                                      "rstrip": False, "single_word": False, "special": True}
            for t in tokens}


def write_tokenizer(out: str, style: str) -> dict:
    """Writes a tiny tokenizer directory; returns its special token ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    corpus = _CORPUS * 20
    if style == "llama3":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainers.BpeTrainer(
            vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        specials = LLAMA3_SPECIALS
        tok.add_special_tokens(list(specials))
        bos, eos, pad, unk = ("<|begin_of_text|>", "<|end_of_text|>",
                              "<|reserved_special_token_0|>", None)
        add_bos, cleanup = True, True
    else:
        if style == "llama2":
            specials, bos, eos, pad, unk = ("<unk>", "<s>", "</s>"), "<s>", "</s>", None, "<unk>"
            add_bos = True
        elif style == "yi":
            specials = ("<unk>", "<|startoftext|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")
            bos, eos, pad, unk = "<|startoftext|>", "<|im_end|>", "<unk>", "<unk>"
            add_bos = False
        else:
            raise ValueError(f"unknown tokenizer style {style!r}")
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                     prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.train_from_iterator(corpus, trainers.BpeTrainer(
            vocab_size=360, special_tokens=list(specials), show_progress=False))
        cleanup = False
    ids = {t: tok.token_to_id(t) for t in specials}
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, ids[bos])])
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    cfg = {"added_tokens_decoder": _added(tok, specials), "bos_token": bos,
           "clean_up_tokenization_spaces": cleanup, "eos_token": eos,
           "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"}
    if style != "llama3":
        cfg |= {"add_bos_token": add_bos, "add_eos_token": False, "legacy": False,
                "padding_side": "right"}
    special_map = {"bos_token": bos, "eos_token": eos}
    for key, value in (("pad_token", pad), ("unk_token", unk)):
        if value is not None:
            cfg[key] = special_map[key] = value
    _write_json(os.path.join(out, "tokenizer_config.json"), cfg)
    _write_json(os.path.join(out, "special_tokens_map.json"), special_map)
    return {"vocab_size": tok.get_vocab_size(), "bos": ids[bos], "eos": ids[eos],
            "unk": ids.get("<unk>"), "eot": ids.get("<|eot_id|>")}


# ---------------------------------------------------------------------------------- towers


def register_tiny_timm() -> None:
    """Registers the tiny timm trunks the tiny open_clip towers name (idempotent)."""
    import timm
    from timm.models import build_model_with_cfg, register_model
    from timm.models.convnext import ConvNeXt
    from timm.models.vision_transformer import VisionTransformer

    # vit_so400m_patch14_siglip_384's structure (no class token, MAP head, exact GELU, 16 heads)
    siglip = dict(img_size=384, patch_size=14, embed_dim=SIGLIP_WIDTH, depth=2, num_heads=16,
                  mlp_ratio=3.7362, class_token=False, global_pool="map")
    convnext = dict(depths=(1, 1, 2, 1), dims=CONVNEXT_DIMS, norm_eps=1e-5)  # convnext_xxlarge eps
    for name, cls, args in ((TINY_TIMM["siglip"], VisionTransformer, siglip),
                            (TINY_TIMM["convnext"], ConvNeXt, convnext)):
        if timm.list_models(name):
            continue

        def fn(pretrained=False, _cls=cls, _name=name, _args=args, **kw):
            return build_model_with_cfg(_cls, _name, pretrained, **(_args | kw))

        fn.__name__ = name
        register_model(fn)


register_tiny_timm()  # loading a tiny tower needs its trunk's name known to timm


def _scramble(model, seed: int, scale: float = 0.3):
    """Every parameter ~ scale * N(0, 1) (timm and HF init layer scales and norms to constants
    that would hide whole blocks)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _open_clip_tower(out: str, model_cfg: dict, preprocess_cfg: dict, weights_file: str,
                     seed: int) -> None:
    import open_clip
    import torch

    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "open_clip_config.json"),
                {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    model = _scramble(open_clip.create_model("local-dir:" + out), seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights_file.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, os.path.join(out, weights_file))
    else:
        torch.save(state, os.path.join(out, weights_file))


def build_towers(root: str, seed: int = 0) -> str:
    """The four release towers under ``root/<hub repo id>``; returns ``root``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    # timm/ViT-SO400M-14-SigLIP-384: open_clip hub layout (safetensors)
    _open_clip_tower(
        os.path.join(root, ref.TOWER_REPOS["siglip"]),
        {"embed_dim": SIGLIP_WIDTH, "init_logit_bias": -10, "custom_text": True,
         "vision_cfg": {"image_size": 384, "timm_model_name": TINY_TIMM["siglip"],
                        "timm_model_pretrained": False, "timm_pool": "map",
                        "timm_proj": "none"},
         "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                      "layers": 1, "mlp_ratio": 2.0, "no_causal_mask": True, "proj_bias": True,
                      "pool_type": "last", "norm_kwargs": {"eps": 1e-6}}},
        {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
         "resize_mode": "squash"},
        "open_clip_model.safetensors", seed + 1)
    # laion/CLIP-convnext_xxlarge-...: open_clip hub layout (pytorch .bin), trained at 256 px
    _open_clip_tower(
        os.path.join(root, ref.TOWER_REPOS["convnext"]),
        {"embed_dim": 16,
         "vision_cfg": {"timm_model_name": TINY_TIMM["convnext"], "timm_model_pretrained": False,
                        "timm_pool": "", "timm_proj": "linear", "timm_drop": 0.0,
                        "timm_drop_path": 0.1, "image_size": 256},
         "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                      "layers": 1}},
        {"mean": CLIP_MEAN, "std": CLIP_STD},
        "open_clip_pytorch_model.bin", seed + 2)
    # openai/clip-vit-large-patch14-336: a whole CLIPModel, as the hub repo holds
    clip_dir = os.path.join(root, ref.TOWER_REPOS["clip"])
    clip = CLIPModel(CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, vocab_size=64, max_position_embeddings=16),
        vision_config=dict(hidden_size=CLIP_WIDTH, intermediate_size=48, num_hidden_layers=3,
                           num_attention_heads=2, image_size=336, patch_size=14,
                           hidden_act="quick_gelu"),
        projection_dim=16))
    _scramble(clip, seed + 3).save_pretrained(clip_dir)
    _write_json(os.path.join(clip_dir, "preprocessor_config.json"), {
        "crop_size": 336, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD, "resample": 3, "size": 336})
    # facebook/dinov2-giant: SwiGLU FFN, 37x37 position table (518 px), run at 378 px
    dino_dir = os.path.join(root, ref.TOWER_REPOS["dinov2-giant"])
    dino = Dinov2Model(Dinov2Config(hidden_size=DINO_WIDTH, num_hidden_layers=2,
                                    num_attention_heads=2, mlp_ratio=4, image_size=518,
                                    patch_size=14, use_swiglu_ffn=True))
    _scramble(dino, seed + 4).save_pretrained(dino_dir)
    _write_json(os.path.join(dino_dir, "preprocessor_config.json"), {
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": IMAGENET_MEAN, "image_processor_type": "BitImageProcessor",
        "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 256}})
    return root


# ---------------------------------------------------------------------------------- release

TOWER_CHANNELS = (SIGLIP_WIDTH, CLIP_WIDTH, DINO_WIDTH, sum(CONVNEXT_DIMS))


def _linear(rng, names: dict, name: str, d_out: int, d_in: int, bias: bool = True) -> None:
    bound = 1.0 / math.sqrt(d_in)  # torch nn.Linear's default init range
    names[f"{name}.weight"] = rng.uniform(-bound, bound, (d_out, d_in))
    if bias:
        names[f"{name}.bias"] = rng.uniform(-bound, bound, (d_out,))


def _norm(rng, names: dict, name: str, dim: int, bias: bool = True) -> None:
    names[f"{name}.weight"] = 1.0 + 0.2 * rng.standard_normal(dim)
    if bias:
        names[f"{name}.bias"] = 0.2 * rng.standard_normal(dim)


def _sampler(rng, names: dict, prefix: str, q_dim: int, cv: int, depth: int,
             multiples: list[int]) -> None:
    """``VisionTokenSampler(q_dim, cv, [cv] * n, multiples, cv, depth)``'s parameters."""
    for d in range(depth):
        p = f"{prefix}.layers.{d}"
        _linear(rng, names, f"{p}.proj_context", cv, cv, bias=False)
        _linear(rng, names, f"{p}.proj_in", cv, q_dim + cv, bias=False)
        _linear(rng, names, f"{p}.proj_out.linear_1", cv, cv, bias=False)
        _linear(rng, names, f"{p}.proj_out.linear_2", q_dim, cv, bias=False)
        _norm(rng, names, f"{p}.norm", cv)
        _norm(rng, names, f"{p}.cross_attn.q_proj.0", cv)
        _linear(rng, names, f"{p}.cross_attn.q_proj.1", cv, cv, bias=False)
        for i in range(len(multiples)):
            for kv in ("k", "v"):
                _norm(rng, names, f"{p}.cross_attn.{kv}_proj_{i}.0", cv)
                _linear(rng, names, f"{p}.cross_attn.{kv}_proj_{i}.1", cv, cv, bias=False)
        _linear(rng, names, f"{p}.cross_attn.o_proj", cv, cv, bias=False)
        for i, m in enumerate(multiples):
            if m > 1:
                names[f"{p}.pos_embed_{i}"] = rng.standard_normal((m * m, cv))


def release_weights(cfg: dict, seed: int) -> dict[str, np.ndarray]:
    """Every tensor of a Cambrian checkpoint with ``cfg`` (upstream config.json), random."""
    rng = np.random.default_rng(seed)
    names: dict[str, np.ndarray] = {}
    d, v, f = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = d // heads
    # activations stay O(1) and the logits spread over several units (clear argmax margins)
    names["model.embed_tokens.weight"] = rng.standard_normal((v, d))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        for n, rows in (("q", heads * hd), ("k", kv * hd), ("v", kv * hd)):
            names[f"{p}.self_attn.{n}_proj.weight"] = rng.standard_normal((rows, d)) / math.sqrt(d)
        names[f"{p}.self_attn.o_proj.weight"] = rng.standard_normal((d, heads * hd)) / math.sqrt(d)
        names[f"{p}.mlp.gate_proj.weight"] = rng.standard_normal((f, d)) / math.sqrt(d)
        names[f"{p}.mlp.up_proj.weight"] = rng.standard_normal((f, d)) / math.sqrt(d)
        names[f"{p}.mlp.down_proj.weight"] = rng.standard_normal((d, f)) / math.sqrt(f)
        _norm(rng, names, f"{p}.input_layernorm", d, bias=False)
        _norm(rng, names, f"{p}.post_attention_layernorm", d, bias=False)
    _norm(rng, names, "model.norm", d, bias=False)
    names["lm_head.weight"] = 3.0 * rng.standard_normal((v, d)) / math.sqrt(d)

    cv, n_q = cfg["vision_hidden_size"], cfg["num_query_group"]
    lens = cfg["mm_vision_tower_aux_token_len_list"]
    side = math.isqrt(cfg["image_token_len"])
    for k, c in enumerate(TOWER_CHANNELS[:len(lens)]):
        p = f"model.mm_projector_aux_{k}"
        _linear(rng, names, f"{p}.0", cv, c)
        _linear(rng, names, f"{p}.2", cv, cv)
        _norm(rng, names, f"{p}.3", cv)
    for g, nq in enumerate(cfg["query_num_list"]):
        mult = [math.isqrt(t) // math.isqrt(nq) for t in lens]
        _sampler(rng, names, f"model.vision_sampler_{g}", cv, cv, cfg["connector_depth"], mult)
    if not cfg["connector_only"]:
        mult = [math.isqrt(t) // side for t in lens]
        for s in range(cfg["num_of_vision_sampler_layers"]):
            _sampler(rng, names, f"model.vision_sampler_layers.{s}", d, cv, 1, mult)
    _linear(rng, names, "model.mm_projector.0", d, cv * n_q)
    _linear(rng, names, "model.mm_projector.2", d, d)
    names["model.vision_query"] = rng.standard_normal((n_q, cv)) / math.sqrt(cv)
    names["model.image_newline"] = rng.standard_normal(d) / math.sqrt(d)
    return {k: np.asarray(a, np.float32) for k, a in names.items()}


def write_shards(out: str, tensors: dict[str, np.ndarray], shards: int, fmt: str) -> None:
    """Sharded weights + their index, named as ``save_pretrained`` names them."""
    import torch

    names = list(tensors)
    per = -(-len(names) // shards)
    groups = [names[i:i + per] for i in range(0, len(names), per)]
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        if fmt == "safetensors":
            from safetensors.numpy import save_file

            fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            save_file({k: tensors[k] for k in group}, os.path.join(out, fname),
                      metadata={"format": "pt"})
        elif fmt == "bin":
            fname = f"pytorch_model-{i + 1:05d}-of-{len(groups):05d}.bin"
            torch.save({k: torch.from_numpy(tensors[k]) for k in group}, os.path.join(out, fname))
        else:
            raise ValueError(f"unknown weight format {fmt!r}: safetensors or bin")
        for k in group:
            weight_map[k] = fname
            total += tensors[k].nbytes
    index = "model.safetensors.index.json" if fmt == "safetensors" else \
        "pytorch_model.bin.index.json"
    _write_json(os.path.join(out, index), {"metadata": {"total_size": total},
                                           "weight_map": weight_map})


def upstream_config(kind: str, vocab: dict, *, hidden: int = 64, layers: int = 4,
                    model_type: str = "cambrian_llama", token_lens=TOKEN_LENS,
                    image_token_len: int = 576, query_num_list=None, connector_depth: int = 3,
                    vision_hidden: int = 32, in_llm=None, connector_only: bool = False,
                    image_position: int = 0) -> dict:
    """config.json with every key the released configs carry (values tiny)."""
    k = KINDS[kind]
    num, start, stride = in_llm or k.in_llm
    queries = list(query_num_list or [image_token_len])
    cfg = {
        "_name_or_path": k.name_or_path, "architectures": ["CambrianLlamaForCausalLM"],
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": vocab["bos"],
        "connector_depth": connector_depth, "connector_only": connector_only,
        "eos_token_id": vocab["eos"], "freeze_mm_mlp_adapter": False, "hidden_act": "silu",
        "hidden_size": hidden, "image_aspect_ratio": "pad", "image_position": image_position,
        "image_token_len": image_token_len, "initializer_range": 0.02,
        "intermediate_size": 2 * hidden, "max_position_embeddings": 4096,
        "mm_patch_merge_type": "flat", "mm_projector_lr": None, "mm_projector_type": "sva",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
        "mm_vision_sampler_lr": None, "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower_aux_list": list(TOWERS[:len(token_lens)]),
        "mm_vision_tower_aux_token_len_list": list(token_lens), "mm_vision_tower_lr": None,
        "model_type": model_type, "num_attention_heads": 4, "num_hidden_layers": layers,
        "num_key_value_heads": k.num_kv_heads, "num_of_vision_sampler_layers": num,
        "num_query_group": len(queries), "pretraining_tp": 1, "query_num_list": queries,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": k.rope_theta,
        "spmd_debug": None, "spmd_fsdp_sharding": None, "spmd_mesh": None,
        "start_of_vision_sampler_layers": start, "stride_of_vision_sampler_layers": stride,
        "tie_word_embeddings": False, "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right", "torch_dtype": "float32",
        "transformers_version": "4.40.1", "tune_mm_mlp_adapter": False,
        "unfreeze_mm_vision_tower": False, "use_cache": True, "use_mm_proj": True,
        "vision_hidden_size": vision_hidden,
        "vision_tower_aux_token_len_list": list(token_lens), "vocab_size": vocab["vocab_size"],
    }
    if vocab["unk"] is not None:  # Vicuna's and Yi's configs: pad_token_id 0 (<unk>)
        cfg["pad_token_id"] = vocab["unk"]
    return dict(sorted(cfg.items()))


def build_release(root: str, kind: str, *, towers_root: str, seed: int = 0,
                  weights: str = "safetensors", shards: int = 3, image_position: int | None = None,
                  **config_kw) -> Release:
    """A tiny ``nyu-visionx/cambrian-<kind>`` directory at ``root``.

    ``image_position`` None: where the image token lands in the eval prompt of this kind's
    template and tokenizer (what upstream's training script was given); ``config_kw`` go to
    ``upstream_config`` (geometry, depth, model_type, ...).
    """
    k = KINDS[kind]
    os.makedirs(root, exist_ok=True)
    vocab = write_tokenizer(root, k.tokenizer)
    cfg = upstream_config(kind, vocab, **config_kw)
    if image_position is None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(root)
        ids = ref.tokenizer_image_token(ref.render_prompt(k.conv_mode, "x"), tok)
        image_position = ids.index(ref.IMAGE_TOKEN_INDEX)
    cfg["image_position"] = image_position
    _write_json(os.path.join(root, "config.json"), cfg)
    gen = {"_from_model_config": True, "bos_token_id": vocab["bos"], "do_sample": True,
           "eos_token_id": [vocab["eos"], vocab["eot"]] if kind == "8b" else vocab["eos"],
           "transformers_version": "4.40.1"}
    if "pad_token_id" in cfg:
        gen["pad_token_id"] = cfg["pad_token_id"]
    _write_json(os.path.join(root, "generation_config.json"), gen)
    write_shards(root, release_weights(cfg, seed), shards, weights)
    return Release(root, towers_root, kind, cfg)


def _write_json(path: str, obj) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")
