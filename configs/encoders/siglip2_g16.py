"""SigLIP 2 g-opt/16 @384 (1.1B-parameter FixRes tower, last layer after the final norm, 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/siglip2_g16.py:runlocal --workdir runs/siglip2_g16-local
    python launch/tpu.py --config encoders/siglip2_g16.py --workdir gs://BUCKET/runs/siglip2_g16

Checkpoint: ``google/siglip2-giant-opt-patch16-384`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "siglip2", "g-opt/16-384", res=384, checkpoint="google/siglip2-giant-opt-patch16-384")
