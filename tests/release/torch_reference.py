"""Independent PyTorch reference of upstream Cambrian-1 inference, for parity tests.

Built from a release-layout directory (nyu-visionx/cambrian-{8b,13b,34b}) and a towers root; it
computes what cambrian-mllm/cambrian @539ffc3 (R below) computes on the GPU eval path with the
transformers 4.37 it pins, in float32 (upstream evaluates in float16). Written from the upstream
text, not copied; it imports transformers / open_clip / timm / torch / PIL, never
``cambrian.models``. Each behaviour and the upstream lines it follows:

Towers (``torch_towers.py``)
  T1. Tower names get ``-interp<token_len>`` appended (R builder.py:92) and are dispatched on
      substrings in builder.py:93-147's order; suffixes mean: SigLIP ``res`` default 384 if "384"
      is in the name else 224, but the loaded trunk's own size wins (siglip_encoder.py:17, :59);
      DINOv2 ``-res<N>`` sets crop and shortest edge to N (dino_encoder.py:30-33, :85-96);
      ConvNeXt ``res`` default 1024, ``multi-stage`` takes all four stages (clip_convnext_encoder
      .py:50-55); CLIP takes everything before ``-interp`` as its repo (clip_encoder.py:13-25).
  T2. OpenAI CLIP: transformers CLIPVisionModel ``hidden_states[mm_vision_select_layer]``, CLS
      dropped (clip_encoder.py:57-68). DINOv2: Dinov2Model ``last_hidden_state[:, 1:]``
      (dino_encoder.py:115-126) with 4.37's position resize: bicubic, ``scale_factor =
      ((h // p) + 0.1) / sqrt(N)`` (modeling_dinov2.py ``interpolate_pos_encoding``). SigLIP: the
      open_clip timm trunk's ``forward_features`` (siglip_encoder.py:95-99). ConvNeXt: stem, each
      stage map bilinear to sqrt(interp)^2, channel concat (clip_convnext_encoder.py:99-144).
  T3. Token lengths: a tower whose token count differs from its ``-interp`` is reshaped to a
      square and resized bilinearly (align_corners=False, float32) (clip_encoder.py:70-96).
  T4. Preprocessing per tower (mm_utils.py:186-201): expand2square with that tower's processor
      ``image_mean`` as ``int(mean * 255)`` (mm_utils.py:153-164; the open_clip wrapper reports the
      CLIP mean, base_encoder.py:13), one PIL resize (Pillow's default, bicubic) from the original
      to the tower's size, then the tower's processor, whose resize / crop are then the identity.

Connector (SVA)
  S1. Adapter k: Linear -> GELU -> Linear -> LayerNorm (cambrian_arch.py:56). Global context =
      mean over all tokens of adapted tower 0, padding included (:376-377).
  S2. Valid cells on each tower's own g x g grid (cambrian_arch.py:203-225, :305-318): a wide
      image (w / h > 1) has ``pad = (g - int(h * (g / w))) // 2`` padding rows at each end, else
      the same on columns; window re-layout [L, m, L, m] -> [L^2, m^2] with m = g // L (:306-310);
      a window with no valid cell attends everywhere (:318).
  S3. Query group q (query_num_list[q] = s^2): every query starts as vision_query[q] (:383);
      multiples m_k = int(sqrt(T_k)) // int(sqrt(s^2)) (:59); D = connector_depth layers
      (vision_sampler.py:407-419); a group whose side s != L is resized bilinearly to L x L
      (:395-401); groups are concatenated on channels, then mm_projector (:49, :410-411).
  S4. One layer (vision_sampler.py:248-327): x = proj_in([q, proj_context(ctx)]); keys/values:
      per tower LayerNorm -> Linear of (window + pos_embed_k if m_k > 1), concatenated; query
      LayerNorm -> Linear; 16 heads; scaled-dot-product attention with the boolean window mask
      (:155-234); q' = proj_out(LayerNorm(x + o_proj(attn))) + q, proj_out Linear-GELU-Linear
      without biases (:237-245).
  S5. GPU eval unpad (cambrian_arch.py:422-451, :228-256): the L x L output keeps the rows (wide)
      or columns (tall) the S2 rule keeps on the L grid, then ``image_newline`` ends each kept row:
      h' (w' + 1) tokens. The in-LLM windows are cropped the same way (:427, unpad=True).

LLM
  L1. Prompt = eval script's ``"<image>\\n" + question`` as the user turn, assistant turn empty
      (eval/eval/gqa/gqa_eval.py:32-45), rendered by conversation.py: llama_3 (:100-123 with the
      system prompt of :520-523), vicuna_v1 (:60-69, :311-321), chatml_direct (:70-78, the second
      definition :532-540 wins), mistral_instruct (:79-99, :475-484), mistral_v2 (:124-145,
      :486-506).
  L2. ``tokenizer_image_token`` (mm_utils.py:204-223): every chunk between ``<image>`` tokenised
      with the tokenizer's own special tokens; if chunk 0 starts with BOS, that BOS is kept once
      and the first token of every chunk dropped; one IMAGE_TOKEN_INDEX between chunks. With the
      Llama-3 tokenizer and llama_3's literal <|begin_of_text|>, prompts start with two BOS.
  L3. The image tokens replace IMAGE_TOKEN_INDEX (cambrian_arch.py:492-557); the sequence is cut
      at ``tokenizer_model_max_length`` (:559-562); positions 0..T-1, causal attention (:564-592;
      generate passes no attention mask).
  L4. After decoder layer i = start + s * stride (s < num_of_vision_sampler_layers, unless
      connector_only), the hidden states at ``[image_position, image_position + h' (w' + 1))`` (the
      config value, wherever the image landed) go through in-LLM layer s (one S4 layer, q = LLM
      hidden state, same context and cropped windows) with the newline slots left as they are
      (cambrian_llama.py:168-253).
  L5. Logits = lm_head(norm(h)) in float32 (cambrian_llama.py:402-409); the vocabulary is resized
      to ``len(tokenizer)`` at load (builder.py:157; a larger tokenizer is refused here, as upstream
      would append random rows).
  L6. Greedy decoding: argmax until an id of generation_config's ``eos_token_id``; decode with
      special tokens skipped (gqa_eval.py:107-119), then 4.37's ``clean_up_tokenization`` when the
      tokenizer config asks for it, then ``.strip()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tests.release import torch_towers

IMAGE_TOKEN_INDEX = -200  # constants.py
TOWER_REPOS = {"siglip": "timm/ViT-SO400M-14-SigLIP-384",
               "clip": "openai/clip-vit-large-patch14-336",
               "dinov2-giant": "facebook/dinov2-giant",
               "convnext": "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup"}

# ------------------------------------------------------------------------------- prompts (L1)

LLAMA3_SYSTEM = (  # conversation.py:521-523, newlines and indentation included
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
    "    As a multimodal AI, you have the ability to process and analyze images. Whenever an "
    "image is present in the conversation, very carefully examine it and consider its content "
    "when formulating your response.\n"
    "    You should give concise responses to very simple questions, but provide thorough "
    "responses to more complex and open-ended questions. ")
CHATML_SYSTEM = (  # conversation.py:533
    "<|im_start|>system\nYou are Cambrian, a highly intelligent multimodal AI trained by NYU "
    "Vision X. As a multimodal AI, you have the ability to process and analyze images. Whenever "
    "an image is present in the conversation, very carefully examine it and consider its content "
    "when formulating your response. You should give concise responses to very simple questions, "
    "but provide thorough responses to more complex and open-ended questions.")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The "
                 "assistant gives helpful, detailed, and polite answers to the user's questions.")


def render_prompt(conv_mode: str, question: str) -> str:
    """The eval prompt string: one user turn ``<image>\\n{question}``, the assistant to answer."""
    msg = "<image>\n" + question
    if conv_mode == "llama_3":
        return ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>" + LLAMA3_SYSTEM +
                "<|eot_id|><|start_header_id|>user<|end_header_id|>" + msg + "<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>")
    if conv_mode in ("vicuna_v1", "v1"):
        return VICUNA_SYSTEM + " USER: " + msg + " ASSISTANT:"
    if conv_mode == "chatml_direct":
        return (CHATML_SYSTEM + "<|im_end|><|im_start|>user\n" + msg + "<|im_end|>"
                "<|im_start|>assistant\n")
    if conv_mode in ("mistral_instruct", "mistral_v2"):  # empty system: no <<SYS>> block
        return "[INST] " + msg + " [/INST]"
    raise ValueError(f"reference: conv_mode {conv_mode!r} not implemented")


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    """L2: prompt -> ids with one IMAGE_TOKEN_INDEX per ``<image>``."""
    chunks = [tokenizer(c).input_ids for c in prompt.split("<image>")]
    keep_bos = bool(chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id)
    drop = int(keep_bos)
    ids = [chunks[0][0]] if keep_bos else []
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[drop:])
    return ids


def clean_up_tokenization(text: str) -> str:
    """transformers 4.37 ``PreTrainedTokenizerBase.clean_up_tokenization``."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


# ------------------------------------------------------------------------------- geometry (S2, S5)


def letterbox(size_wh: tuple[int, int], g: int) -> tuple[int, int]:
    """(axis, pad): axis 0 = rows are padded (wide image), 1 = columns; ``pad`` cells at each
    end of that axis of a g x g grid are padding (cambrian_arch.py:203-256)."""
    w, h = size_wh
    if w / h > g / g:
        return 0, (g - int(h * (g / w))) // 2
    return 1, (g - int(w * (g / h))) // 2


def valid_cells(size_wh, g: int) -> torch.Tensor:
    """bool[g, g]: False on the letter-box padding."""
    axis, pad = letterbox(size_wh, g)
    v = torch.ones(g, g, dtype=torch.bool)
    if pad > 0:
        idx = torch.cat([torch.arange(pad), torch.arange(g - pad, g)])
        v.index_fill_(axis, idx, False)
    return v


def crop(x: torch.Tensor, size_wh, side: int) -> torch.Tensor:
    """x[side, side, ...] -> the rows / columns upstream's unpad keeps."""
    axis, pad = letterbox(size_wh, side)
    return x[pad:side - pad] if axis == 0 else x[:, pad:side - pad]


def windows(feat: torch.Tensor, side: int, size_wh, unpad: bool):
    """feat float[T, C] on a g x g grid -> (float[n, m^2, C], bool[n, m^2]) for an L = side
    query grid (n = L^2, or the cropped count with ``unpad``)."""
    t, c = feat.shape
    g = math.isqrt(t)
    m = g // side
    if m * side != g:
        raise ValueError(f"tower grid {g} is not a multiple of the query side {side}")
    f = feat.view(side, m, side, m, c).permute(0, 2, 1, 3, 4)
    v = valid_cells(size_wh, g).view(side, m, side, m).permute(0, 2, 1, 3)
    if unpad:
        f, v = crop(f, size_wh, side), crop(v, size_wh, side)
    f, v = f.reshape(-1, m * m, c), v.reshape(-1, m * m).clone()
    v[~v.any(-1)] = True
    return f, v


# ------------------------------------------------------------------------------- SVA (S1-S4)


class MLP(torch.nn.Module):
    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.linear_1 = torch.nn.Linear(d_in, d_hidden, bias=False)
        self.linear_2 = torch.nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x):
        return self.linear_2(F.gelu(self.linear_1(x)))


def _ln_linear(dim: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.LayerNorm(dim), torch.nn.Linear(dim, dim, bias=False))


class CrossAttention(torch.nn.Module):
    HEADS = 16  # vision_sampler.py:251

    def __init__(self, dim: int, num_kv: int):
        super().__init__()
        self.q_proj = _ln_linear(dim)
        for i in range(num_kv):
            setattr(self, f"k_proj_{i}", _ln_linear(dim))
            setattr(self, f"v_proj_{i}", _ln_linear(dim))
        self.o_proj = torch.nn.Linear(dim, dim, bias=False)
        self.num_kv = num_kv

    def forward(self, x, kvs, masks):
        """x float[n, 1, C]; kvs[i] float[n, m_i^2, C]; masks[i] bool[n, m_i^2]."""
        n, _, c = x.shape
        h = self.HEADS

        def heads(t):
            return t.view(n, t.shape[1], h, c // h).transpose(1, 2)

        q = heads(self.q_proj(x))
        k = heads(torch.cat([getattr(self, f"k_proj_{i}")(t) for i, t in enumerate(kvs)], 1))
        v = heads(torch.cat([getattr(self, f"v_proj_{i}")(t) for i, t in enumerate(kvs)], 1))
        mask = torch.cat(masks, dim=1)[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(n, 1, c))


class SamplerLayer(torch.nn.Module):
    def __init__(self, q_dim: int, dim: int, multiples):
        super().__init__()
        self.proj_context = torch.nn.Linear(dim, dim, bias=False)
        self.proj_in = torch.nn.Linear(q_dim + dim, dim, bias=False)
        self.proj_out = MLP(dim, dim, q_dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, len(multiples))
        self.multiples = list(multiples)
        for i, m in enumerate(self.multiples):
            if m > 1:
                setattr(self, f"pos_embed_{i}", torch.nn.Parameter(torch.zeros(m * m, dim)))

    def forward(self, q, ctx, kvs, masks):
        x = self.proj_in(torch.cat([q, self.proj_context(ctx)], dim=-1))
        kvs = [t + getattr(self, f"pos_embed_{i}") if m > 1 else t
               for i, (t, m) in enumerate(zip(kvs, self.multiples))]
        return self.proj_out(self.norm(x + self.cross_attn(x, kvs, masks))) + q


class Sampler(torch.nn.Module):
    def __init__(self, q_dim: int, dim: int, multiples, depth: int):
        super().__init__()
        self.layers = torch.nn.ModuleList(SamplerLayer(q_dim, dim, multiples)
                                          for _ in range(depth))

    def forward(self, q, ctx, kvs, masks):
        for layer in self.layers:
            q = layer(q, ctx, kvs, masks)
        return q


class SVA(torch.nn.Module):
    """Parameter names are the checkpoint's without the leading ``model.``."""

    def __init__(self, cfg: dict, channels: list[int]):
        super().__init__()
        cv, d = cfg["vision_hidden_size"], cfg["hidden_size"]
        lens = cfg["mm_vision_tower_aux_token_len_list"]
        for k, c in enumerate(channels):
            setattr(self, f"mm_projector_aux_{k}", torch.nn.Sequential(
                torch.nn.Linear(c, cv), torch.nn.GELU(), torch.nn.Linear(cv, cv),
                torch.nn.LayerNorm(cv)))
        for g, nq in enumerate(cfg["query_num_list"]):
            mult = [math.isqrt(t) // math.isqrt(nq) for t in lens]
            setattr(self, f"vision_sampler_{g}", Sampler(cv, cv, mult, cfg["connector_depth"]))
        side = math.isqrt(cfg["image_token_len"])
        n_in = 0 if cfg["connector_only"] else cfg["num_of_vision_sampler_layers"]
        self.vision_sampler_layers = torch.nn.ModuleList(
            Sampler(d, cv, [math.isqrt(t) // side for t in lens], 1) for _ in range(n_in))
        self.mm_projector = torch.nn.Sequential(
            torch.nn.Linear(cv * cfg["num_query_group"], d), torch.nn.GELU(),
            torch.nn.Linear(d, d))
        self.vision_query = torch.nn.Parameter(torch.zeros(cfg["num_query_group"], cv))
        self.image_newline = torch.nn.Parameter(torch.zeros(d))


# ------------------------------------------------------------------------------- checkpoint


def read_weights(checkpoint: str) -> dict[str, torch.Tensor]:
    """Every tensor of a release directory, through its shard index."""
    for index, loader in (("model.safetensors.index.json", "safetensors"),
                          ("pytorch_model.bin.index.json", "bin")):
        path = os.path.join(checkpoint, index)
        if os.path.isfile(path):
            with open(path) as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
            out = {}
            for shard in shards:
                f = os.path.join(checkpoint, shard)
                if loader == "safetensors":
                    from safetensors.torch import load_file

                    out.update(load_file(f))
                else:
                    out.update(torch.load(f, map_location="cpu", weights_only=True))
            return {k: v.float() for k, v in out.items()}
    raise FileNotFoundError(f"{checkpoint}: no model.safetensors.index.json or "
                            "pytorch_model.bin.index.json")


def _llama(cfg: dict, tensors: dict, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    lc = LlamaConfig(
        vocab_size=vocab, hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"], rms_norm_eps=cfg["rms_norm_eps"],
        rope_theta=cfg["rope_theta"], max_position_embeddings=cfg["max_position_embeddings"],
        attention_bias=cfg["attention_bias"], tie_word_embeddings=False,
        attn_implementation="eager")
    if cfg.get("rope_scaling"):
        raise NotImplementedError("reference: rope_scaling is not used by the releases")
    lm = LlamaForCausalLM(lc).eval()
    state = {k: v[:vocab] if k in ("model.embed_tokens.weight", "lm_head.weight") else v
             for k, v in tensors.items()}
    lm.load_state_dict(state, strict=True)
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    want = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)
    if not torch.allclose(lm.model.rotary_emb.inv_freq.float(), want, rtol=1e-6):
        raise RuntimeError("reference: transformers ignored rope_theta")
    return lm


# ------------------------------------------------------------------------------- the model


@dataclasses.dataclass
class Encoded:
    tokens: torch.Tensor  # float[h' (w' + 1), D] image tokens with row newlines (S5)
    grid: tuple[int, int]  # (h', w') kept rows and tokens per row
    windows: list  # per tower float[h' w', m^2, Cv] (in-LLM keys)
    masks: list  # per tower bool[h' w', m^2]
    context: torch.Tensor  # float[Cv]


CONV_MODES = (("llama-3", "llama_3"), ("llama3", "llama_3"), ("vicuna", "vicuna_v1"),
              ("yi-34b", "chatml_direct"))


class Reference:
    """``Reference(checkpoint, towers_root).next_token_logits(image, question, conv_mode)``."""

    def __init__(self, checkpoint: str, towers_root: str | None = None,
                 towers: dict[str, str] | None = None, conv_mode: str | None = None):
        from transformers import AutoTokenizer

        with open(os.path.join(checkpoint, "config.json")) as fh:
            self.config = cfg = json.load(fh)
        with open(os.path.join(checkpoint, "generation_config.json")) as fh:
            eos = json.load(fh)["eos_token_id"]
        self.eos = set(eos if isinstance(eos, list) else [eos])
        with open(os.path.join(checkpoint, "tokenizer_config.json")) as fh:
            self.cleanup = bool(json.load(fh).get("clean_up_tokenization_spaces", False))
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        name = cfg.get("_name_or_path", "").lower()
        self.conv_mode = conv_mode or next((m for k, m in CONV_MODES if k in name), None)
        if cfg["mm_projector_type"] != "sva" or cfg.get("mm_use_im_start_end"):
            raise NotImplementedError("reference: SVA releases without im_start/end only")
        self.towers = []
        for tname, tlen in zip(cfg["mm_vision_tower_aux_list"],
                               cfg["mm_vision_tower_aux_token_len_list"]):
            spec = torch_towers.parse(tname, tlen)
            path = (towers or {}).get(tname) or os.path.join(towers_root or "", spec["repo"])
            self.towers.append(torch_towers.build(tname, tlen, path,
                                                  cfg["mm_vision_select_layer"]))
        tensors = read_weights(checkpoint)
        llm = {k: v for k, v in tensors.items()
               if k.startswith(("model.layers.", "model.embed_tokens.", "model.norm."))
               or k == "lm_head.weight"}
        vocab = len(self.tokenizer)
        if vocab > cfg["vocab_size"]:
            raise ValueError(f"tokenizer has {vocab} tokens > vocab_size {cfg['vocab_size']}")
        self.lm = _llama(cfg, llm, vocab)
        channels = [self._probe_channels(t) for t in self.towers]
        self.sva = SVA(cfg, channels).eval()
        rest = {k.removeprefix("model."): v for k, v in tensors.items() if k not in llm}
        self.sva.load_state_dict(rest, strict=True)

    @staticmethod
    @torch.no_grad()
    def _probe_channels(tower) -> int:
        px = torch.zeros(1, 3, tower.image_size, tower.image_size)
        return tower(px).shape[-1]

    # -- vision

    @torch.no_grad()
    def encode_image(self, image) -> Encoded:
        """S1-S5 for one image (PIL or uint8[H, W, 3])."""
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, np.uint8))
        image = image.convert("RGB")
        size = image.size
        cfg, sva = self.config, self.sva
        adapted = [getattr(sva, f"mm_projector_aux_{k}")(t(t.pixels(image)))[0]
                   for k, t in enumerate(self.towers)]
        ctx = adapted[0].mean(0)
        side = math.isqrt(cfg["image_token_len"])
        groups = []
        for g, nq in enumerate(cfg["query_num_list"]):
            s = math.isqrt(nq)
            wins, masks = zip(*(windows(a, s, size, unpad=False) for a in adapted))
            q = sva.vision_query[g].expand(s * s, 1, -1)
            y = getattr(sva, f"vision_sampler_{g}")(q, ctx.expand(s * s, 1, -1), wins, masks)
            y = y.view(1, s, s, -1)
            if s != side:
                y = F.interpolate(y.permute(0, 3, 1, 2).float(), size=(side, side),
                                  mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
            groups.append(y.reshape(side, side, -1))
        x = crop(sva.mm_projector(torch.cat(groups, dim=-1)), size, side)
        rows, cols, d = x.shape
        x = torch.cat([x, sva.image_newline.view(1, 1, d).expand(rows, 1, d)], dim=1)
        wins, masks = zip(*(windows(a, side, size, unpad=True) for a in adapted))
        return Encoded(x.reshape(-1, d), (rows, cols), list(wins), list(masks), ctx)

    # -- language

    def prompt_ids(self, question: str, conv_mode: str | None = None) -> list[int]:
        mode = conv_mode or self.conv_mode
        if mode is None:
            raise ValueError("reference: pass conv_mode (not inferable from _name_or_path)")
        return tokenizer_image_token(render_prompt(mode, question), self.tokenizer)

    @torch.no_grad()
    def forward(self, ids: list[int], enc: Encoded, extra: list[int] = ()) -> torch.Tensor:
        """float32[T, V] logits of prompt ``ids`` (+ generated ``extra``) with the image."""
        cfg, lm = self.config, self.lm
        if ids.count(IMAGE_TOKEN_INDEX) != 1:
            raise ValueError("reference: exactly one image per prompt (as upstream)")
        at = ids.index(IMAGE_TOKEN_INDEX)
        emb = lm.model.embed_tokens
        parts = [emb(torch.tensor(ids[:at])), enc.tokens, emb(torch.tensor(ids[at + 1:]))]
        h = torch.cat(parts)[:cfg.get("tokenizer_model_max_length") or None]
        if extra:
            h = torch.cat([h, emb(torch.tensor(list(extra)))])
        h = h[None]
        t = h.shape[1]
        pos = torch.arange(t)[None]
        rope = lm.model.rotary_emb(h, pos)
        mask = torch.full((t, t), float("-inf")).triu(1)[None, None]
        start = cfg["start_of_vision_sampler_layers"]
        stride = cfg["stride_of_vision_sampler_layers"]
        n_in = len(self.sva.vision_sampler_layers)
        at_layer = {start + s * stride: s for s in range(n_in)}
        rows, cols = enc.grid
        p, n = cfg["image_position"], rows * (cols + 1)
        for i, layer in enumerate(lm.model.layers):
            out = layer(h, attention_mask=mask, position_ids=pos, position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
            if i in at_layer:
                if p + n > t:
                    raise ValueError(f"image_position {p} + {n} image tokens > sequence {t}")
                blk = h[0, p:p + n].reshape(rows, cols + 1, -1)
                q = blk[:, :cols].reshape(rows * cols, 1, -1)
                ctx = enc.context.expand(rows * cols, 1, -1)
                q = self.sva.vision_sampler_layers[at_layer[i]](q, ctx, enc.windows, enc.masks)
                blk = torch.cat([q.view(rows, cols, -1), blk[:, cols:]], dim=1)
                h = torch.cat([h[:, :p], blk.reshape(1, n, -1), h[:, p + n:]], dim=1)
        return lm.lm_head(lm.model.norm(h))[0].float()

    def next_token_logits(self, image, question: str, conv_mode: str | None = None) -> np.ndarray:
        """float32[vocab]: the logits of the first answer token."""
        logits = self.forward(self.prompt_ids(question, conv_mode), self.encode_image(image))
        return logits[-1].numpy()

    def answer(self, image, question: str, conv_mode: str | None = None,
               max_new_tokens: int = 16) -> str:
        ids, enc = self.prompt_ids(question, conv_mode), self.encode_image(image)
        out: list[int] = []
        for _ in range(max_new_tokens):
            nxt = int(self.forward(ids, enc, out)[-1].argmax())
            out.append(nxt)
            if nxt in self.eos:
                break
        text = self.tokenizer.decode(out, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
        return (clean_up_tokenization(text) if self.cleanup else text).strip()
