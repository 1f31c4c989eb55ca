"""The four-tower Cambrian stage-2 train step in PyTorch, at the sizes of a built JAX model.

Built from the independent reference (``tests/release/torch_reference.py``: SVA, samplers;
``torch_towers.py``: tower wrappers) around randomly initialised transformers CLIP / DINOv2,
timm SigLIP (ViT) / ConvNeXt and transformers' Llama with ``attn_implementation="sdpa"``. Only
the sizes are read from the JAX model (``benchmarks/mfu_cambrian.py``'s probe); no code of
``cambrian.models`` runs here. Square images only (every SVA window is fully valid).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.release import torch_reference, torch_towers


def _tower(kind: str, v, interp: int) -> torch.nn.Module:
    """A random tower of the JAX tower config ``v``'s sizes (ViTConfig / ConvNeXtConfig)."""
    if kind == "convnext":
        from timm.models.convnext import ConvNeXt

        trunk = ConvNeXt(depths=tuple(v.depths), dims=tuple(v.dims), num_classes=0)
        return torch_towers.from_module(kind, trunk, interp, v.image_size)
    ratio = (v.mlp_dim + 0.5) / v.width  # int(width * ratio) == mlp_dim
    blocks = v.depth if v.layer is None else v.layer % (v.depth + 1)
    if kind == "siglip":
        from timm.models.vision_transformer import VisionTransformer

        trunk = VisionTransformer(img_size=v.image_size, patch_size=v.patch, embed_dim=v.width,
                                  depth=blocks, num_heads=v.heads, mlp_ratio=ratio,
                                  class_token=False, global_pool="avg", num_classes=0)
        return torch_towers.from_module(kind, trunk, interp, v.image_size)
    if kind == "clip":
        from transformers import CLIPVisionConfig, CLIPVisionModel

        # only the blocks up to the chosen layer: the last one's output is unused
        cfg = CLIPVisionConfig(hidden_size=v.width, intermediate_size=v.mlp_dim,
                               num_hidden_layers=blocks, num_attention_heads=v.heads,
                               image_size=v.image_size, patch_size=v.patch,
                               attn_implementation="sdpa")
        return torch_towers.from_module(kind, CLIPVisionModel(cfg), interp, v.image_size, -1)
    from transformers import Dinov2Config, Dinov2Model

    swiglu = v.mlp == "swiglu"
    # transformers takes an integer ratio; SwiGLU's hidden width is 2/3 of width * ratio
    hidden = v.mlp_dim * 3 // 2 if swiglu else v.mlp_dim
    if hidden % v.width:
        raise ValueError(f"dinov2: MLP width {v.mlp_dim} is not an integer ratio of {v.width}")
    cfg = Dinov2Config(hidden_size=v.width, num_hidden_layers=blocks, num_attention_heads=v.heads,
                       mlp_ratio=hidden // v.width,
                       use_swiglu_ffn=swiglu, image_size=v.image_size, patch_size=v.patch,
                       attn_implementation="sdpa")
    return torch_towers.from_module(kind, Dinov2Model(cfg), interp, v.image_size)


class Cambrian(torch.nn.Module):
    """Towers (frozen) -> SVA -> Llama with in-LLM SVA layers; ``forward`` returns the loss."""

    def __init__(self, model, tie: bool = True):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        sva, c = model.connector, model.llm.config
        self.towers = torch.nn.ModuleList(  # in the SVA's order (``model.order``)
            _tower(alias, model.encoders[alias].config, (m * sva.side) ** 2)
            for alias, m in zip(model.order, sva.multiples))
        # a grid that is no multiple of L is resized to m L first (the SVA's resize_to_multiple)
        self.tokens = [(m * sva.side) ** 2 for m in sva.multiples]
        self.side, self.group_sides = sva.side, list(sva.group_sides)
        self.in_llm = {layer: s for s, layer in enumerate(sva.in_llm_layers)}
        self.n_image = sva.side * (sva.side + 1)
        cfg = {"vision_hidden_size": sva.dim, "hidden_size": c.hidden_size,
               "mm_vision_tower_aux_token_len_list": self.tokens,
               "query_num_list": [s * s for s in self.group_sides],
               "connector_depth": len(sva.vision_sampler_0.layers),
               "image_token_len": sva.side ** 2, "connector_only": not sva.in_llm_layers,
               "num_of_vision_sampler_layers": len(sva.in_llm_layers),
               "num_query_group": len(self.group_sides)}
        self.sva = torch_reference.SVA(cfg, list(sva.encoder_channels))
        self.lm = LlamaForCausalLM(LlamaConfig(
            vocab_size=c.vocab_size, hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size, num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads,
            head_dim=c.head_dim, rope_theta=c.rope_theta, max_position_embeddings=8192,
            tie_word_embeddings=tie, attn_implementation="sdpa"))

    @staticmethod
    def _windows(x, side: int):
        """float[B, g^2, C] -> (float[B side^2, m^2, C], bool[B side^2, m^2])."""
        b, t, c = x.shape
        g = math.isqrt(t)
        m = g // side
        w = x.view(b, side, m, side, m, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, m * m, c)
        return w, torch.ones(w.shape[:2], dtype=torch.bool, device=x.device)

    def forward(self, pixels: list, tokens, loss_mask):
        b, sva, side = tokens.shape[0], self.sva, self.side
        with torch.no_grad():
            feats = [t(px) for t, px in zip(self.towers, pixels)]
        adapted = [getattr(sva, f"mm_projector_aux_{k}")(f) for k, f in enumerate(feats)]
        ctx = adapted[0].mean(1)  # float[B, Cv]
        groups = []
        for g, s in enumerate(self.group_sides):
            wins, masks = zip(*(self._windows(a, s) for a in adapted))
            q = sva.vision_query[g].expand(b * s * s, 1, -1)
            y = getattr(sva, f"vision_sampler_{g}")(
                q, ctx.repeat_interleave(s * s, 0)[:, None], wins, masks).view(b, s, s, -1)
            if s != side:
                y = F.interpolate(y.permute(0, 3, 1, 2), size=(side, side), mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
            groups.append(y)
        x = sva.mm_projector(torch.cat(groups, dim=-1))  # [B, L, L, D]
        d = x.shape[-1]
        x = torch.cat([x, sva.image_newline.view(1, 1, 1, d).expand(b, side, 1, d).to(x.dtype)],
                      dim=2)
        lm = self.lm.model
        emb = lm.embed_tokens
        n = self.n_image
        h = torch.cat([emb(tokens[:, :1]), x.reshape(b, n, d).to(emb.weight.dtype),
                       emb(tokens[:, 1 + n:])], dim=1)
        pos = torch.arange(h.shape[1], device=h.device)[None]
        rope = lm.rotary_emb(h, pos)
        wins, masks = zip(*(self._windows(a, side) for a in adapted))
        ctx_in = ctx.repeat_interleave(side * side, 0)[:, None]
        for i, layer in enumerate(lm.layers):
            out = layer(h, attention_mask=None, position_ids=pos, position_embeddings=rope)
            h = out[0] if isinstance(out, tuple) else out
            if i in self.in_llm:  # image rows at 1 .. 1 + n, newline slots left as they are
                blk = h[:, 1:1 + n].reshape(b, side, side + 1, -1)
                q = blk[:, :, :side].reshape(b * side * side, 1, -1)
                q = sva.vision_sampler_layers[self.in_llm[i]](q, ctx_in, wins, masks)
                blk = torch.cat([q.view(b, side, side, -1).to(blk.dtype), blk[:, :, side:]], 2)
                h = torch.cat([h[:, :1], blk.reshape(b, n, -1), h[:, 1 + n:]], dim=1)
        logits = self.lm.lm_head(lm.norm(h))[:, :-1]
        keep = loss_mask[:, 1:]
        return F.cross_entropy(logits[keep].float(), tokens[:, 1:][keep])


def make_step(model, batch: int, seq: int, device: str, tie: bool = True, seed: int = 0):
    """(step(batch) -> loss, batch): AdamW (fused on CUDA) on SVA + LLM, global-norm clipping
    at 1, bf16 autocast; towers frozen in bf16. ``model``: the abstract JAX model (sizes)."""
    torch.manual_seed(seed)
    with torch.device(device):
        net = Cambrian(model, tie)
    net.towers.requires_grad_(False).to(torch.bfloat16).eval()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0, fused=device == "cuda")
    rng = np.random.default_rng(seed)
    vocab = model.llm.config.vocab_size
    data = {
        "pixels": [torch.randn(batch, 3, t.image_size, t.image_size, device=device,
                               dtype=torch.bfloat16) for t in net.towers],
        "tokens": torch.from_numpy(rng.integers(3, vocab, (batch, seq))).to(device),
    }
    mask = torch.zeros(batch, seq, dtype=torch.bool, device=device)
    mask[:, 1 + net.n_image:] = True
    data["loss_mask"] = mask

    def step(b):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = net(b["pixels"], b["tokens"], b["loss_mask"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        return loss.detach()

    return step, data
