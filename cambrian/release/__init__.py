"""Released Cambrian-1 models (nyu-visionx/cambrian-8b, -13b, -34b).

``release.load(checkpoint, towers_root=...)`` -> ``Release`` with ``next_token_logits`` and
``answer`` (``model.py``); ``python -m cambrian.release`` (``cli.py``): convert, chat, reproduce.
``towers``: upstream's tower names, their hub repos and our encoder configs. ``config``: a release's
``config.json`` -> our model config, and the released models' training recipes
(``configs/cambrian/*.py``).
"""


def __getattr__(name: str):
    # lazy: cambrian.models.vlm imports release.config, and release.model imports vlm
    if name in ("load", "Release"):
        from cambrian.release import model

        return getattr(model, name)
    raise AttributeError(f"module 'cambrian.release' has no attribute {name!r}")
