"""The paper's own numbers as reference run sets, so a probe appears as a new row beside them.

Stored once as data, each file citing its source in its header:

* ``reference/encoder_sweep.csv``: Cambrian-1's encoder comparison, 18 frozen encoders, each with
  a 2-layer MLP and Vicuna-1.5-7B after 1.2M adapter + 737K instruction data (what
  ``configs/encoders/*.py`` reproduce), with resolution, visual tokens and supervision type.
* ``reference/released_models.csv``: Cambrian-1-8B/13B/34B beside GPT-4V, Mini-Gemini-HD and
  LLaVA-NeXT.
* ``reference/sva_attention.csv``: SVA attention mass per encoder of Cambrian-1-8B.

``scores(name)`` has the columns of ``frames.scores`` (``source`` = "paper: <name>"), so
``pd.concat([reference.scores("encoder_sweep"), frames.scores(runs)])`` is one table.
"""

from __future__ import annotations

import functools
import os

import pandas as pd

from cambrian.eval import groups
from cambrian.results import frames

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference")
SETS = ("encoder_sweep", "released_models")
# What every encoder-sweep row ran (paper section 3: the encoder study's protocol).
_SWEEP_RUN = {"connector": "mlp2x_gelu", "llm": "vicuna-7b-v1.5", "data": "737K",
              "stage": "stage2", "random_init": False, "profile": "cambrian"}
# The released models' vision stack (paper section 5; the released configs).
_RELEASED_STACK = {"encoders": "siglip+clip+dinov2+convnext",
                   "families": "siglip+clip+dinov2+convnext", "connector": "sva",
                   "resolution": 1024, "resolutions": "384+336+378+1024"}


def path(name: str) -> str:
    if name not in (*SETS, "sva_attention"):
        raise ValueError(f"unknown reference table {name!r}; known: "
                         f"{', '.join((*SETS, 'sva_attention'))}")
    return os.path.join(DIR, f"{name}.csv")


@functools.cache
def _raw(name: str) -> pd.DataFrame:
    return pd.read_csv(path(name), comment="#")


def raw(name: str) -> pd.DataFrame:
    """A reference table as the paper prints it (MME-P 0-2000, its published averages)."""
    return _raw(name).copy()


def _run_info(name: str, row: pd.Series) -> dict:
    base = dict.fromkeys(frames.RUN_COLUMNS, None)
    base.update(source=f"paper: {name}", config="", config_hash="", path=path(name), step=None)
    if name == "encoder_sweep":
        base.update(_SWEEP_RUN, run=row["encoder"], label=row["encoder"],
                    encoders=row["family"], families=row["family"], variants=row["variant"],
                    resolution=row["resolution"], resolutions=str(row["resolution"]),
                    tokens=row["tokens"])
    else:
        cambrian = row["model"].startswith("Cambrian-1")
        base.update(run=row["model"], label=row["model"], llm=row["llm"], tokens=row["tokens"],
                    random_init=False, stage="stage2", profile="cambrian",
                    **(_RELEASED_STACK if cambrian else {}))
    return base


def scores(name: str) -> pd.DataFrame:
    """Reference set ``name`` (``encoder_sweep`` or ``released_models``) as a scores table."""
    rows = []
    for _, row in _raw(name).iterrows():
        info = _run_info(name, row)
        for col in groups.COLUMNS:
            if pd.notna(row.get(col)):
                rows.append({**info, "benchmark": col, "title": frames.title(col),
                             "group": next(g for g, c in groups.GROUPS.items() if col in c),
                             "score": groups.as_percent(col, float(row[col])),
                             "vision_off": None, "chance": None, "n": None})
    return frames._typed(pd.DataFrame(rows, columns=list(frames.SCORE_COLUMNS)))


def attention() -> pd.DataFrame:
    """Cambrian-1-8B's SVA attention mass, with the columns of ``frames.attention``."""
    df = raw("sva_attention").rename(columns={"model": "run"})
    df["label"] = df["run"]
    df["title"] = df["benchmark"].map(frames.title)
    df["std"], df["n"] = None, None
    return df[["run", "label", "benchmark", "title", "encoder", "family", "mass", "std", "n"]]


def supervision() -> dict[str, str]:
    """{encoder family: its supervision in the paper's catalog} (``Language``, ``SSL ...``)."""
    sweep = _raw("encoder_sweep")
    return dict(zip(sweep["family"], sweep["supervision"]))
