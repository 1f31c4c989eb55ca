"""What a run's saved config describes: encoders (resolution, grid), connector, visual tokens, LLM.

Resolutions and token counts come from the project's own modules, built abstractly
(``nnx.eval_shape``: shapes only, no weights read), so they are what the run actually used
whatever its config spelled out (0 = the variant's native size).
"""

from __future__ import annotations

import functools
import json
import os
import warnings

from cambrian.config import ordered_encoders

_LLM_DIM = 4096  # connector width when the LLM's own is unknown: token counts do not depend on it


def _llm(model: dict) -> str:
    llm = model["llm"]
    if llm["init"] == "random":
        r = llm["random"]
        return f"random {r['num_layers']}x{r['hidden_size']}"
    return os.path.basename(llm["checkpoint"].rstrip("/")) or "?"


def _data(config: dict) -> str:
    """The last trained stage's data, as a short name."""
    stages = [s for s in config.get("stages", {}).values() if s.get("steps", 0) > 0]
    return os.path.basename(stages[-1]["data"].rstrip("/")) if stages else ""


@functools.lru_cache(maxsize=256)
def _geometry(model_json: str) -> tuple[list[int], int]:
    """(per-encoder input resolution, visual tokens given to the LLM)."""
    from flax import nnx

    from cambrian.models import connectors, encoders

    model = json.loads(model_json)
    res, channels, grids = [], [], []
    for _, e in ordered_encoders(model["encoders"]):
        size = e["image_size"] or encoders.preprocessing(e["family"], e["variant"]).image_size
        enc = nnx.eval_shape(lambda e=e: encoders.create(
            e["family"], e["variant"], image_size=e["image_size"] or None, layer=e["layer"]))
        grid = tuple(enc.grid)
        if e["tokens"]:
            side = int(round(e["tokens"] ** 0.5))  # interpolated to a square grid
            grid = (side, side)
        res.append(int(size))
        channels.append(int(enc.out_channels))
        grids.append(grid)
    llm = model["llm"]
    dim = llm["random"]["hidden_size"] if llm["init"] == "random" else _LLM_DIM
    conn = nnx.eval_shape(lambda: connectors.create(
        model["connector"]["name"], encoder_channels=channels, encoder_grids=grids, llm_dim=dim,
        rngs=nnx.Rngs(0), **model["connector"]["options"]))
    # the paper counts grid tokens (576 for 24 x 24), not the row-end newline tokens
    return res, int(conn.grid[0] * conn.grid[1]) if conn.grid else int(conn.num_tokens)


def describe(config: dict, where: str = "") -> dict:
    """The columns the results table keeps for a run, from its ``config.json`` contents.

    encoders ("clip+dinov2"), families, variants, resolution (largest input side, px),
    resolutions ("336+518"), tokens (visual tokens the LLM reads, as the paper counts them:
    newline tokens left out), connector, llm, data,
    random_init (True if any part was randomly initialised: numbers that prove plumbing only).
    """
    model = config["model"]
    encs = dict(ordered_encoders(model["encoders"]))
    out = {
        "encoders": "+".join(encs),
        "families": "+".join(e["family"] for e in encs.values()),
        "variants": "+".join(e["variant"] for e in encs.values()),
        "connector": model["connector"]["name"],
        "llm": _llm(model),
        "data": _data(config),
        "random_init": model["llm"]["init"] == "random"
        or any(e["init"] == "random" for e in encs.values()),
        "resolution": None, "resolutions": "", "tokens": None,
    }
    try:
        res, tokens = _geometry(json.dumps(model, sort_keys=True))
    except Exception as e:  # an old or foreign config: the table still loads, without geometry
        warnings.warn(f"{where or 'run'}: cannot work out resolution and visual tokens from "
                      f"config.json ({type(e).__name__}: {e}); those columns are left empty",
                      stacklevel=2)
        return out
    out.update(resolution=max(res), resolutions="+".join(map(str, res)), tokens=tokens)
    return out
