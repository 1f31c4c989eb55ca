"""Perception Encoder PE-core L/14 @336 (layer -2 = after block 23 of 24, the paper's MLLM layer; 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/pe_core_l14.py:runlocal --workdir runs/pe_core_l14-local
    python launch/tpu.py --config encoders/pe_core_l14.py --workdir gs://BUCKET/runs/pe_core_l14

Checkpoint: ``facebook/PE-Core-L14-336`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "pe", "core-L/14@336", res=336, layer=-2, checkpoint="facebook/PE-Core-L14-336")
