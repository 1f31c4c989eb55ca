"""SAM ViT-L/16 @1024 (64x64 before the neck, bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/sam_l.py:runlocal --workdir runs/sam_l-local
    python launch/tpu.py --config encoders/sam_l.py --workdir gs://BUCKET/runs/sam_l

Checkpoint: ``facebook/sam-vit-large`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "sam", "L/16", res=1024, tokens=576, checkpoint="facebook/sam-vit-large")
