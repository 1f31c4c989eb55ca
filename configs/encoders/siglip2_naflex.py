"""SigLIP 2 So400m/16 NaFlex @384 (a square image is one 24x24 = 576-patch sequence, last layer after the final norm) encoder probe, Cambrian-1's encoder-sweep protocol; 576 patches is one of the paper's NaFlex sequence lengths.

    python launch/tpu.py --config encoders/siglip2_naflex.py:runlocal --workdir runs/siglip2_naflex-local
    python launch/tpu.py --config encoders/siglip2_naflex.py --workdir gs://BUCKET/runs/siglip2_naflex

Checkpoint: ``google/siglip2-so400m-patch16-naflex`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "siglip2", "So400m/16-naflex", res=384, checkpoint="google/siglip2-so400m-patch16-naflex")
