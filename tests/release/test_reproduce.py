"""``reproduce``: a run's scores beside the paper's Cambrian-1 row, per profile, from saved
predictions (no model). Expected numbers are the paper's (Table 4) typed in by hand and scores
derived by hand from the saved predictions."""

from __future__ import annotations

import json

import pytest

from cambrian.release import reproduce
from tests.eval import test_score_cli as score_cli_test


def _run(root, config: dict, report: dict | None = None, predictions: bool = True) -> str:
    """A run directory; its predictions are ``test_score_cli``'s: GQA "Yes." vs "yes" is right
    for Cambrian's rules, wrong for VLMEvalKit's (100 / 50); both MMVP pairs right (100)."""
    if predictions:
        score_cli_test.write_run(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    if report is not None:
        (root / "report.json").write_text(json.dumps(report))
    return str(root)


def _rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines()[2:]:
        title, cells = line[:24].strip(), line[24:].split()
        rows[title] = cells
    return rows


CONVERTED_8B = {"name": "eval/cambrian.py",
                "model": {"llm": {"checkpoint": "/data/nyu-visionx/cambrian-8b"},
                          "tokenizer": "/data/nyu-visionx/cambrian-8b", "template": "llama_3"}}


def test_scores_beside_the_paper_per_profile_missing_shown_as_missing(tmp_path, capsys):
    run = _run(tmp_path / "r", CONVERTED_8B)
    assert reproduce.main(["--run", run, "--profile", "cambrian", "--profile", "vlmevalkit"]) == 0
    captured = capsys.readouterr()
    assert "Cambrian-1-8B (from model.llm.checkpoint" in captured.err
    rows = _rows(captured.out)
    # paper, cambrian, Δ, vlmevalkit, Δ
    assert rows["GQA"] == ["64.6", "100.0", "+35.4", "50.0", "-14.6"]
    assert rows["MMVP"] == ["51.3", "100.0", "+48.7", "100.0", "+48.7"]
    # never scored: the paper's number, ours missing (not 0), and so the averages that need it
    assert rows["MME-P"] == ["1547.1", "missing", "missing"]
    assert rows["General (avg)"] == ["73.1", "missing", "missing"]
    assert rows["Overall (avg of 4)"] == ["67.7", "missing", "missing"]  # (73.1+61.3+71.3+65)/4
    assert "cambrian: missing 14 of 16" in captured.out


def test_the_paper_row_follows_the_run_or_model(tmp_path, capsys):
    vicuna = {"name": "eval/cambrian.py", "model": {"llm": {"checkpoint": "/x/run"},
                                                    "tokenizer": "/x/run",
                                                    "template": "vicuna_v1"}}
    assert reproduce.infer_size(vicuna, "r")[0] == "13b"
    assert reproduce.infer_size({"name": "cambrian/34b.py", "model": {}}, "r")[0] == "34b"
    with pytest.raises(ValueError, match="--model"):
        reproduce.infer_size({"name": "x.py", "model": {"template": "chatml"}}, "r")
    run = _run(tmp_path / "r", vicuna)
    assert reproduce.main(["--run", run, "--model", "34b"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert rows["GQA"][:2] == ["65.8", "100.0"]


def test_report_only_run_gives_its_own_profile(tmp_path, capsys):
    report = {"benchmarks": {"gqa": {"score": 60.0, "n": 2}, "gqa/vision_off": {"score": 1.0}},
              "decode": {"profile": "lmms-eval"}}
    run = _run(tmp_path / "r", CONVERTED_8B, report, predictions=False)
    assert reproduce.main(["--run", run]) == 0
    out = capsys.readouterr().out
    assert _rows(out)["GQA"] == ["64.6", "60.0", "-4.6"]
    assert "lmms-eval" in out.splitlines()[1]
    assert reproduce.main(["--run", run, "--profile", "cambrian"]) == 2
    assert "no predictions/ to rescore under 'cambrian'" in capsys.readouterr().err
    assert reproduce.main(["--run", str(tmp_path / "nothing")]) == 2
    assert "config.json not found" in capsys.readouterr().err
