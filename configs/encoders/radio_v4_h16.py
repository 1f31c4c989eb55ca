"""C-RADIOv4 ViT-H/16 @512 (spatial features, 32x32 bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/radio_v4_h16.py:runlocal --workdir runs/radio_v4_h16-local
    python launch/tpu.py --config encoders/radio_v4_h16.py --workdir gs://BUCKET/runs/radio_v4_h16

Checkpoint: ``nvidia/C-RADIOv4-H`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "radio", "H/16", res=512, tokens=576, checkpoint="nvidia/C-RADIOv4-H")
