"""Wide tables from the long scores table: per group, per benchmark, the paper's layout, a ranking.

Group averages follow the paper (``cambrian/eval/groups.py``): a group made of the paper's
benchmarks is the mean of its four columns, and is missing (NaN) unless all four are there; any
other suite (the synthetic one) averages the benchmarks it has in that group. The overall average
is the mean of the four groups (for the paper's suite, the same as the mean of its 16 columns).
"""

from __future__ import annotations

import math

import pandas as pd

from cambrian.eval import groups
from cambrian.results.frames import GROUP_ORDER

GROUPS = tuple(groups.GROUPS)
TITLES = {**groups.GROUP_TITLES, "overall": "Overall", "extra": "Other"}


def _order(df: pd.DataFrame) -> list[str]:
    """Labels in order of first appearance."""
    return list(dict.fromkeys(df["label"]))


def group_means(df: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """label x (general, knowledge, ocr_chart, vision_centric, overall) of column ``value``."""
    out = {}
    for label, d in df[df["group"].isin(GROUPS)].groupby("label", sort=False):
        row = {}
        for g in GROUPS:
            part = d[(d["group"] == g) & d[value].notna()]
            paper = set(groups.GROUPS[g])
            if paper & set(part["benchmark"]):
                part = part[part["benchmark"].isin(paper)]
                row[g] = part[value].mean() if len(part) == len(paper) else math.nan
            else:
                row[g] = part[value].mean() if len(part) else math.nan
        present = [row[g] for g in GROUPS if not math.isnan(row[g])]
        row["overall"] = sum(present) / 4 if len(present) == 4 else math.nan
        out[label] = row
    cols = [*GROUPS, "overall"]
    return pd.DataFrame.from_dict(out, orient="index", columns=cols).reindex(
        [lab for lab in _order(df) if lab in out])


def benchmark_table(df: pd.DataFrame, value: str = "score") -> pd.DataFrame:
    """label x benchmark title (groups in the paper's order) of column ``value``."""
    order = df.assign(g=df["group"].map(GROUP_ORDER.index))
    cols = list(dict.fromkeys(order.sort_values("g", kind="stable")["title"]))
    wide = df.pivot_table(index="label", columns="title", values=value, aggfunc="first",
                          sort=False, dropna=False)
    return wide.reindex(index=_order(df), columns=cols)


def paper_layout(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's table: Avg, then per group its average and its four columns, MME-P raw
    (0-2000) as printed there. Benchmarks outside the four groups follow."""
    means = group_means(df)
    wide = benchmark_table(df)
    out = pd.DataFrame(index=wide.index)
    out["Avg"] = means["overall"]
    for g in GROUPS:
        out[f"{TITLES[g]} Avg"] = means[g]
        for col in groups.GROUPS[g]:
            t = groups.COLUMN_TITLES[col]
            if t in wide:
                out[t] = wide[t] / groups.PERCENT_SCALE.get(col, 1.0)
    extras = [c for c in wide.columns if c not in out.columns]
    synthetic = [c for c in extras if df.loc[df["title"] == c, "group"].iloc[0] in GROUPS]
    if synthetic:  # a suite other than the paper's: its own benchmark columns
        out = out.join(wide[synthetic])
    return out.join(wide[[c for c in extras if c not in synthetic]])


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run, best overall first: rank, group averages, overall, and what the run was
    (source, encoders, connector, tokens, resolution, llm)."""
    means = group_means(df)
    info = df.drop_duplicates("label").set_index("label")[
        ["source", "encoders", "connector", "tokens", "resolution", "llm"]]
    out = means.join(info).sort_values("overall", ascending=False, na_position="last")
    out.insert(0, "rank", range(1, len(out) + 1))
    out[["tokens", "resolution"]] = out[["tokens", "resolution"]].astype("Int64")
    out.index.name = "run"
    return out


def whos_answering(df: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark, over the runs evaluated with vision off too: mean vision-on score,
    vision-off score, chance, and the gaps (on - off: what the image adds; off - chance:
    what the LLM answers without it). NaN where a run set lacks the number."""
    d = df[df["vision_off"].notna()]
    g = d.groupby("title", sort=False)
    out = pd.DataFrame({"group": g["group"].first(), "runs": g["label"].nunique(),
                        "vision_on": g["score"].mean(), "vision_off": g["vision_off"].mean(),
                        "chance": g["chance"].mean()})
    out["on_minus_off"] = out["vision_on"] - out["vision_off"]
    out["off_minus_chance"] = out["vision_off"] - out["chance"]
    return out


def markdown(df: pd.DataFrame, digits: int = 1, index: bool = True) -> str:
    """A GitHub-markdown table (numbers rounded to ``digits``; NaN as an en dash)."""
    def cell(x) -> str:
        if x is None or x is pd.NA or isinstance(x, float) and math.isnan(x):
            return "–"
        return f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    cols = ([df.index.name or "run"] if index else []) + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for i, row in df.iterrows():
        cells = ([str(i)] if index else []) + [cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
