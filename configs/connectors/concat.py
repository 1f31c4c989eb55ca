"""Channel concatenation after interpolation to 576 tokens + 2-layer MLP (A-MoF; paper Table 1).

    python launch/tpu.py --config connectors/concat.py:runlocal --workdir runs/concat-local
    python launch/tpu.py --config connectors/concat.py --workdir gs://BUCKET/runs/concat

Args: runlocal; tokens=N -- the common grid (576; 144 / 36 reduce the token count);
v4-8|v4-128|v5p-128 -- that TPU slice's settings (cambrian/slices.py).
"""

from cambrian import config as C


def get_config(arg=None):
    a = C.probe_arg(arg, tokens=576)
    c = C.connector_probe("concat", dict(tokens=a.tokens), C.table1_encoders())
    if a.runlocal:
        C.runlocal_connector(c, tokens=16)
    C.apply_slice(c, a)
    return c
