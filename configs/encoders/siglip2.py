"""SigLIP 2 So400m/14 @384 (FixRes, last layer after the final norm, 729 tokens) encoder probe, Cambrian-1's encoder-sweep protocol; So400m/14 at 384 px is one of the SigLIP 2 paper's VLM-probe settings.

    python launch/tpu.py --config encoders/siglip2.py:runlocal --workdir runs/siglip2-local
    python launch/tpu.py --config encoders/siglip2.py --workdir gs://BUCKET/runs/siglip2

Checkpoint: ``google/siglip2-so400m-patch14-384`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "siglip2", "So400m/14-384", res=384, checkpoint="google/siglip2-so400m-patch14-384")
