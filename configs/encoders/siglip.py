"""SigLIP ViT-SO400M/14 @384 (27x27 = 729 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/siglip.py:runlocal --workdir runs/siglip-local
    python launch/tpu.py --config encoders/siglip.py --workdir gs://BUCKET/runs/siglip

Checkpoint: ``timm/ViT-SO400M-14-SigLIP-384`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "siglip", "So400m/14-384", res=384, checkpoint="timm/ViT-SO400M-14-SigLIP-384")
