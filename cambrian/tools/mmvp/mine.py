"""Mining "A-blind" pairs: images similar under encoder A, different under encoder B.

MMVP (Tong et al., 2024, "Eyes Wide Shut?", Sec. 2.1) called a pair CLIP-blind when the cosine
similarity of the two images' CLIP ViT-L/14 embeddings is above 0.95 and that of their DINOv2
ViT-L/14 embeddings below 0.6, searching ImageNet and LAION-Aesthetics. Here A and B are any two
towers of the zoo, each reduced to one global vector per image (``features.REDUCTIONS``). The
default, ``embed``, is the family's own image embedding as MMVP compared it (``embedding``: CLIP's
``get_image_features``, DINOv2's ``pooler_output``); ``cls`` takes the final CLS token as the tower
returns it, ``mean`` averages the feature map (any family, random-init towers included).

Search: the ``k`` nearest neighbours of every image under A (exact, or an HNSW index for large
sets: ``neighbours``) above ``tau_a``; each candidate's B similarity is computed exactly and kept
below ``tau_b``. Pairs are ranked by ``sim_a - sim_b`` (the most A-blind first).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence

import numpy as np

from cambrian.tools import features, neighbours
from cambrian.tools.features import Extractor, ImageItem


@dataclasses.dataclass(frozen=True)
class Pair:
    i: int
    j: int
    sim_a: float
    sim_b: float

    @property
    def gap(self) -> float:
        return self.sim_a - self.sim_b


def find_pairs(emb_a: np.ndarray, emb_b: np.ndarray, *, tau_a: float = 0.95, tau_b: float = 0.6,
               k: int = 10, index: str = "auto") -> tuple[list[Pair], dict]:
    """Pairs (i < j) with cos_A > ``tau_a`` among each image's ``k`` A-neighbours and
    cos_B < ``tau_b``, ranked by cos_A - cos_B; ``emb_a`` float[N, Da], ``emb_b`` float[N, Db].
    Also returns search statistics."""
    if len(emb_a) != len(emb_b):
        raise ValueError(f"{len(emb_a)} A embeddings but {len(emb_b)} B embeddings")
    a, b = neighbours.normalise(emb_a), neighbours.normalise(emb_b)
    t0 = time.perf_counter()
    keys, sims, used = neighbours.neighbours(a, k, index)
    search_s = time.perf_counter() - t0
    rows, cols = np.nonzero((sims > tau_a) & (keys >= 0))
    i, j = rows, keys[rows, cols]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    uniq = np.unique(np.stack([lo, hi], axis=1), axis=0) if len(lo) else np.zeros((0, 2), int)
    lo, hi = uniq[:, 0], uniq[:, 1]
    # both similarities recomputed exactly: the index only proposes candidates
    sa = np.einsum("nd,nd->n", a[lo], a[hi])
    sb = np.einsum("nd,nd->n", b[lo], b[hi])
    keep = (sa > tau_a) & (sb < tau_b)
    lo, hi, sa, sb = lo[keep], hi[keep], sa[keep], sb[keep]
    order = np.lexsort((hi, lo, -(sa - sb)))
    pairs = [Pair(int(lo[o]), int(hi[o]), float(sa[o]), float(sb[o])) for o in order]
    stats = {"index": used, "neighbours": k, "candidates_above_tau_a": int(len(keep)),
             "pairs": len(pairs), "search_s": search_s}
    return pairs, stats


def embed(items: Sequence[ImageItem], extractor: Extractor, reduce: str, *, batch_size: int,
          cache_dir: str | None, progress: bool = True) -> np.ndarray:
    """float32[N, D]: one global vector per image."""
    feats = features.extract(items, extractor, reduce=reduce, batch_size=batch_size,
                             cache_dir=cache_dir, progress=progress)
    return feats.reshape(len(items), -1)


@dataclasses.dataclass
class Mined:
    items: Sequence[ImageItem]
    pairs: list[Pair]
    meta: dict


def mine(items: Sequence[ImageItem], a: Extractor, b: Extractor, *, reduce_a: str = "embed",
         reduce_b: str = "embed", tau_a: float = 0.95, tau_b: float = 0.6, k: int = 10,
         index: str = "auto", batch_size: int = 64, cache_dir: str | None = None,
         progress: bool = True) -> Mined:
    """Embeds ``items`` with both towers (cached) and finds the A-blind pairs."""
    for ext, red in ((a, reduce_a), (b, reduce_b)):
        features.check_reduction(ext, red)
    t0 = time.perf_counter()
    emb_a = embed(items, a, reduce_a, batch_size=batch_size, cache_dir=cache_dir,
                  progress=progress)
    emb_b = embed(items, b, reduce_b, batch_size=batch_size, cache_dir=cache_dir,
                  progress=progress)
    embed_s = time.perf_counter() - t0
    pairs, stats = find_pairs(emb_a, emb_b, tau_a=tau_a, tau_b=tau_b, k=k, index=index)
    meta = {
        "images": len(items),
        "encoder_a": {"label": a.label, "pretrained": a.pretrained, **a.identity,
                      "reduce": reduce_a},
        "encoder_b": {"label": b.label, "pretrained": b.pretrained, **b.identity,
                      "reduce": reduce_b},
        "tau_a": tau_a, "tau_b": tau_b, "embed_s": embed_s, **stats,
    }
    if not (a.pretrained and b.pretrained):
        meta["warning"] = ("NOT PRETRAINED: at least one encoder has random weights (or is a "
                           "test tower); these pairs say nothing about a pretrained model")
    return Mined(items=items, pairs=pairs, meta=meta)


def paths(out: str) -> dict[str, str]:
    """The files written beside ``out`` (``pairs.jsonl``): metadata, thumbnails, contact sheet."""
    stem = os.path.splitext(out)[0]
    return {"pairs": out, "meta": stem + ".meta.json", "thumbnails": stem + "_thumbnails",
            "contact_sheet": stem + "_contact.png"}


def write(mined: Mined, out: str, *, thumbnails: int = 100) -> dict[str, str]:
    """``out`` (JSONL, one ranked pair a line), ``<stem>.meta.json``, and for the best
    ``thumbnails`` pairs one PNG each plus a contact sheet. Returns the paths."""
    from cambrian.tools.mmvp import thumbnails as thumbs

    where = paths(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    random = "warning" in mined.meta
    shown = mined.pairs[:thumbnails]
    pngs = []
    if shown:
        os.makedirs(where["thumbnails"], exist_ok=True)
    for rank, p in enumerate(shown, 1):
        png = os.path.join(where["thumbnails"], f"{rank:05d}.png")
        thumbs.pair_image(mined.items[p.i].ref, mined.items[p.j].ref, rank, p.sim_a, p.sim_b,
                          random=random).save(png)
        pngs.append(png)
    if pngs:
        thumbs.contact_sheet(pngs, mined.meta).save(where["contact_sheet"])
    with open(out + ".tmp", "w") as f:
        for rank, p in enumerate(mined.pairs, 1):
            rec = {"rank": rank, "image_1": mined.items[p.i].ref,
                   "image_2": mined.items[p.j].ref, "sim_a": round(p.sim_a, 6),
                   "sim_b": round(p.sim_b, 6), "gap": round(p.gap, 6)}
            if rank <= len(pngs):
                rec["thumbnail"] = os.path.relpath(pngs[rank - 1], os.path.dirname(
                    os.path.abspath(out)))
            f.write(json.dumps(rec) + "\n")
    os.replace(out + ".tmp", out)
    with open(where["meta"], "w") as f:
        json.dump(mined.meta, f, indent=1, default=str)
    return where
