"""Web-DINO ViT-7B/14 @224 (256 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/webssl_dino7b.py:runlocal --workdir runs/webssl_dino7b-local
    python launch/tpu.py --config encoders/webssl_dino7b.py --workdir gs://BUCKET/runs/webssl_dino7b

Checkpoint: ``facebook/webssl-dino7b-full8b-224`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
Web-SSL's VQA protocol itself (Llama-3-8B-Instruct, Cambrian data) is encoders/webssl_protocol.py.
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "webssl", "dino7b", res=224, checkpoint="facebook/webssl-dino7b-full8b-224")
