"""Every record of the scoring case files through ``metrics.scorer``.

Expected values were produced by calling each reference harness's own function at its pinned
commit (``metrics.PINS``; scoring.md §6); they are rounded to 6 decimals, hence the 1e-6
tolerance. ``expected`` null = the harness defers to a GPT judge / random fallback (the scorer
returns None); "error" = the harness raises (the scorer raises ``HarnessError``).
``cases/scoring_cases_public.jsonl`` is the reference case set; ``cases/scoring_cases_pinned.jsonl``
adds the cases where a profile diverged from its pinned harness code (each "source" names the
function that produced "expected"). Set CAMBRIAN_SCORING_CASES to run another case file of the
same format instead of the public one.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from cambrian.eval import metrics

CASES = pathlib.Path(os.environ.get(
    "CAMBRIAN_SCORING_CASES",
    pathlib.Path(__file__).parent / "cases" / "scoring_cases_public.jsonl"))
PINNED = pathlib.Path(__file__).parent / "cases" / "scoring_cases_pinned.jsonl"
META = {"scorer", "case_id", "harness", "variant", "primary", "expected", "source",
        "upstream_strip", "harnesses_disagree", "note"}


def _load(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = _load(CASES)
PINNED_RECORDS = _load(PINNED)


def _id(r: dict) -> str:
    return f"{r['scorer']}/{r['case_id']}/{r['harness']}/{r['variant']}"


def _fields(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in META}


def test_case_file_covers_every_scorer_and_harness():
    kinds = {(r["scorer"], r["harness"]) for r in RECORDS}
    assert {s for s, _ in kinds} >= {"vqa_accuracy", "anls", "chartqa_relaxed", "mcq_letter",
                                     "ocrbench", "mme_pair", "mmvp_pair", "gqa_exact",
                                     "mmmu_open"}
    assert {h for _, h in kinds} == {"cambrian", "lmms-eval", "vlmevalkit"}


@pytest.mark.parametrize("record", RECORDS + PINNED_RECORDS, ids=_id)
def test_case(record):
    fn = metrics.scorer(record["scorer"], record["harness"], record["variant"])
    fields = _fields(record)
    expected = record["expected"]
    if expected == "error":
        with pytest.raises(metrics.HarnessError):
            fn(**fields)
        return
    got = fn(**fields)
    if expected is None:
        assert got is None, record.get("note")
        return
    assert got == pytest.approx(expected, abs=1e-6)
    if record["upstream_strip"]:
        # The scorer applies the harness's own strip: a pre-stripped generation scores the same.
        stripped = {k: (v.strip() if k == "prediction" else
                        [p.strip() for p in v] if k == "predictions" else v)
                    for k, v in fields.items()}
        assert fn(**stripped) == pytest.approx(expected, abs=1e-6)


def test_default_variant_is_the_primary_one():
    fn = metrics.scorer("ocrbench", "cambrian")
    assert fn(prediction="The text says HELLO.", references=["hello"],
              category="Regular Text Recognition") == 1.0  # CLI default: containment


def test_unknown_names_are_clear_errors():
    with pytest.raises(metrics.ScorerNotFound, match="no scorer 'bleu'"):
        metrics.scorer("bleu", "cambrian")
    with pytest.raises(metrics.ScorerNotFound, match="unknown harness"):
        metrics.scorer("anls", "opencompass")
    with pytest.raises(metrics.ScorerNotFound, match="needs a variant"):
        metrics.scorer("mcq_letter", "cambrian")
    with pytest.raises(metrics.ScorerNotFound, match="known variants"):
        metrics.scorer("mcq_letter", "cambrian", "no_such_task")
