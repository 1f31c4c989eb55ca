"""Convert a public encoder checkpoint once into a ready-to-load Flax directory.

    python -m cambrian.models.encoders.convert --family dinov2 --src ckpts/dinov2-large \\
        --dst ckpts/flax/dinov2-large [--variant L/14] [--verify photo.jpg]

The converted directory (``layout.save``) holds ``encoder.json`` (family, module, config) and
``params.safetensors``; ``encoders.load(family, dst)`` accepts it as well as the native
checkpoint. ``--verify IMAGE`` runs the family's PyTorch reference (its ``reference`` function)
on the image and prints the max abs feature error.
"""

from __future__ import annotations

import argparse
import sys

import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models import encoders
from cambrian.models.encoders import layout, preprocess


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", required=True, choices=encoders.families())
    ap.add_argument("--src", required=True, help="native checkpoint (file or directory)")
    ap.add_argument("--dst", required=True, help="output directory")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--verify", default=None, metavar="IMAGE",
                    help="compare against the PyTorch reference on this image")
    args = ap.parse_args(argv)
    enc = encoders.load(args.family, args.src, variant=args.variant, image_size=args.image_size)
    layout.save(enc, args.dst, family=args.family, variant=args.variant)
    n = sum(int(np.prod(s)) for s in layout.param_paths(enc).values())
    print(f"converted {args.family} {args.src} -> {args.dst} ({n / 1e6:.1f}M parameters)")
    if args.verify:
        err = verify(args.family, args.src, args.dst, args.verify, variant=args.variant,
                     image_size=args.image_size)
        print(f"verify {args.verify}: max abs feature error vs reference = {err:.3e}")
    return 0


def verify(family: str, src: str, dst: str, image_path: str, *, variant: str | None = None,
           image_size: int | None = None) -> float:
    """Max abs difference between the converted encoder in ``dst`` and the family's PyTorch
    reference built from the native checkpoint ``src``, on the image ``image_path``."""
    import torch
    from PIL import Image

    enc = encoders.load(family, dst, image_size=image_size)
    spec = encoders.preprocessing(family, variant).with_size(enc.config.image_size)
    x = preprocess.apply(np.asarray(Image.open(image_path).convert("RGB")), spec)[None]
    ours = np.asarray(nnx.jit(lambda m, x: m(x)[0])(enc, jnp.asarray(x)))
    px = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        want = encoders.family_module(family).reference(src, px, enc.config)
    if want.shape != ours.shape:
        raise RuntimeError(f"{family}: reference features {want.shape} vs ours {ours.shape}")
    return float(np.abs(ours - want).max())


if __name__ == "__main__":
    sys.exit(main())
