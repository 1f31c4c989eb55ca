"""Web-DINO ViT-7B/14 @518 (37x37 = 1369 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/webssl_dino7b_518.py:runlocal --workdir runs/webssl_dino7b_518-local
    python launch/tpu.py --config encoders/webssl_dino7b_518.py --workdir gs://BUCKET/runs/webssl_dino7b_518

Checkpoint: ``facebook/webssl-dino7b-full8b-518`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
The 518 px checkpoint (Web-SSL's best overall); Web-SSL's protocol is encoders/webssl_protocol.py.
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "webssl", "dino7b@518", res=518, checkpoint="facebook/webssl-dino7b-full8b-518")
