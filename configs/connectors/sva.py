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

PRESETS = {  # paper section 2.3 / the released scripts
    "cambrian-8b": dict(in_llm_layers=10, in_llm_stride=3),
    "cambrian-13b": dict(in_llm_layers=10, in_llm_stride=4),
    "cambrian-34b": dict(in_llm_layers=9, in_llm_stride=7),
}


def get_config(arg=None):
    a = C.probe_arg(arg, preset="cambrian-8b", multi_agg=True, groups=1)
    opts = dict(query_side=24, depth=3, groups=a.groups, vision_hidden=1024, heads=16,
                in_llm_start=0, global_context_encoder=0, **PRESETS[a.preset])
    if not a.multi_agg:
        opts["in_llm_layers"] = 0
    c = C.connector_probe("sva", opts, C.table1_encoders())
    c.stages.stage1.lr_multipliers = {"vision_sampler|vision_query": 0.1}  # 1e-4 under 1e-3
    if a.runlocal:
        C.runlocal_connector(c, query_side=4, depth=2, vision_hidden=64, heads=2,
                             in_llm_layers=1 if a.multi_agg else 0, in_llm_stride=1)
    C.apply_slice(c, a)
    return c
