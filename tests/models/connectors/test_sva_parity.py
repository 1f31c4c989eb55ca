"""SVA parity against a PyTorch SVA written step by step from Cambrian-1's released code.

The reference works in Cambrian's layout (token sequences float[B, N_k, C_k], windows built with
view/permute, masks re-laid out and reset like ``prepare_multimodal_data``, SDPA with a boolean key
mask) and uses Cambrian's parameter names, so its ``state_dict`` is exactly what a Cambrian
checkpoint holds; ``sva.load`` reads it and both run on the same random padded inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import jax.numpy as jnp  # noqa: E402

from cambrian.models.connectors import sva  # noqa: E402

pytestmark = pytest.mark.parity


class RefMLP(nn.Module):
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.linear_1 = nn.Linear(d_in, d_hidden, bias=False)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(d_hidden, d_out, bias=False)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class RefMultiKVCrossAttention(nn.Module):
    def __init__(self, q_dim, kv_dims, hidden, heads):
        super().__init__()
        self.heads, self.hidden, self.n = heads, hidden, len(kv_dims)
        self.q_proj = nn.Sequential(nn.LayerNorm(q_dim), nn.Linear(q_dim, hidden, bias=False))
        for i, d in enumerate(kv_dims):
            for kv in ("k", "v"):
                setattr(self, f"{kv}_proj_{i}",
                        nn.Sequential(nn.LayerNorm(d), nn.Linear(d, hidden, bias=False)))
        self.o_proj = nn.Linear(hidden, q_dim, bias=False)

    def forward(self, queries, *latents_and_masks):
        lat, masks = latents_and_masks[: self.n], latents_and_masks[self.n:]
        bsz, q_len, _ = queries.shape
        q = self.q_proj(queries)
        k = torch.cat([getattr(self, f"k_proj_{i}")(lat[i]) for i in range(self.n)], dim=1)
        v = torch.cat([getattr(self, f"v_proj_{i}")(lat[i]) for i in range(self.n)], dim=1)
        hd = self.hidden // self.heads
        q = q.view(bsz, q_len, self.heads, hd).transpose(1, 2)
        k = k.view(bsz, -1, self.heads, hd).transpose(1, 2)
        v = v.view(bsz, -1, self.heads, hd).transpose(1, 2)
        mask = torch.cat(masks, dim=-1)
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(o.transpose(1, 2).reshape(bsz, q_len, self.hidden))


class RefLayer(nn.Module):
    def __init__(self, q_dim, context_dim, kv_dims, kv_sizes, hidden, heads):
        super().__init__()
        self.n = len(kv_dims)
        self.proj_context = nn.Linear(context_dim, hidden, bias=False)
        self.proj_in = nn.Linear(q_dim + hidden, hidden, bias=False)
        self.proj_out = RefMLP(hidden, hidden, q_dim)
        self.norm = nn.LayerNorm(hidden)
        self.cross_attn = RefMultiKVCrossAttention(hidden, kv_dims, hidden, heads)
        for i, s in enumerate(kv_sizes):
            if s > 1:
                setattr(self, f"pos_embed_{i}", nn.Parameter(torch.randn(s**2, hidden)))

    def forward(self, queries, context, *latents_and_masks):
        residual = queries
        context = self.proj_context(context)
        queries = self.proj_in(torch.cat([queries, context], -1))
        lat, masks = latents_and_masks[: self.n], latents_and_masks[self.n:]
        masks = [m.view(m.shape[0], 1, 1, -1).expand(-1, -1, queries.shape[1], -1) for m in masks]
        lat = [x + getattr(self, f"pos_embed_{i}")[None] if x.shape[1] > 1 else x
               for i, x in enumerate(lat)]
        queries = queries + self.cross_attn(queries, *lat, *masks)
        return self.proj_out(self.norm(queries)) + residual


class RefSampler(nn.Module):
    def __init__(self, q_dim, context_dim, kv_dims, kv_sizes, hidden, heads, depth):
        super().__init__()
        self.layers = nn.ModuleList(
            [RefLayer(q_dim, context_dim, kv_dims, kv_sizes, hidden, heads) for _ in range(depth)])

    def forward(self, queries, context, *latents_and_masks):
        for layer in self.layers:
            queries = layer(queries, context, *latents_and_masks)
        return queries


class RefCambrianSVA(nn.Module):
    """Cambrian's CambrianMetaModel SVA parts with the training (XLA) data path."""

    def __init__(self, channels, token_lens, image_token_len, llm_dim, hidden, heads, depth, groups,
                 n_in_llm):
        super().__init__()
        self.side = int(image_token_len**0.5)
        self.token_lens, self.groups = token_lens, groups
        self.sizes = [int(t**0.5) // self.side for t in token_lens]
        for i, c in enumerate(channels):
            setattr(self, f"mm_projector_aux_{i}", nn.Sequential(
                nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.LayerNorm(hidden)))
        for g in range(groups):
            setattr(self, f"vision_sampler_{g}",
                    RefSampler(hidden, hidden, [hidden] * len(channels), self.sizes, hidden, heads,
                               depth))
        self.vision_sampler_layers = nn.ModuleList(
            [RefSampler(llm_dim, hidden, [hidden] * len(channels), self.sizes, hidden, heads, 1)
             for _ in range(n_in_llm)])
        self.mm_projector = nn.Sequential(nn.Linear(hidden * groups, llm_dim), nn.GELU(),
                                          nn.Linear(llm_dim, llm_dim))
        self.vision_query = nn.Parameter(torch.randn(groups, hidden))
        self.image_newline = nn.Parameter(torch.randn(llm_dim))

    def window_masks(self, pixel_masks):
        # prepare_multimodal_data: per image, view(L, m, L, m) -> permute -> (L*L, m*m), then an
        # all-False window is reset to all-True.
        out = []
        for mask, size in zip(pixel_masks, self.sizes):
            bs = mask.shape[0]
            m = mask.view(bs, self.side, size, self.side, size).permute(0, 1, 3, 2, 4)
            m = m.reshape(bs, self.side * self.side, size * size).clone()
            m[m.sum(-1) == 0] = True
            out.append(m)
        return out

    def rearrange(self, feats, masks):
        # rearrange_vision_tower_features_train
        fr, mr = [], []
        bs = feats[0].shape[0]
        for f, m in zip(feats, masks):
            r = int(f.shape[1] ** 0.5) // self.side
            f = f.view(bs, self.side, r, self.side, r, -1).permute(0, 1, 3, 2, 4, 5).contiguous()
            fr.append(f.flatten(0, 2).flatten(1, 2))
            mr.append(m.view(bs * self.side * self.side, r * r))
        return fr, mr

    def forward(self, feats, pixel_masks):
        bs = feats[0].shape[0]
        q_num = self.side**2
        adapted = []
        for i, f in enumerate(feats):
            a = getattr(self, f"mm_projector_aux_{i}")(f)
            if i == 0:
                context = a.mean(1).view(bs, 1, 1, -1)
            adapted.append(a)
        fr, mr = self.rearrange(adapted, self.window_masks(pixel_masks))
        outs = []
        for g in range(self.groups):
            q = self.vision_query[g, :].view(1, 1, 1, -1).expand(bs, q_num, -1, -1)
            c = context.expand(-1, q_num, 1, -1).flatten(0, 1)
            q = getattr(self, f"vision_sampler_{g}")(q.flatten(0, 1), c, *fr, *mr)
            outs.append(q.view(bs, q_num, -1))
        x = self.mm_projector(torch.cat(outs, -1)).view(bs, self.side, self.side, -1)
        x = torch.cat([x, self.image_newline[None, None, None].expand(bs, self.side, 1, -1)], 2)
        self.cache = (fr, mr, context.expand(-1, q_num, 1, -1).flatten(0, 1))
        return x.flatten(1, 2)

    def in_llm(self, k, hidden):
        # cambrian_llama.py (XLA path): drop the newline column, run the layer, write back.
        fr, mr, context = self.cache
        bs, side = hidden.shape[0], self.side
        h = hidden.clone().view(bs, side, side + 1, -1)
        q, nl = h[:, :, :-1, :], h[:, :, -1:, :]
        q = self.vision_sampler_layers[k](q.reshape(bs * side * side, 1, -1), context, *fr, *mr)
        return torch.cat([q.view(bs, side, side, -1), nl], 2).flatten(1, 2)


SIDE, CHANNELS, MULTIPLES, HIDDEN, HEADS, LLM = 4, (20, 24, 28), (1, 2, 4), 32, 4, 48


def _pixel_masks(bs):
    """Letter-box masks per encoder (bool[B, mL, mL]): item 0 unpadded, item 1 padded top/bottom,
    item 2 padded left/right; the first query row/column is all padding in every encoder and the
    second is partly padded."""
    masks = []
    for m in MULTIPLES:
        n = SIDE * m
        pad = m + (m // 2)  # m=1: 1 (full window), m=2: 3, m=4: 6 (full + partial)
        v = np.ones((bs, n, n), bool)
        v[1, :pad], v[1, n - pad:] = False, False
        v[2, :, :pad], v[2, :, n - pad:] = False, False
        masks.append(v)
    return masks


def _reference(depth, groups, n_in_llm, seed):
    torch.manual_seed(seed)
    ref = RefCambrianSVA(CHANNELS, [(SIDE * m) ** 2 for m in MULTIPLES], SIDE**2, LLM, HIDDEN,
                         HEADS, depth, groups, n_in_llm).float().eval()
    with torch.no_grad():  # LayerNorm affine params are 1/0 at init; make them count
        for mod in ref.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.normal_(1.0, 0.2)
                mod.bias.normal_(0.0, 0.2)
    return ref


def _inputs(bs, seed):
    r = np.random.default_rng(seed)
    feats = [r.normal(size=(bs, SIDE * m, SIDE * m, c)).astype(np.float32) * 2
             for m, c in zip(MULTIPLES, CHANNELS)]
    return feats, _pixel_masks(bs)


def _load(ref, tmp_path, depth, groups, n_in_llm):
    path = str(tmp_path / "mm_projector.bin")
    torch.save({f"model.{k}": v for k, v in ref.state_dict().items()}, path)
    return sva.load(path, encoder_channels=CHANNELS,
                    encoder_grids=[(SIDE * m, SIDE * m) for m in MULTIPLES], llm_dim=LLM,
                    query_side=SIDE, depth=depth, groups=groups, vision_hidden=HIDDEN,
                    heads=HEADS, in_llm_layers=n_in_llm)


@pytest.mark.parametrize("depth,groups", [(1, 1), (1, 2), (3, 1), (3, 2)])
def test_sva_matches_cambrian_reference(tmp_path, depth, groups):
    bs = 3
    ref = _reference(depth, groups, 2, seed=depth * 10 + groups)
    ours = _load(ref, tmp_path, depth, groups, 2)
    assert ours.multiples == MULTIPLES
    feats, masks = _inputs(bs, seed=depth + groups)
    with torch.no_grad():
        want = ref([torch.from_numpy(f).flatten(1, 2) for f in feats],
                   [torch.from_numpy(m) for m in masks]).numpy()
    got, out = ours([jnp.asarray(f) for f in feats], [jnp.asarray(m) for m in masks])
    assert got.shape == (bs, SIDE * (SIDE + 1), LLM)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5, rtol=0)

    # In-LLM layers on random LLM hidden states of the image slice.
    hidden = np.random.default_rng(7).normal(size=(bs, SIDE * (SIDE + 1), LLM)).astype(np.float32)
    for k in range(2):
        with torch.no_grad():
            want_h = ref.in_llm(k, torch.from_numpy(hidden)).numpy()
        got_h = ours.apply_in_llm(k, jnp.asarray(hidden), out)
        np.testing.assert_allclose(np.asarray(got_h), want_h, atol=1e-5, rtol=0)


def test_load_names_missing_tensor(tmp_path):
    ref = _reference(1, 1, 0, seed=0)
    sd = {f"model.{k}": v for k, v in ref.state_dict().items()
          if k != "vision_sampler_0.layers.0.pos_embed_2"}
    path = str(tmp_path / "partial.bin")
    torch.save(sd, path)
    with pytest.raises(ValueError, match="vision_sampler_0.layers.0.pos_embed_2"):
        _load_path(path, 1, 1, 0)


def _load_path(path, depth, groups, n_in_llm):
    return sva.load(path, encoder_channels=CHANNELS,
                    encoder_grids=[(SIDE * m, SIDE * m) for m in MULTIPLES], llm_dim=LLM,
                    query_side=SIDE, depth=depth, groups=groups, vision_hidden=HIDDEN,
                    heads=HEADS, in_llm_layers=n_in_llm)
