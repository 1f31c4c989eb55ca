"""DINOv3 ViT-L/16 @224 (196 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/dinov3_l16.py:runlocal --workdir runs/dinov3_l16-local
    python launch/tpu.py --config encoders/dinov3_l16.py --workdir gs://BUCKET/runs/dinov3_l16

Checkpoint: ``facebook/dinov3-vitl16-pretrain-lvd1689m`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
Resolution: the published processor's (DINOv3ViTImageProcessor, 224x224); RoPE positions run at
any ``res=N`` (multiple of 16) without resampling.
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "dinov3", "L/16", res=224, checkpoint="facebook/dinov3-vitl16-pretrain-lvd1689m")
