"""DINOv3 ConvNeXt-L @224 (last stage after the final norm, 7x7 = 49 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/dinov3_convnext_l.py:runlocal --workdir runs/dinov3_convnext_l-local
    python launch/tpu.py --config encoders/dinov3_convnext_l.py --workdir gs://BUCKET/runs/dinov3_convnext_l

Checkpoint: ``facebook/dinov3-convnext-large-pretrain-lvd1689m`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
Resolution: the published processor's (224x224); ``res=1024`` gives the 32x32 last stage that
Cambrian-1's ConvNeXt probes interpolate to 576 tokens (add --config.model.encoders.dinov3_convnext.tokens=576).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "dinov3_convnext", "L", res=224, checkpoint="facebook/dinov3-convnext-large-pretrain-lvd1689m")
