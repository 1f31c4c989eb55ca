"""Spatial interleaving of two encoders' token sequences (I-MoF, the MMVP paper's mixture).

    python launch/tpu.py --config connectors/interleave.py:runlocal --workdir runs/interleave-local
    python launch/tpu.py --config connectors/interleave.py --workdir gs://BUCKET/runs/interleave

Encoders: CLIP-L/14@336 and DINOv2-L/14@336 (both 24x24), as in the MMVP study. Args: runlocal;
v4-8|v4-128|v5p-128 -- that TPU slice's settings (cambrian/slices.py).
"""

import os

from cambrian import config as C


def get_config(arg=None):
    a = C.probe_arg(arg)
    encs = {
        "clip": C.encoder("clip", "L/14-336", layer=-2, checkpoint=os.path.join(
            C.CHECKPOINTS, "openai/clip-vit-large-patch14-336")),
        "dinov2": C.encoder("dinov2", "L/14", image_size=336, tokens=576, checkpoint=os.path.join(
            C.CHECKPOINTS, "facebook/dinov2-large")),
    }
    c = C.connector_probe("interleave", {}, encs)
    if a.runlocal:
        C.runlocal_connector(c)
    C.apply_slice(c, a)
    return c
