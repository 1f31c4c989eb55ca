"""Perceiver-style resampler (learned queries, global cross-attention; paper Table 1 baseline).

    python launch/tpu.py --config connectors/resampler.py:runlocal --workdir runs/resampler-local
    python launch/tpu.py --config connectors/resampler.py --workdir gs://BUCKET/runs/resampler

Args: runlocal; tokens=N -- number of learned queries (576); v4-8|v4-128|v5p-128 -- that TPU
slice's settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    a = C.probe_arg(arg, tokens=576)
    c = C.connector_probe("resampler", dict(tokens=a.tokens), C.table1_encoders())
    if a.runlocal:
        C.runlocal_connector(c, tokens=16, hidden=64, heads=2, depth=2)
    C.apply_slice(c, a)
    return c
