"""Predictions exported in lmms-eval's ``--log_samples`` layout."""

from __future__ import annotations

import json

import pytest

from cambrian.eval import report
from cambrian.eval.benchmarks.common import DataFormatError


def test_export_lmms_eval_samples(tmp_path):
    (tmp_path / "predictions").mkdir()
    recs = [{"id": "1", "prompt": "Q?", "answer": "B", "prediction": "B."},
            {"id": "2", "prompt": "R?", "references": ["x"], "prediction": "x"}]
    (tmp_path / "predictions" / "ai2d.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in recs) + "\n")
    (dst,) = report.export_lmms_eval(str(tmp_path))
    rows = [json.loads(line) for line in open(dst)]
    assert rows[0] == {"doc_id": 0, "target": "B",
                       "arguments": [["Q?", {"until": [], "do_sample": False}]],
                       "resps": [["B."]], "filtered_resps": ["B."],
                       "doc": {"id": "1", "prompt": "Q?", "answer": "B"}}
    assert rows[1]["target"] == ["x"] and rows[1]["doc_id"] == 1
    (tmp_path / "predictions" / "ai2d.jsonl").write_text('{"id": "1"}\n')
    with pytest.raises(DataFormatError, match=r"ai2d\.jsonl:1: .*'prediction'"):
        report.export_lmms_eval(str(tmp_path))
