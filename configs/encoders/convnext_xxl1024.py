"""OpenCLIP ConvNeXt-XXL @1024 (last stage bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/convnext_xxl1024.py:runlocal --workdir runs/convnext_xxl1024-local
    python launch/tpu.py --config encoders/convnext_xxl1024.py --workdir gs://BUCKET/runs/convnext_xxl1024

Checkpoint: ``laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "convnext", "XXL@1024", res=1024, tokens=576, checkpoint="laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup")
