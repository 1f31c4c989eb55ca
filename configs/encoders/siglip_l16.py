"""SigLIP ViT-L/16 @384 (576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/siglip_l16.py:runlocal --workdir runs/siglip_l16-local
    python launch/tpu.py --config encoders/siglip_l16.py --workdir gs://BUCKET/runs/siglip_l16

Checkpoint: ``google/siglip-large-patch16-384`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "siglip", "L/16-384", res=384, checkpoint="google/siglip-large-patch16-384")
