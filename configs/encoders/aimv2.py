"""AIMv2 ViT-L/14 @336 (576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/aimv2.py:runlocal --workdir runs/aimv2-local
    python launch/tpu.py --config encoders/aimv2.py --workdir gs://BUCKET/runs/aimv2

Checkpoint: ``apple/aimv2-large-patch14-336`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "aimv2", "L/14@336", res=336, checkpoint="apple/aimv2-large-patch14-336")
