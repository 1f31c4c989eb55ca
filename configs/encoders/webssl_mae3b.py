"""Web-MAE ViT-3B/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/webssl_mae3b.py:runlocal --workdir runs/webssl_mae3b-local
    python launch/tpu.py --config encoders/webssl_mae3b.py --workdir gs://BUCKET/runs/webssl_mae3b

Checkpoint: ``facebook/webssl-mae3b-full2b-224`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
The largest released Web-MAE; Web-SSL's protocol is encoders/webssl_protocol.py.
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "webssl", "mae3b", res=224, checkpoint="facebook/webssl-mae3b-full2b-224")
