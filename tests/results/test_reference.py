"""The paper's numbers as stored: checked against the paper's own averages, not our code's."""

import math

import pandas as pd
import pytest

from cambrian.eval import groups
from cambrian.results import frames, reference, tables


def test_encoder_sweep_rows_reproduce_the_published_average():
    # Avg column of the paper = mean of the 16 columns with MME-P / 20; each of the 17 printed
    # numbers is rounded to 0.1 / 0.01, so they agree to 0.05 + 0.005.
    raw = reference.raw("encoder_sweep")
    assert len(raw) == 18
    for _, row in raw.iterrows():
        mean = sum(groups.as_percent(c, row[c]) for c in groups.COLUMNS) / 16
        assert abs(mean - row["avg_published"]) <= 0.055, row["encoder"]


def test_released_models_group_averages_match_the_paper():
    means = tables.group_means(reference.scores("released_models"))
    published = reference.raw("released_models").set_index("model")
    # Cambrian-1-8B General by hand: (1547.1 / 20 + 75.9 + 74.7 + 64.6) / 4 = 73.13875
    assert means.loc["Cambrian-1-8B", "general"] == pytest.approx(73.13875)
    for g in tables.GROUPS:  # four numbers rounded to 0.1, their published mean too
        diff = (means[g] - published[f"{g}_published"]).abs()
        assert diff.max() <= 0.1, diff.idxmax()


def test_sva_attention_shares_sum_to_100():
    sums = reference.attention().groupby("benchmark")["mass"].sum()
    assert set(sums.index) == {"gqa", "docvqa", "scienceqa"}
    assert sums.sub(100).abs().max() <= 0.1


def test_reference_scores_have_the_runs_columns():
    df = reference.scores("encoder_sweep")
    assert list(df.columns) == list(frames.SCORE_COLUMNS)
    assert len(df) == 18 * 16
    siglip = df[df["run"] == "SigLIP SO400M/14@384"].set_index("benchmark")
    assert siglip.loc["mme", "score"] == pytest.approx(1455.6 / 20)
    assert siglip.loc["mme", "tokens"] == 729 and siglip.loc["mme", "resolution"] == 384
    assert reference.supervision()["dinov2"] == "SSL contrastive"


def test_paper_layout_prints_mme_raw():
    layout = tables.paper_layout(reference.scores("released_models"))
    assert layout.loc["Cambrian-1-34B", "MME-P"] == pytest.approx(1689.3)
    assert list(layout.columns[:3]) == ["Avg", "General Avg", "MME-P"]


def test_group_means_follow_the_paper_rule():
    # a paper group needs all four of its benchmarks; any other suite averages what it has
    rows = [("a", "mme", "general", 1600 / 20), ("a", "mmbench", "general", 70.0),
            ("a", "seed", "general", 60.0), ("a", "gqa", "general", 50.0),
            ("b", "mme", "general", 80.0), ("b", "mmbench", "general", 70.0),
            ("s", "synthetic_general", "general", 40.0), ("s", "x_knowledge", "knowledge", 20.0),
            ("s", "y_knowledge", "knowledge", 30.0)]
    df = pd.DataFrame([{"label": r, "benchmark": b, "title": b, "group": g, "score": v}
                       for r, b, g, v in rows])
    m = tables.group_means(df)
    assert m.loc["a", "general"] == pytest.approx((80 + 70 + 60 + 50) / 4)
    assert math.isnan(m.loc["b", "general"])
    assert m.loc["s", "knowledge"] == pytest.approx(25.0)
    assert math.isnan(m.loc["s", "overall"])  # two groups missing
