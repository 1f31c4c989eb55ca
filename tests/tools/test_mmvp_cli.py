"""The user's commands end to end on tiny stand-ins: mine a folder of images with two random-init
zoo towers, annotate, build an MMVP-format folder, read it with the suite's loader, and report
pair accuracy per pattern from a predictions file."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cambrian import config as config_lib
from cambrian import preflight
from cambrian.eval import suite
from cambrian.eval.benchmarks import mmvp as mmvp_benchmark
from cambrian.tools import features
from cambrian.tools.mmvp import patterns
from cambrian.tools.mmvp.__main__ import main

from . import synthetic

QUESTIONS = [("Is the shape facing left or right?", ["Left", "Right"], "a", "b"),
             ("How many shapes are there?", ["One", "Two"], "(b)", "One")]


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "images"
    os.makedirs(d / "sub")
    for i, img in enumerate(synthetic.image_set(n_planted=2, n_distractors=4,
                                                n_echoes=0).images):
        Image.fromarray(img).save(d / ("sub" if i % 2 else "") / f"{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


def mine_args(image_dir, out, cache, *extra):
    return ["mine", "--images", str(image_dir), "--variant-a", "runlocal", "--variant-b",
            "runlocal", "--pool-a", "cls", "--pool-b", "cls", "--tau-a", "-1", "--tau-b", "2",
            "--neighbours", "2", "--cache", str(cache), "--thumbnails", "3", "--out", str(out),
            *extra]


def test_mine_build_patterns(tmp_path, image_dir, capsys, monkeypatch):
    out = tmp_path / "mined" / "pairs.jsonl"
    with pytest.raises(SystemExit, match="--checkpoint-a is required"):
        main(mine_args(image_dir, out, tmp_path / "cache"))
    assert main(mine_args(image_dir, out, tmp_path / "cache", "--random-init")) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["rank"] for r in lines] == list(range(1, len(lines) + 1)) and len(lines) >= 3
    assert all(os.path.exists(r["image_1"]) and r["image_1"].endswith(".png") for r in lines)
    gaps = [r["gap"] for r in lines]
    assert gaps == sorted(gaps, reverse=True)
    meta = json.loads((tmp_path / "mined" / "pairs.meta.json").read_text())
    assert meta["images"] == 8 and meta["index"] == "exact" and "NOT PRETRAINED" in meta["warning"]
    assert "RANDOM INIT" in meta["encoder_a"]["label"] and meta["encoder_b"]["family"] == "dinov2"
    assert sorted(os.listdir(tmp_path / "mined" / "pairs_thumbnails")) == [
        "00001.png", "00002.png", "00003.png"]
    assert lines[0]["thumbnail"] == "pairs_thumbnails/00001.png" and "thumbnail" not in lines[3]
    assert Image.open(tmp_path / "mined" / "pairs_contact.png").size[0] > 0
    assert len(os.listdir(tmp_path / "cache" / "features")) == 2  # one entry per tower

    # the same command again reads every feature from the cache: no tower runs
    def no_forward(*args):
        raise AssertionError("a tower ran although every feature was cached")

    monkeypatch.setattr(features, "make_forward", no_forward)
    again = tmp_path / "again" / "pairs.jsonl"
    assert main(mine_args(image_dir, again, tmp_path / "cache", "--random-init")) == 0
    assert again.read_text() == out.read_text()

    # review: keep two pairs, leave the third unannotated
    annotated = tmp_path / "annotated.jsonl"
    rows = [{**r, "question": q, "options": o, "answer_1": a1, "answer_2": a2}
            for r, (q, o, a1, a2) in zip(lines, QUESTIONS)] + [lines[2]]
    annotated.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = tmp_path / "bench"
    with pytest.raises(ValueError, match=r"annotated.jsonl:3: missing question, options"):
        main(["build", "--pairs", str(annotated), "--out", str(bench)])
    assert main(["build", "--pairs", str(annotated), "--out", str(bench),
                 "--skip-unannotated"]) == 0
    assert f"--config.eval.roots.mmvp={bench}" in capsys.readouterr().out

    # the eval command the build prints finds the folder and passes the launcher's preflight
    config = config_lib.load("eval/cambrian.py:suite=mmvp")
    config.eval.roots.mmvp = str(bench)
    assert suite.folder(suite.benchmark("mmvp"), config) == str(bench)
    assert preflight.benchmark_problems(config) == []
    samples = mmvp_benchmark.load(str(bench))
    assert [s["answer"] for s in samples] == ["A", "B", "B", "A"]
    assert [s["index"] for s in samples] == [1, 2, 3, 4]
    assert samples[2]["choices"] == {"A": "One", "B": "Two"}
    src = np.asarray(Image.open(lines[1]["image_2"]).convert("RGB"), np.float32)
    assert samples[3]["image"].shape == src.shape
    assert np.abs(samples[3]["image"] - src).mean() < 4  # JPEG round trip of the same image

    preds = tmp_path / "run" / "predictions" / "mmvp.jsonl"
    os.makedirs(preds.parent)
    answers = {"1": "A", "2": "B", "3": "B", "4": "B"}  # pair 1 right, pair 2 half right
    preds.write_text("".join(json.dumps({"id": i, "prediction": p}) + "\n"
                             for i, p in answers.items()))
    result = tmp_path / "patterns.json"
    assert main(["patterns", "--benchmark", str(bench), "--run", str(tmp_path / "run"),
                 "--out", str(result)]) == 0
    got = json.loads(result.read_text())
    assert got["orientation_and_direction"] == {"pairs": 1, "pair_accuracy": 100.0,
                                                "question_accuracy": 100.0}
    assert got["quantity_and_count"]["pair_accuracy"] == 0.0
    assert got["all"] == {"pairs": 2, "pair_accuracy": 50.0, "question_accuracy": 75.0}
    assert "| orientation_and_direction | 1 | 100.0 | 100.0 |" in capsys.readouterr().out

    preds.write_text(json.dumps({"id": "1", "prediction": "A"}) + "\n")
    with pytest.raises(ValueError, match=r"no prediction for 3 of 4 questions \(Index 2, 3, 4\)"):
        main(["patterns", "--benchmark", str(bench), "--predictions", str(preds)])


def test_patterns_without_predictions_lists_tags(tmp_path, capsys):
    bench = tmp_path / "bench"
    os.makedirs(bench / "MMVP Images")
    rows = ["Index,Question,Options,Correct Answer"]
    for i, q in enumerate(["Is the door open or closed?", "Is the door open or closed?",
                           "What does the sign say?", "What does the sign say?"], 1):
        rows.append(f"{i},{q},(a) x (b) y,(a)")
        Image.new("RGB", (4, 4)).save(bench / "MMVP Images" / f"{i}.jpg")
    (bench / "Questions.csv").write_text("\n".join(rows) + "\n")
    assert main(["patterns", "--benchmark", str(bench)]) == 0
    assert capsys.readouterr().out.split() == ["state_and_condition:", "1", "text:", "1"]
    assert patterns.UNTAGGED == "untagged"
