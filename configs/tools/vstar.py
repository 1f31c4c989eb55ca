"""Guided visual search (V*): V*Bench with and without search, side by side.

    python launch/tpu.py --config tools/vstar.py --config.checkpoint=runs/clip \\
        --workdir runs/clip-vstar
    python -m cambrian.tools.vstar_data && \\
        python launch/tpu.py --config tools/vstar.py:runlocal --workdir runs/vstar-local

Without args: eval-only, the model read from the run in ``config.checkpoint``, scored on
``vstar`` (global view) and ``vstar_search`` (search + visual working memory). Args: runlocal --
trains the tiny model (frozen random DINOv2-structured tower, the :runlocal probes' recipe) on the
synthetic search task (``cambrian/tools/vstar_data.py``: a small coloured square the global view
cannot resolve) for a few CPU minutes, then scores both on its V*Bench-layout eval split; steps=N
-- stage-2 steps of that run.
"""

import os

from cambrian import config as C
from cambrian.tools import vstar_data


def get_config(arg=None):
    a = C.parse_arg(arg, runlocal=False, steps=2900)
    if not a.runlocal:
        c = C.base_config()
        c.eval.suite = "vstar,vstar_search"
        c.eval.root = C.DATA + "/benchmarks"
        return c
    c = C.encoder_probe("dinov2", C.encoder("dinov2", "L/14"))
    C.runlocal_common(c)  # stage 1 aligns on synthetic:align; stage 2 is the search task
    root = vstar_data.root(c.cache_dir)
    c.stages.stage2.update(dict(steps=a.steps, data=os.path.join(root, "train.json"),
                                image_root=root))
    c.eval.suite = "vstar,vstar_search"
    c.eval.roots.vstar = os.path.join(root, "bench")
    c.eval.vstar.mode = "always"
    c.eval.vstar.threshold = 2.0  # never stop early: the depth-3 crops show the colour best
    c.eval.vstar.max_crops = 1
    c.eval.vstar.min_size = 56
    return c
