"""How fast does CLIP-blind pair mining run, and does its time grow linearly with the images?

    python benchmarks/mmvp_mine.py [--sizes 500,1000,2000] [--repeats 3] [--family-a clip
        --family-b dinov2 --variant runlocal] [--search-sizes 20000,40000,80000]

1. End to end, as ``python -m cambrian.tools.mmvp mine`` runs it, at each size: JPEG decode +
   preprocessing + both towers (random-init ``runlocal`` variants: the pipeline's cost, not a
   pretrained model's) + HNSW search + exact re-scoring, no feature cache, towers compiled
   beforehand. images/s at the largest size; the scaling exponent is the slope of
   log(time) over log(images) (1 = linear), for the whole run and for its two stages (embedding,
   search), and for the process's CPU seconds (the work done, steadier than wall time on a
   machine shared with other jobs).
2. The search alone on random unit vectors (dim 64) at larger sizes: the exponent of the exact
   search (quadratic) beside the HNSW index (about linear), and the HNSW recall of the exact
   neighbours at the smallest of those sizes.

Every time is the median of ``--repeats`` runs, the sizes interleaved within each repeat (side by
side: a change of machine load hits every size). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np
from PIL import Image


def write_images(folder: str, n: int, seed: int = 0) -> None:
    """n smooth random 128 x 128 JPEGs (an 8 x 8 colour field upsampled)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((128, 128), Image.BICUBIC).save(
            os.path.join(folder, f"{i:06d}.jpg"), quality=90)


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="500,1000,2000")
    ap.add_argument("--search-sizes", default="20000,40000,80000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--family-a", default="clip")
    ap.add_argument("--family-b", default="dinov2")
    ap.add_argument("--variant", default="runlocal")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    search_sizes = [int(s) for s in args.search_sizes.split(",")]

    import jax
    import jaxlib
    import usearch

    from cambrian.tools import features, neighbours, sources
    from cambrian.tools.mmvp import mine

    print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, usearch {usearch.__version__}, "
          f"numpy {np.__version__}; {jax.device_count()} x {jax.devices()[0].device_kind}; "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})")
    a = features.zoo_extractor(args.family_a, variant=args.variant)
    b = features.zoo_extractor(args.family_b, variant=args.variant)
    print(f"A = {a.label}\nB = {b.label}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "images")
        os.makedirs(folder)
        write_images(folder, max(sizes))
        every = sources.folder(folder)
        warm = every[:args.batch_size]
        for ext in (a, b):  # compile both towers outside the timed runs
            features.extract(warm, ext, reduce="cls", batch_size=args.batch_size,
                             progress=False)
        # sizes interleaved within each repeat, so a change of machine load hits all of them
        runs: dict[int, list] = {n: [] for n in sizes}
        for _ in range(args.repeats):
            for n in sizes:
                t0, c0 = time.perf_counter(), time.process_time()
                meta = mine.mine(every[:n], a, b, reduce_a="cls", reduce_b="cls", tau_a=0.9,
                                 tau_b=0.5, k=10, index="hnsw", batch_size=args.batch_size,
                                 progress=False).meta
                runs[n].append((time.perf_counter() - t0, meta["embed_s"], meta["search_s"],
                                time.process_time() - c0))
        times, embed, search_s, cpu = [], [], [], []
        for n in sizes:
            t, e, s, c = (statistics.median(r[i] for r in runs[n]) for i in range(4))
            times.append(t)
            embed.append(e)
            search_s.append(s)
            cpu.append(c)
            print(f"mine {n:>7} images: {t:8.3f} s  ({n / t:8.1f} images/s), {c:.3f} CPU-s; "
                  f"embedding both towers {e:.3f} s ({n / e:.1f} images/s), HNSW search "
                  f"{s:.3f} s")

    rng = np.random.default_rng(0)
    vectors = {n: neighbours.normalise(rng.normal(size=(n, 64))) for n in search_sizes}
    kinds = {"exact": neighbours.exact, "hnsw": neighbours.hnsw}
    found: dict[tuple, list] = {(k, n): [] for k in kinds for n in search_sizes}
    for _ in range(args.repeats):
        for n in search_sizes:
            for kind, fn in kinds.items():
                t0 = time.perf_counter()
                fn(vectors[n], 10)
                found[kind, n].append(time.perf_counter() - t0)
    search = {k: [statistics.median(found[k, n]) for n in search_sizes] for k in kinds}
    for n, te, th in zip(search_sizes, search["exact"], search["hnsw"]):
        print(f"search {n:>7} vectors: exact {te:8.3f} s, hnsw {th:8.3f} s")
    x = neighbours.normalise(rng.normal(size=(search_sizes[0], 64)))
    ek, _ = neighbours.exact(x, 10)
    hk, _ = neighbours.hnsw(x, 10)
    recall = float(np.mean([len(set(e) & set(h)) / 10 for e, h in zip(ek, hk)]))
    print(f"HNSW recall@10 of the exact neighbours ({search_sizes[0]} vectors): {recall:.4f}")

    print(json.dumps({
        "images_per_s": round(sizes[-1] / times[-1], 1),
        "scaling_exponent": round(slope(sizes, times), 3),
        f"time_ratio_{sizes[-1] // sizes[0]}x_images": round(times[-1] / times[0], 3),
        "cpu_seconds_scaling_exponent": round(slope(sizes, cpu), 3),
        "embed_images_per_s": round(sizes[-1] / embed[-1], 1),
        "embed_scaling_exponent": round(slope(sizes, embed), 3),
        "mine_search_scaling_exponent": round(slope(sizes, search_s), 3),
        "search_exponent_exact": round(slope(search_sizes, search["exact"]), 3),
        "search_exponent_hnsw": round(slope(search_sizes, search["hnsw"]), 3),
        "hnsw_over_exact_time_at_largest": round(search["hnsw"][-1] / search["exact"][-1], 3),
        "hnsw_recall_at_10": round(recall, 4),
    }))


if __name__ == "__main__":
    main()
