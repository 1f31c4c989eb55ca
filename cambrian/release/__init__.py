"""Released Cambrian-1 models (nyu-visionx/cambrian-8b, -13b, -34b).

``towers``: upstream's tower names, their hub repos and our encoder configs. ``config``: a release's
``config.json`` -> our model config, and the released models' training recipes
(``configs/cambrian/*.py``).
"""
