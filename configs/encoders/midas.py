"""MiDaS 3.0 / DPT-Large ViT-L/16 @384 (576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/midas.py:runlocal --workdir runs/midas-local
    python launch/tpu.py --config encoders/midas.py --workdir gs://BUCKET/runs/midas

Checkpoint: ``Intel/dpt-large`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "dpt", "L/16-384", res=384, checkpoint="Intel/dpt-large")
