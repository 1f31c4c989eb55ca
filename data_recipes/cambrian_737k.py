r"""The 737K instruction mix of Cambrian-1's encoder and connector studies.

    python data_recipes/build.py \
        --recipe data_recipes/cambrian_737k.py:root=/data/Cambrian-10M,llava_root=/data/llava \
        --out /data/built/cambrian_737k

LLaVA-665K plus 15,501 AI2D, 14,999 DocVQA and 13,000 DVQA records drawn from Cambrian-10M
(``root``; see ``llava_665k.py`` for ``llava_root``). No answer-format prompts are added: the mix
predates the §5.3 prompt study. The maintainers also publish the result as
``jsons/Cambrian737k.jsonl``.
"""

from cambrian.config import parse_arg
from cambrian.data import catalog
from cambrian.data.recipe import Recipe

EXTRA = {"ai2d": 15_501, "docvqa": 14_999, "dvqa": 13_000}


def get_recipe(arg=None):
    a = parse_arg(arg, root="data/Cambrian-10M", llava_root="data/llava", seed=0,
                  shard_size=10_000)
    picked = tuple(s for s in catalog.cambrian_10m(a.root, with_prompts=False)
                   if s.name in EXTRA)
    extra = catalog.replace(picked, **{n: {"cap": c} for n, c in EXTRA.items()})
    llava = catalog.llava_665k(f"{a.llava_root}/llava_v1_5_mix665k.json", a.llava_root)
    return Recipe(name="cambrian_737k", seed=a.seed, shard_size=a.shard_size,
                  sources=llava + extra,
                  description="LLaVA-665K + AI2D 15.5K + DocVQA 15K + DVQA 13K (Cambrian-1).")
