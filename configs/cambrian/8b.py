"""Cambrian-1-8B's architecture, trained from scratch with the paper's two-stage recipe.

    python launch/tpu.py --config cambrian/8b.py:runlocal --workdir runs/cambrian-8b-local
    python launch/tpu.py --config cambrian/8b.py --workdir gs://BUCKET/runs/cambrian-8b

Towers (frozen, upstream order): SigLIP SO400M/14@384 (576 tokens, the SVA's global context),
OpenAI CLIP-L/14@336 (576), DINOv2-g/14@378 (576), CLIP ConvNeXt-XXL@1024 multi-stage (96x96) ->
SVA (L=24: 576 queries, D=3, G=1) -> Llama-3-8B-Instruct (llama_3 template), in-LLM aggregation after layers 0, 3, ..., 27.
Stage 1: Cambrian-Alignment (2.5M), connector at 1e-3 with the SVA at 1e-4; stage 2: Cambrian-7M
with system prompts, connector + LLM. Checkpoints under $CAMBRIAN_CHECKPOINTS/<hub id>, data under
$CAMBRIAN_DATA (see cambrian/release/config.py). Args: runlocal -- tiny random towers, SVA and LLM
on the embedded synthetic data.
"""

from cambrian.release import config as release


def get_config(arg=None):
    return release.recipe("8b", arg)
