"""Stable Diffusion 2.1 features @512 (up blocks 0..3 at 32x32 = 1024 tokens, 3520 channels) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/sd21.py:runlocal --workdir runs/sd21-local
    python launch/tpu.py --config encoders/sd21.py --workdir gs://BUCKET/runs/sd21

Checkpoint: ``stabilityai/stable-diffusion-2-1`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "sd_diffusion", "2.1", res=512, checkpoint="stabilityai/stable-diffusion-2-1")
