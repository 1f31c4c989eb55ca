"""Runs -> long pandas tables: scores (one row per run and benchmark), loss curves, attention mass.

Every score is on the 0-100 scale the paper averages on: MME-Perception (0-2000) is divided by 20,
as the paper does before averaging (``tables.paper_layout`` shows it raw again). CV-Bench gives
the paper's two columns, ``cvbench_2d`` and ``cvbench_3d``. Benchmarks outside the paper's four
groups (V*Bench, POPE, ...) get the group ``extra`` and are never averaged into a group.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from cambrian.eval import groups
from cambrian.results import describe
from cambrian.results.runs import Run

RUN_COLUMNS = ("run", "label", "source", "encoders", "families", "variants", "resolution",
               "resolutions", "tokens", "connector", "llm", "data", "random_init", "stage",
               "step", "profile", "config", "config_hash", "path")
SCORE_COLUMNS = RUN_COLUMNS + ("benchmark", "title", "group", "score", "vision_off", "chance",
                               "n")
GROUP_ORDER = (*groups.GROUPS, "extra")


def title(benchmark: str) -> str:
    """The paper's column title (``MME-P``), else the benchmark name."""
    return groups.COLUMN_TITLES.get(benchmark, benchmark)


def _columns(name: str, res: dict) -> list[tuple[str, float | None]]:
    """(column, percent score) pairs of one benchmark result."""
    if name == "cvbench" and "2d" in res:
        return [("cvbench_2d", res["2d"]), ("cvbench_3d", res["3d"])]
    score = res.get("score")
    return [(name, None if score is None else groups.as_percent(name, float(score)))]


def run_info(run: Run) -> dict:
    """The per-run columns of the scores table."""
    cfg, rep = run.config, run.report
    stages = [s for s, v in cfg.get("stages", {}).items() if v.get("steps", 0) > 0]
    return {"run": run.name, "label": run.name, "source": "run",
            **describe.describe(cfg, run.path),
            "stage": stages[-1] if stages else "", "step": rep.get("step"),
            "profile": rep.get("decode", {}).get("profile", ""), "config": rep.get("config", ""),
            "config_hash": rep.get("config_hash", ""), "path": run.path}


def scores(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run and benchmark column: the run's description, then benchmark, title,
    group, score, vision_off (NaN if not evaluated), chance (NaN if unknown), n."""
    rows = []
    for run in runs:
        info = run_info(run)
        res = run.report["benchmarks"]
        for name, r in res.items():
            if "/" in name:
                continue
            off = dict(_columns(name, res[f"{name}/vision_off"])) \
                if f"{name}/vision_off" in res else {}
            for col, score in _columns(name, r):
                rows.append({**info, "benchmark": col, "title": title(col),
                             "group": r.get("group") or "extra", "score": score,
                             "vision_off": off.get(col), "chance": r.get("chance"),
                             "n": r.get("n")})
    return _typed(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in ("score", "vision_off", "chance", "resolution", "tokens", "n", "step"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    return df


def curves(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per logged step: run, label, stage, step (global), stage_step, loss, and whatever
    else the run logged (lr as its largest group's value, grad_norm, tokens_per_s, mfu, ...)."""
    rows = []
    for run in runs:
        for m in run.metrics:
            row = {"run": run.name, "label": run.name, **m}
            if isinstance(m.get("lr"), dict):
                row["lr"] = max(m["lr"].values()) if m["lr"] else None
            rows.append(row)
    base = ["run", "label", "stage", "step", "stage_step", "loss"]
    df = pd.DataFrame(rows)
    return df.reindex(columns=base + [c for c in df.columns if c not in base])


def attention(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run, benchmark and encoder: mass (percent of the SVA's attention weight),
    std (over images, percent), n (images)."""
    rows = []
    for run in runs:
        for bench, rec in run.attention.items():
            if rec.get("mass") is None:
                continue
            for i, enc in enumerate(rec["encoders"]):
                rows.append({"run": run.name, "label": run.name, "benchmark": bench,
                             "title": title(bench), "encoder": enc,
                             "family": rec["families"][i], "mass": 100 * rec["mass"][i],
                             "std": 100 * rec["std"][i] if rec.get("std") else None,
                             "n": rec["n"]})
    return pd.DataFrame(rows, columns=["run", "label", "benchmark", "title", "encoder",
                                       "family", "mass", "std", "n"])


def select(df: pd.DataFrame, **equals) -> pd.DataFrame:
    """Rows whose columns equal the given values (a list or tuple: any of them), e.g.
    ``select(df, connector="sva", group=["ocr_chart", "vision_centric"])``."""
    unknown = [k for k in equals if k not in df.columns]
    if unknown:
        raise KeyError(f"select: no column {unknown}; columns are {list(df.columns)}")
    keep = pd.Series(True, index=df.index)
    for k, v in equals.items():
        keep &= df[k].isin(v) if isinstance(v, list | tuple | set) else df[k] == v
    return df[keep]


def relabel(df: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Copy of ``df`` whose ``label`` column (what figures and tables show) is renamed per
    ``labels`` ({run name: label})."""
    out = df.copy()
    out["label"] = [labels.get(r, lab) for r, lab in zip(out["run"], out["label"])]
    return out
