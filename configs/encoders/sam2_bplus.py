"""SAM 2.1 Hiera-B+ @1024 (trunk's last stage, 32x32 bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/sam2_bplus.py:runlocal --workdir runs/sam2_bplus-local
    python launch/tpu.py --config encoders/sam2_bplus.py --workdir gs://BUCKET/runs/sam2_bplus

Checkpoint: ``facebook/sam2.1-hiera-base-plus`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "sam2", "B+", res=1024, tokens=576, checkpoint="facebook/sam2.1-hiera-base-plus")
