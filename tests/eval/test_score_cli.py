"""``python -m cambrian.eval.score``: rescoring saved predictions under each profile."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cambrian.eval import score as score_cli

CHOICES = {"A": "open", "B": "closed"}


def write_run(root) -> str:
    pred = root / "predictions"
    pred.mkdir(parents=True)
    gqa = [{"id": "1", "prompt": "p", "answer": "yes", "prediction": "Yes."},
           {"id": "2", "prompt": "p", "answer": "table", "prediction": "table"}]
    mmvp = [{"id": "1", "prompt": "p", "answer": "A", "choices": CHOICES, "index": 1,
             "prediction": "open"},
            {"id": "2", "prompt": "p", "answer": "B", "choices": CHOICES, "index": 2,
             "prediction": "closed"}]
    for name, recs in (("gqa", gqa), ("mmvp", mmvp)):
        (pred / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(root)


def test_rescore_table(tmp_path, capsys):
    run = write_run(tmp_path)
    assert score_cli.main(["--run", run, "--profile", "cambrian"]) == 0
    out = capsys.readouterr().out
    assert "profile: cambrian" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line[:1].islower()}
    assert float(rows["gqa"][2]) == 100.0 and float(rows["mmvp"][2]) == 100.0
    assert "missing for the averages" in out  # only 2 of the 16 columns


def test_profiles_and_json_output(tmp_path):
    run = write_run(tmp_path)
    out = tmp_path / "vk.json"
    assert score_cli.main(["--run", run, "--profile", "vlmevalkit", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["gqa"]["score"] == 50.0  # "Yes." != "yes" without punctuation removal
    assert res["mmvp"]["score"] == 100.0  # option text found by can_infer
    res = score_cli.rescore(run, "lmms-eval")
    assert res["mmvp"]["score"] == 0.0  # its A/B regexes do not read option text


def test_compare_marks_disagreements(tmp_path, capsys):
    run = write_run(tmp_path)
    assert score_cli.main(["--run", run, "--compare"]) == 0
    out = capsys.readouterr().out
    lines = {line[1:].split()[0]: line for line in out.splitlines()[1:-1]}
    assert lines["gqa"].startswith("*") and lines["mmvp"].startswith("*")
    rows = score_cli.compare(run)
    assert rows["gqa"]["vlmevalkit"] == 50.0 and rows["gqa"]["cambrian"] == 100.0
    assert rows["gqa"]["differing_records"]["vlmevalkit"] == 1
    assert rows["mmvp"]["differing_records"]["lmms-eval"] == 2


def test_errors(tmp_path, capsys):
    assert score_cli.main(["--run", str(tmp_path)]) == 2
    assert "no predictions folder" in capsys.readouterr().err
    run = write_run(tmp_path / "r")
    (tmp_path / "r/predictions/gqa.jsonl").write_text('{"id": 1}\n')
    assert score_cli.main(["--run", run, "--benchmarks", "gqa"]) == 2
    assert "gqa.jsonl:1" in capsys.readouterr().err
    assert score_cli.main(["--run", run, "--profile", "opencompass"]) == 2


@pytest.mark.slow
def test_module_entry_point(tmp_path):
    run = write_run(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cambrian.eval.score", "--run", run],
                          capture_output=True, text=True, check=True)
    assert "gqa" in proc.stdout


@pytest.mark.parametrize("line, reason", [("{not json", "malformed JSON"),
                                          ('{"id": "3"}', "'prediction' field"),
                                          ('["a list"]', "expected a JSON object")])
def test_bad_prediction_line_names_file_and_line(tmp_path, line, reason):
    path = tmp_path / "gqa.jsonl"
    path.write_text(json.dumps({"id": "1", "prediction": "yes"}) + "\n" + line + "\n")
    with pytest.raises(score_cli.DataFormatError, match=rf"gqa\.jsonl:2: .*{reason}"):
        score_cli.read_predictions(str(path))
