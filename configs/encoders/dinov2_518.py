"""DINOv2 ViT-L/14 @518 (37x37 bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/dinov2_518.py:runlocal --workdir runs/dinov2_518-local
    python launch/tpu.py --config encoders/dinov2_518.py --workdir gs://BUCKET/runs/dinov2_518

Checkpoint: ``facebook/dinov2-large`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "dinov2", "L/14", res=518, tokens=576, checkpoint="facebook/dinov2-large")
