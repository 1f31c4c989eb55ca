"""MAE ViT-H/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/mae_h14.py:runlocal --workdir runs/mae_h14-local
    python launch/tpu.py --config encoders/mae_h14.py --workdir gs://BUCKET/runs/mae_h14

Checkpoint: ``timm/vit_huge_patch14_224.mae`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "mae", "H/14", res=224, checkpoint="timm/vit_huge_patch14_224.mae")
