"""EVA-CLIP-02 ViT-L/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/eva_clip_224.py:runlocal --workdir runs/eva_clip_224-local
    python launch/tpu.py --config encoders/eva_clip_224.py --workdir gs://BUCKET/runs/eva_clip_224

Checkpoint: ``timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "eva_clip", "L/14@224", res=224, checkpoint="timm/eva02_large_patch14_clip_224.merged2b_s4b_b131k")
