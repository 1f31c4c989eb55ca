"""OpenCLIP ConvNeXt-L @512 (last stage bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/convnext_l512.py:runlocal --workdir runs/convnext_l512-local
    python launch/tpu.py --config encoders/convnext_l512.py --workdir gs://BUCKET/runs/convnext_l512

Checkpoint: ``laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "convnext", "L@512", res=512, tokens=576, checkpoint="laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup")
