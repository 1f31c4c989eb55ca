"""DFN-CLIP ViT-L/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/dfn_clip_l14.py:runlocal --workdir runs/dfn_clip_l14-local
    python launch/tpu.py --config encoders/dfn_clip_l14.py --workdir gs://BUCKET/runs/dfn_clip_l14

Checkpoint: ``apple/DFN2B-CLIP-ViT-L-14`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "dfn_clip", "L/14", res=224, checkpoint="apple/DFN2B-CLIP-ViT-L-14")
