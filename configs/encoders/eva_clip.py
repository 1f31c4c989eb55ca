"""EVA-CLIP-02 ViT-L/14 @336 (576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/eva_clip.py:runlocal --workdir runs/eva_clip-local
    python launch/tpu.py --config encoders/eva_clip.py --workdir gs://BUCKET/runs/eva_clip

Checkpoint: ``timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "eva_clip", "L/14@336", res=336, checkpoint="timm/eva02_large_patch14_clip_336.merged2b_s6b_b61k")
