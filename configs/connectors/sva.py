"""Spatial Vision Aggregator, as released with Cambrian-1 (D=3, G=1, in-LLM aggregation).

    python launch/tpu.py --config connectors/sva.py:runlocal --workdir runs/sva-local
    python launch/tpu.py --config connectors/sva.py --workdir gs://BUCKET/runs/sva

Args: runlocal -- tiny towers and SVA on the synthetic data; preset=cambrian-8b|cambrian-13b|
cambrian-34b -- the released connector settings (L=24, D=3, G=1, in-LLM layers/stride of that
model); multi_agg=False -- no aggregation inside the LLM (paper Table 1's SVA-no-multi-agg uses
G=3 as well: groups=3); v4-8|v4-128|v5p-128 -- that TPU slice's settings (cambrian/slices.py).
The encoders are the connector study's four towers.
"""

from cambrian import config as C
from cambrian.models.connectors import sva


def get_config(arg=None):
    a = C.probe_arg(arg, preset="cambrian-8b", multi_agg=True, groups=1)
    if a.preset not in sva.PRESETS:
        raise C.ConfigError(f"preset={a.preset!r}; known: {', '.join(sva.PRESETS)}")
    opts = {**sva.PRESETS[a.preset], "groups": a.groups}
    if not a.multi_agg:
        opts["in_llm_layers"] = 0
    c = C.connector_probe("sva", opts, C.table1_encoders())
    c.stages.stage1.lr_multipliers = {"vision_sampler|vision_query": 0.1}  # 1e-4 under 1e-3
    if a.runlocal:
        C.runlocal_connector(c, query_side=4, depth=2, vision_hidden=64, heads=2,
                             in_llm_layers=1 if a.multi_agg else 0, in_llm_stride=1)
    C.apply_slice(c, a)
    return c
