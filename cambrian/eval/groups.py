"""Cambrian-1's benchmark groups and averages, as the paper computes them.

The paper reports 16 columns in four groups of four. A group average is the plain mean of its four
numbers with MME-P divided by 20 (its max is 2000); the overall average is the mean of all 16 (the
same as the mean of the four group means). V*Bench, POPE, MMStar, BLINK and anything else are
reported separately, never averaged in.
"""

from __future__ import annotations

from collections.abc import Mapping

GROUPS: dict[str, tuple[str, ...]] = {
    "general": ("mme", "mmbench", "seed", "gqa"),
    "knowledge": ("scienceqa", "mmmu", "mathvista", "ai2d"),
    "ocr_chart": ("chartqa", "ocrbench", "textvqa", "docvqa"),
    "vision_centric": ("mmvp", "realworldqa", "cvbench_2d", "cvbench_3d"),
}
GROUP_TITLES = {"general": "General", "knowledge": "Knowledge", "ocr_chart": "OCR & Chart",
                "vision_centric": "Vision-Centric"}
# The paper's column order.
COLUMNS: tuple[str, ...] = tuple(c for cols in GROUPS.values() for c in cols)
# The paper's column titles (Table 1 and Table 11).
COLUMN_TITLES = {"mme": "MME-P", "mmbench": "MMB", "seed": "SEED-I", "gqa": "GQA",
                 "scienceqa": "SQA-I", "mmmu": "MMMU-V", "mathvista": "MathVista-M",
                 "ai2d": "AI2D", "chartqa": "ChartQA", "ocrbench": "OCRBench",
                 "textvqa": "TextVQA", "docvqa": "DocVQA", "mmvp": "MMVP", "realworldqa": "RWQA",
                 "cvbench_2d": "CV-Bench-2D", "cvbench_3d": "CV-Bench-3D"}
# Columns that are not percentages, and the factor that makes them one.
PERCENT_SCALE = {"mme": 1 / 20}


def as_percent(column: str, score: float) -> float:
    return score * PERCENT_SCALE.get(column, 1.0)


def columns_from_results(results: Mapping[str, Mapping]) -> dict[str, float]:
    """Benchmark-module results ({name: score() dict}) -> {column: paper number}. CV-Bench's one
    module gives the two columns cvbench_2d and cvbench_3d."""
    out: dict[str, float] = {}
    for name, res in results.items():
        if name == "cvbench":
            out["cvbench_2d"], out["cvbench_3d"] = float(res["2d"]), float(res["3d"])
        else:
            out[name] = float(res["score"])
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def group_averages(scores: Mapping[str, float]) -> dict:
    """{column: paper number} (MME-P raw, 0-2000) -> group means, overall mean, extras.

    Returns {"general", "knowledge", "ocr_chart", "vision_centric": mean or None if a column is
    missing, "overall": mean of the 16 or None, "missing": [columns], "extras": {other scores}}.
    """
    out: dict = {}
    missing = [c for c in COLUMNS if c not in scores]
    for group, cols in GROUPS.items():
        present = [as_percent(c, float(scores[c])) for c in cols if c in scores]
        out[group] = _mean(present) if len(present) == len(cols) else None
    out["overall"] = None if missing else _mean([as_percent(c, float(scores[c]))
                                                 for c in COLUMNS])
    out["missing"] = missing
    out["extras"] = {k: v for k, v in scores.items() if k not in COLUMNS}
    return out
