"""``python -m cambrian.release {convert,chat,reproduce}``: released Cambrian-1 from the shell.

    python -m cambrian.release convert --checkpoint cambrian-8b --towers-root towers --out runs/c8b
    python launch/tpu.py --config eval/cambrian.py --config.checkpoint=runs/c8b --workdir runs/e
    python -m cambrian.release chat --checkpoint cambrian-8b --towers-root towers \\
        --image a.jpg "What is in the image?"

``convert`` writes a run directory as training leaves one (``config.json`` + an orbax checkpoint
of the params), so eval-only scoring reads it like any run. ``reproduce`` is
``cambrian/release/reproduce.py``'s ``main(argv)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import numpy as np
from flax import nnx
from PIL import Image

from cambrian import checkpoint, fileio
from cambrian import config as C
from cambrian.release import model as M

STAGE = "release"  # the meta stage name of a converted checkpoint (no training stage wrote it)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="local copy of nyu-visionx/cambrian-8b, -13b or -34b")
    p.add_argument("--towers-root", default=None,
                   help="directory holding each tower's hub repo as <owner>/<name>/")
    p.add_argument("--tower", action="append", default=[], metavar="NAME=DIR",
                   help="one tower's directory (its name in config.json); repeatable")


def _towers(args) -> dict[str, str]:
    out = {}
    for item in args.tower:
        name, sep, path = item.rpartition("=")
        if not sep or not name:
            raise SystemExit(f"--tower {item!r}: expected NAME=DIR (NAME as in the release's "
                             "mm_vision_tower_aux_list)")
        out[name] = path
    return out


def convert(args) -> str:
    """Writes ``args.out`` (config.json + checkpoints/); returns it."""
    # absolute paths: the run directory's config.json is read from anywhere
    rel = M.load(os.path.abspath(args.checkpoint),
                 towers_root=args.towers_root and os.path.abspath(args.towers_root),
                 towers={k: os.path.abspath(v) for k, v in _towers(args).items()})
    config = C.base_config()
    config.model = rel.config.model
    config.name = f"release:{os.path.basename(os.path.normpath(args.checkpoint))}"
    for stage in config.stages.values():  # nothing to train: it is a finished model
        stage.steps = 0
    out = args.out
    fileio.write_text(fileio.join(out, "config.json"), C.to_json(config))
    mngr = checkpoint.manager(out, keep=1, asynchronous=False)
    params = nnx.state(rel.model, nnx.Param)
    meta = {"stage": STAGE, "stage_step": 0, "done_stages": {STAGE: 0},
            "config_hash": C.config_hash(config)}
    checkpoint.save(mngr, 0, {"params": nnx.to_pure_dict(params)}, meta)
    mngr.wait_until_finished()
    print(f"wrote {out}: score it with python launch/tpu.py --config eval/cambrian.py "
          f"--config.checkpoint={out} --workdir WORKDIR")
    return out


def chat(args) -> str:
    rel = M.load(args.checkpoint, towers_root=args.towers_root, towers=_towers(args),
                 dtype=args.dtype)
    with Image.open(args.image) as im:
        image = np.asarray(im.convert("RGB"))
    text = rel.answer(image, args.question, conv_mode=args.conv_mode,
                      max_new_tokens=args.max_new_tokens)
    print(text)
    return text


def reproduce(argv: list[str]) -> int:
    try:
        mod = importlib.import_module("cambrian.release.reproduce")
    except ModuleNotFoundError as e:
        if e.name != "cambrian.release.reproduce":
            raise
        raise SystemExit("reproduce: cambrian/release/reproduce.py is not in this checkout "
                         "yet") from None
    return mod.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reproduce"]:
        return reproduce(argv[1:]) or 0
    p = argparse.ArgumentParser(prog="python -m cambrian.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="a release -> a run directory eval-only scoring reads")
    _common(c)
    c.add_argument("--out", required=True, help="the run directory to write")
    h = sub.add_parser("chat", help="answer one question about one image")
    _common(h)
    h.add_argument("--image", required=True)
    h.add_argument("--conv-mode", default=None,
                   help="chat template (default: the release's, e.g. llama_3 for cambrian-8b)")
    h.add_argument("--max-new-tokens", type=int, default=512)
    h.add_argument("--dtype", default="float32", choices=M.DTYPES)
    h.add_argument("question")
    sub.add_parser("reproduce", help="score a release as the paper did (reproduce.py)",
                   add_help=False)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    {"convert": convert, "chat": chat}[args.command](args)
    return 0
