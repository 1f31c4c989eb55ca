"""MetaCLIP 2 worldwide ViT-bigG/14 @378 (1.8B-parameter tower, penultimate layer, CLS dropped, 729 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/metaclip2_g14.py:runlocal --workdir runs/metaclip2_g14-local
    python launch/tpu.py --config encoders/metaclip2_g14.py --workdir gs://BUCKET/runs/metaclip2_g14

Checkpoint: ``facebook/metaclip-2-worldwide-giant-378`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "metaclip2", "bigG/14-378", res=378, layer=-2, checkpoint="facebook/metaclip-2-worldwide-giant-378")
