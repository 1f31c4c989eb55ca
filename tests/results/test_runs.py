"""Run folders -> tables, on the committed :runlocal probes (data/README.md)."""

import json
import math
import os
import shutil

import pytest

from cambrian.eval.benchmarks.common import DataFormatError
from cambrian.results import frames, runs, tables

RUNS = ["clip_mlp", "convnext_mlp", "dinov2_112_mlp", "dinov2_mlp", "siglip_mlp", "sva_4tower"]


@pytest.fixture(scope="module")
def loaded(data_dir):
    return runs.load(data_dir)


def _report(data_dir, name):
    with open(os.path.join(data_dir, name, "report.json")) as fh:
        return json.load(fh)


def test_finds_every_run_by_folder_and_by_glob(data_dir, loaded):
    assert [r.name for r in loaded] == RUNS
    assert runs.find(os.path.join(data_dir, "dinov2*")) == [
        os.path.join(data_dir, n) for n in ("dinov2_112_mlp", "dinov2_mlp")]
    assert runs.find([os.path.join(data_dir, "sva_4tower")]) == [
        os.path.join(data_dir, "sva_4tower")]


def test_nothing_found_names_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/none-\\*: no run found"):
        runs.find(str(tmp_path / "none-*"))


def test_scores_table(data_dir, loaded):
    df = frames.scores(loaded)
    assert list(df.columns) == list(frames.SCORE_COLUMNS)
    assert len(df) == len(RUNS) * 4  # the synthetic suite: one benchmark per group
    rep = _report(data_dir, "siglip_mlp")["benchmarks"]
    row = df[(df["run"] == "siglip_mlp") & (df["benchmark"] == "synthetic_ocr_chart")].iloc[0]
    assert row["score"] == rep["synthetic_ocr_chart"]["score"]
    assert row["vision_off"] == rep["synthetic_ocr_chart/vision_off"]["score"]
    assert row["chance"] == rep["synthetic_ocr_chart"]["chance"]
    assert math.isnan(df[df["run"] == "clip_mlp"]["vision_off"].iloc[0])  # vision on only
    sva = df[df["run"] == "sva_4tower"].iloc[0]
    assert (sva["connector"], sva["tokens"], sva["encoders"]) == (
        "sva", 16, "clip+convnext+dinov2+siglip")


def test_group_means_equal_the_reports(data_dir, loaded):
    means = tables.group_means(frames.scores(loaded))
    for name in RUNS:  # the pipeline's own group averages, from report.json
        rep = _report(data_dir, name)
        for g, r in rep["groups"].items():
            assert means.loc[name, g] == pytest.approx(r["score"])
        assert means.loc[name, "overall"] == pytest.approx(rep["overall"])


def test_loss_curves_from_losses_json_and_metrics_jsonl(data_dir, loaded):
    c = frames.curves(loaded)
    d = c[c["run"] == "dinov2_mlp"]
    # every step of both stages; stage 2 counts on from stage 1's 50 steps
    assert len(d) == 50 + 300
    assert d[d["stage"] == "stage2"]["step"].min() == 51
    with open(os.path.join(data_dir, "dinov2_mlp", "stage2_losses.json")) as fh:
        assert d[d["stage"] == "stage2"]["loss"].iloc[-1] == json.load(fh)[-1]
    m = c[c["run"] == "clip_mlp"]  # metrics.jsonl: the logged steps, every 10th
    assert list(m["step"][:2]) == [10, 20] and m["step"].max() == 350
    assert m["lr"].notna().all() and m["grad_norm"].notna().all()


def test_malformed_metrics_line_is_named(data_dir, tmp_path):
    run = tmp_path / "clip_mlp"
    shutil.copytree(os.path.join(data_dir, "clip_mlp"), run)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"stage": "stage2", "step": 351}\n')
    with pytest.raises(DataFormatError, match=r"metrics.jsonl:36: .*'stage_step'"):
        runs.read(str(run))


def test_missing_report_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="report.json not found"):
        runs.read(str(tmp_path))


def test_attention_table(loaded):
    att = frames.attention(loaded)
    assert set(att["run"]) == {"sva_4tower"}
    assert set(att["encoder"]) == {"clip", "convnext", "dinov2", "siglip"}
    sums = att.groupby("benchmark")["mass"].sum()
    assert len(sums) == 4 and sums.sub(100).abs().max() < 1e-3


def test_rescore_under_another_profile(loaded):
    run = next(r for r in loaded if r.name == "dinov2_mlp")
    again = runs.rescored(run, "lmms-eval")
    assert again.report["decode"]["profile"] == "lmms-eval"
    for name, r in run.report["benchmarks"].items():  # synthetic scoring is profile-free
        assert again.report["benchmarks"][name]["score"] == r["score"]


def test_select_and_relabel(loaded):
    df = frames.scores(loaded)
    mlp = frames.select(df, connector="mlp2x_gelu", group=["general", "knowledge"])
    assert set(mlp["group"]) == {"general", "knowledge"} and "sva_4tower" not in set(mlp["run"])
    with pytest.raises(KeyError, match="no column"):
        frames.select(df, encoder="x")
    assert set(frames.relabel(df, {"clip_mlp": "CLIP"})["label"]) >= {"CLIP", "dinov2_mlp"}


def test_paper_suite_columns(loaded):
    # report.json of the paper's suite: MME-P on its 0-2000 scale, CV-Bench's two columns
    bench = {"mme": {"score": 1500.0, "n": 10, "group": "general"},
             "mme/vision_off": {"score": 900.0, "n": 10, "group": "general"},
             "cvbench": {"score": 60.0, "2d": 70.0, "3d": 50.0, "n": 8, "group": "vision_centric"},
             "cvbench/vision_off": {"score": 40.0, "2d": 45.0, "3d": 35.0, "n": 8,
                                    "group": "vision_centric"},
             "pope": {"score": 80.0, "n": 5, "group": None}}
    run = runs.Run("paper_suite", "x", loaded[0].config, {"benchmarks": bench}, [], {})
    df = frames.scores([run]).set_index("benchmark")
    assert df.loc["mme", ["score", "vision_off"]].tolist() == [75.0, 45.0]  # / 20
    assert df.loc["cvbench_2d", ["score", "vision_off"]].tolist() == [70.0, 45.0]
    assert df.loc["cvbench_3d", ["score", "vision_off"]].tolist() == [50.0, 35.0]
    assert df.loc["pope", "group"] == "extra" and df.loc["mme", "title"] == "MME-P"
    assert math.isnan(tables.group_means(df.reset_index()).loc["paper_suite", "general"])
