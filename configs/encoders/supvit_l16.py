"""Supervised ViT-L/16 IN-21k @224 (196 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/supvit_l16.py:runlocal --workdir runs/supvit_l16-local
    python launch/tpu.py --config encoders/supvit_l16.py --workdir gs://BUCKET/runs/supvit_l16

Checkpoint: ``timm/vit_large_patch16_224.orig_in21k`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "supvit", "L/16", res=224, checkpoint="timm/vit_large_patch16_224.orig_in21k")
