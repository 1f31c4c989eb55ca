"""python -m cambrian.tools.mmvp {mine,build,patterns} ...

    mine      --images DIR | --recipe BUILT --encoder-a clip --checkpoint-a CKPT
              --encoder-b dinov2 --checkpoint-b CKPT [--tau-a 0.95 --tau-b 0.6] --out pairs.jsonl
    build     --pairs annotated.jsonl --out BENCH_DIR
    patterns  --benchmark BENCH_DIR [--run WORKDIR | --predictions FILE] [--profile cambrian]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from cambrian.tools import features, neighbours, sources
from cambrian.tools.mmvp import build, mine, patterns


def _encoder_args(p: argparse.ArgumentParser, side: str, family: str) -> None:
    s = side.lower()
    g = p.add_argument_group(f"encoder {side}")
    g.add_argument(f"--encoder-{s}", default=family, help=f"zoo family (default {family})")
    g.add_argument(f"--variant-{s}", default=None, help="variant (default: the family's)")
    g.add_argument(f"--checkpoint-{s}", default=None,
                   help="checkpoint to load (HF dir, timm/open_clip file or converted dir)")
    g.add_argument(f"--image-size-{s}", type=int, default=None)
    g.add_argument(f"--layer-{s}", type=int, default=None, help="feature layer (mean pooling)")
    g.add_argument(f"--pool-{s}", default="embed", choices=("embed", "cls", "mean"),
                   help="global vector per image: embed (the family's own image embedding, as "
                        "MMVP compared; clip/dinov2 checkpoints), cls (final CLS token) or mean "
                        "(mean of the feature map; any family)")


def _extractor(args, s: str) -> features.Extractor:
    ckpt = getattr(args, f"checkpoint_{s}")
    if not ckpt and not args.random_init:
        raise SystemExit(f"--checkpoint-{s} is required (pass --random-init to mine with "
                         "randomly initialised towers, e.g. to try the pipeline)")
    return features.zoo_extractor(getattr(args, f"encoder_{s}"),
                                  variant=getattr(args, f"variant_{s}"), checkpoint=ckpt,
                                  image_size=getattr(args, f"image_size_{s}"),
                                  layer=getattr(args, f"layer_{s}"), dtype=args.dtype,
                                  pad=args.pad)


def cmd_mine(args) -> int:
    items = sources.folder(args.images) if args.images else sources.recipe(args.recipe)
    a, b = _extractor(args, "a"), _extractor(args, "b")
    print(f"{len(items)} images; A = {a.label}; B = {b.label}", file=sys.stderr)
    mined = mine.mine(items, a, b, reduce_a=args.pool_a, reduce_b=args.pool_b,
                      tau_a=args.tau_a, tau_b=args.tau_b, k=args.neighbours, index=args.index,
                      batch_size=args.batch_size, cache_dir=args.cache or None)
    where = mine.write(mined, args.out, thumbnails=args.thumbnails)
    if "warning" in mined.meta:
        print(mined.meta["warning"], file=sys.stderr)
    print(f"{len(mined.pairs)} pairs -> {where['pairs']} ({mined.meta['index']} search; "
          f"metadata {where['meta']})")
    return 0


def cmd_build(args) -> int:
    out = build.build(args.pairs, args.out, skip_unannotated=args.skip_unannotated,
                      overwrite=args.overwrite)
    print(f"{out['pairs']} pairs ({out['questions']} questions, {out['skipped']} unannotated "
          f"lines skipped) -> {out['folder']}\nrun it: python launch/tpu.py --config "
          "eval/cambrian.py:suite=mmvp --config.checkpoint=RUN --workdir OUT "
          f"--config.eval.roots.mmvp={os.path.abspath(out['folder'])}")
    return 0


def cmd_patterns(args) -> int:
    samples = patterns.read_questions(args.benchmark)
    tags = patterns.pair_patterns(samples, build.pattern_overrides(args.benchmark))
    path = args.predictions or (os.path.join(args.run, "predictions", "mmvp.jsonl")
                                if args.run else None)
    if path is None:
        counts: dict[str, int] = {}
        for t in tags:
            counts[t] = counts.get(t, 0) + 1
        result = {"pairs_per_pattern": counts, "pairs": [
            {"index_1": samples[2 * p]["index"], "pattern": t} for p, t in enumerate(tags)]}
        print("\n".join(f"{k}: {v}" for k, v in counts.items()))
    else:
        from cambrian.eval import predictions

        records = patterns.join_predictions(samples, predictions.read(path), path)
        result = patterns.accuracy_by_pattern(records, tags, args.profile)
        print(patterns.table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cambrian.tools.mmvp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mine", help="find pairs similar under A and different under B")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images (recursive)")
    src.add_argument("--recipe", help="a dataset built by data_recipes/build.py (its --out)")
    _encoder_args(m, "A", "clip")
    _encoder_args(m, "B", "dinov2")
    m.add_argument("--random-init", action="store_true",
                   help="allow towers without --checkpoint (random weights, labelled as such)")
    m.add_argument("--tau-a", type=float, default=0.95, help="keep cos_A above (MMVP: 0.95)")
    m.add_argument("--tau-b", type=float, default=0.6, help="keep cos_B below (MMVP: 0.6)")
    m.add_argument("--neighbours", type=int, default=10,
                   help="A-neighbours searched per image")
    m.add_argument("--index", default="auto", choices=neighbours.INDEXES,
                   help=f"auto = exact up to {neighbours.EXACT_MAX} images, else HNSW")
    m.add_argument("--batch-size", type=int, default=64)
    m.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    m.add_argument("--pad", action="store_true",
                   help="pad to square first (Cambrian's input) instead of resize + centre crop")
    m.add_argument("--cache", default=os.path.join(os.path.expanduser(
        os.environ.get("CAMBRIAN_CACHE", "~/.cache/cambrian"))),
        help="feature cache root ('' = no cache)")
    m.add_argument("--thumbnails", type=int, default=100, help="pairs drawn for review")
    m.add_argument("--out", required=True, help="pairs.jsonl")
    m.set_defaults(handler=cmd_mine)

    b = sub.add_parser("build", help="annotated pairs -> an MMVP-format benchmark folder")
    b.add_argument("--pairs", required=True, help="annotated JSONL (see cambrian.tools.mmvp."
                   "build)")
    b.add_argument("--out", required=True, help="benchmark folder to write")
    b.add_argument("--skip-unannotated", action="store_true",
                   help="skip lines without any annotation field (pairs not kept in review)")
    b.add_argument("--overwrite", action="store_true")
    b.set_defaults(handler=cmd_build)

    p = sub.add_parser("patterns", help="tag the nine visual patterns; accuracy per pattern")
    p.add_argument("--benchmark", required=True, help="MMVP-format folder (Questions.csv)")
    pred = p.add_mutually_exclusive_group()
    pred.add_argument("--run", help="a run's workdir (reads predictions/mmvp.jsonl)")
    pred.add_argument("--predictions", help="a predictions JSONL file")
    p.add_argument("--profile", default="cambrian", help="scoring profile (as eval.profile)")
    p.add_argument("--out", default=None, help="also write the result as JSON")
    p.set_defaults(handler=cmd_patterns)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
