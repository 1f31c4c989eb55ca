"""I-JEPA ViT-H/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/ijepa.py:runlocal --workdir runs/ijepa-local
    python launch/tpu.py --config encoders/ijepa.py --workdir gs://BUCKET/runs/ijepa

Checkpoint: ``facebook/ijepa_vith14_22k`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "ijepa", "H/14", res=224, checkpoint="facebook/ijepa_vith14_22k")
