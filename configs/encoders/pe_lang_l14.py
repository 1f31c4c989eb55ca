"""Perception Encoder PE-lang L/14 @448 (its output layer, 32x32 bilinear to 576 tokens) encoder probe, Cambrian-1's encoder-sweep protocol.

    python launch/tpu.py --config encoders/pe_lang_l14.py:runlocal --workdir runs/pe_lang_l14-local
    python launch/tpu.py --config encoders/pe_lang_l14.py --workdir gs://BUCKET/runs/pe_lang_l14

Checkpoint: ``facebook/PE-Lang-L14-448`` under $CAMBRIAN_CHECKPOINTS. Args: runlocal -- tiny random-init model on
the embedded synthetic data; res=N -- input resolution; v4-8|v4-128|v5p-128 -- that TPU slice's
settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    return C.single_encoder_probe(arg, "pe", "lang-L/14@448", res=448, tokens=576, checkpoint="facebook/PE-Lang-L14-448")
