r"""Cambrian-Alignment 2.5M: the stage-1 (connector pre-training) captioning data.

    python data_recipes/build.py \
        --recipe data_recipes/cambrian_alignment_2_5m.py:root=/data/Cambrian-Alignment \
        --out /data/built/alignment_2_5m --skip-bad

``root`` is the downloaded nyu-visionx/Cambrian-Alignment folder, split tars merged and extracted.
The released file mixes LLaVA, ShareGPT4V, Mini-Gemini and ALLaVA captions (paper: 1.2M
ShareGPT4V + 1.2M Mini-Gemini). Known problems of the release: some image paths differ in case from
the files (handled by case-insensitive lookup) and the ALLaVA tar is corrupt on the Hub
(``--skip-bad`` skips and counts the affected records instead of stopping).
"""

from cambrian.config import parse_arg
from cambrian.data.recipe import Recipe, Source


def get_recipe(arg=None):
    a = parse_arg(arg, root="data/Cambrian-Alignment", seed=0, shard_size=10_000)
    return Recipe(name="cambrian_alignment_2_5m", seed=a.seed, shard_size=a.shard_size,
                  sources=(Source("alignment_2_5m", f"{a.root}/jsons/alignment_2.5m.jsonl",
                                  "caption", images=a.root, case_insensitive_images=True),),
                  description="Cambrian-Alignment 2.5M stage-1 data.")
