r"""LLaVA-1.5's 665K instruction-tuning mix, the baseline mix of Cambrian-1 §4.

    python data_recipes/build.py --recipe data_recipes/llava_665k.py:root=/data/llava \
        --out /data/built/llava_665k

Expects LLaVA's layout under ``root``: ``llava_v1_5_mix665k.json`` and the image folders
``coco/train2017``, ``gqa/images``, ``ocr_vqa/images``, ``textvqa/train_images``,
``vg/VG_100K{,_2}``. Split into sources by image folder (plus the text-only ShareGPT part) so the
manifest shows the composition; everything is kept.
"""

from cambrian.config import parse_arg
from cambrian.data import catalog
from cambrian.data.recipe import Recipe


def get_recipe(arg=None):
    a = parse_arg(arg, root="data/llava", seed=0, shard_size=10_000)
    return Recipe(name="llava_665k", seed=a.seed, shard_size=a.shard_size,
                  sources=catalog.llava_665k(f"{a.root}/llava_v1_5_mix665k.json", a.root),
                  description="LLaVA-1.5 mix665k instruction-tuning data.")
