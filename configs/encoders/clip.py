"""OpenAI CLIP ViT-L/14 @336 (penultimate layer, 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/clip.py:runlocal --workdir runs/clip-local
    python launch/tpu.py --config encoders/clip.py --workdir gs://BUCKET/runs/clip

Checkpoint: ``openai/clip-vit-large-patch14-336`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "clip", "L/14-336", res=336, layer=-2, checkpoint="openai/clip-vit-large-patch14-336")
