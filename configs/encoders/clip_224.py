"""OpenAI CLIP ViT-L/14 @224 (penultimate layer, 256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/clip_224.py:runlocal --workdir runs/clip_224-local
    python launch/tpu.py --config encoders/clip_224.py --workdir gs://BUCKET/runs/clip_224

Checkpoint: ``openai/clip-vit-large-patch14`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "clip", "L/14", res=224, layer=-2, checkpoint="openai/clip-vit-large-patch14")
