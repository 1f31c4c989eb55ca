"""MoCo v3 ViT-B/16 @224 (196 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/mocov3_b16.py:runlocal --workdir runs/mocov3_b16-local
    python launch/tpu.py --config encoders/mocov3_b16.py --workdir gs://BUCKET/runs/mocov3_b16

Checkpoint: ``mocov3/vit-b-300ep.pth.tar`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "mocov3", "B/16", res=224, checkpoint="mocov3/vit-b-300ep.pth.tar")
