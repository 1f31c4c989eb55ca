"""Group averages reproduce the published Cambrian-1 numbers (cambrian.md §7.1, §7.3)."""

from __future__ import annotations

import pytest

from cambrian.eval import groups

# Paper column order; MME-P raw (0-2000). Cambrian-1 table [P Table 4 v1 / project page].
PUBLISHED = {
    "8b": ([1547.1, 75.9, 74.7, 64.6, 80.4, 42.7, 49.0, 73.0, 73.3, 62.4, 71.7, 77.8, 51.3,
            64.2, 72.3, 72.0], {"general": 73.1, "knowledge": 61.3, "ocr_chart": 71.3,
                                "vision_centric": 65.0}),
    "13b": ([1610.4, 75.7, 74.4, 64.3, 79.3, 40.0, 48.0, 73.6, 73.8, 61.9, 72.8, 76.8, 41.3,
             63.0, 72.5, 71.8], {"general": 73.7, "knowledge": 60.2, "ocr_chart": 71.3,
                                 "vision_centric": 62.2}),
    "34b": ([1689.3, 81.4, 75.3, 65.8, 85.6, 49.7, 53.2, 79.7, 75.6, 60.0, 76.7, 75.5, 52.7,
             67.8, 74.0, 79.7], {"general": 76.8, "knowledge": 67.0, "ocr_chart": 71.9,
                                 "vision_centric": 68.5}),
}
# Encoder-study rows (Vicuna-7B, concat + MLP), published "Avg" with two decimals [S Table 2].
ENCODER_ROWS = {
    "siglip+dinov2": ([1432.0, 61.3, 66.0, 63.3, 68.8, 35.7, 29.4, 60.0, 43.0, 35.7, 60.4, 37.5,
                       30.0, 54.0, 55.5, 53.6], 51.61),
    "siglip+dinov2+convnext": ([1503.5, 63.8, 68.0, 64.0, 70.4, 36.0, 29.3, 60.7, 48.2, 36.9,
                                65.0, 45.5, 34.7, 58.7, 55.7, 60.3], 54.52),
}


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_cambrian_group_averages(model):
    values, expected = PUBLISHED[model]
    got = groups.group_averages(dict(zip(groups.COLUMNS, values)))
    for group, value in expected.items():
        # Published averages are taken on unrounded scores; the inputs here are rounded.
        assert got[group] == pytest.approx(value, abs=0.1), group
    assert got["missing"] == [] and got["extras"] == {}


@pytest.mark.parametrize("row", sorted(ENCODER_ROWS))
def test_overall_is_mean_of_16_with_mme_over_20(row):
    values, published = ENCODER_ROWS[row]
    got = groups.group_averages(dict(zip(groups.COLUMNS, values)))
    assert got["overall"] == pytest.approx(published, abs=0.005)
    assert got["overall"] == pytest.approx(sum(got[g] for g in groups.GROUPS) / 4)


def test_column_order_and_extras():
    assert groups.COLUMNS[:4] == ("mme", "mmbench", "seed", "gqa")
    assert groups.COLUMNS[-2:] == ("cvbench_2d", "cvbench_3d")
    values, _ = PUBLISHED["8b"]
    scores = dict(zip(groups.COLUMNS, values))
    del scores["docvqa"]
    scores.update(vstar=60.0, pope=86.0)
    got = groups.group_averages(scores)
    assert got["ocr_chart"] is None and got["overall"] is None
    assert got["missing"] == ["docvqa"]
    assert got["extras"] == {"vstar": 60.0, "pope": 86.0}
    assert got["general"] == pytest.approx(73.1, abs=0.1)


def test_columns_from_benchmark_results():
    res = {"mme": {"score": 1500.0}, "cvbench": {"score": 70.0, "2d": 66.0, "3d": 74.0},
           "vstar": {"score": 50.0}}
    assert groups.columns_from_results(res) == {"mme": 1500.0, "cvbench_2d": 66.0,
                                                "cvbench_3d": 74.0, "vstar": 50.0}
