"""Rescore saved predictions without the model, under any harness profile.

    python -m cambrian.eval.score --run runs/probe --profile cambrian
    python -m cambrian.eval.score --run runs/probe --compare

Reads ``<run>/predictions/<benchmark>.jsonl`` (one JSON object per line: the sample fields without
the image, plus "prediction"; the file name is the benchmark module's NAME), scores each file with
the profile and prints a table with the group averages. ``--compare`` scores every profile
(cambrian, lmms-eval, vlmevalkit, fixed) and prints where they disagree: the scores, and how many
records each profile scores differently from the first one.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence

from cambrian.eval import groups, metrics, suite
from cambrian.eval.benchmarks.common import DataFormatError
from cambrian.eval.predictions import read as read_predictions


def prediction_files(run: str, names: Sequence[str] | None = None) -> dict[str, str]:
    """{benchmark name: predictions file} of a run directory."""
    pred_dir = os.path.join(run, "predictions")
    if not os.path.isdir(pred_dir):
        raise FileNotFoundError(f"no predictions folder {pred_dir}; run the evaluation first")
    files = {f[: -len(".jsonl")]: os.path.join(pred_dir, f)
             for f in sorted(os.listdir(pred_dir)) if f.endswith(".jsonl")}
    if names:
        unknown = [n for n in names if n not in files]
        if unknown:
            raise FileNotFoundError(f"no predictions for {unknown} in {pred_dir}; "
                                    f"found {sorted(files)}")
        files = {n: files[n] for n in names}
    return files


def _score(bench, records: list[dict], profile: str, keep_records: bool = False) -> dict:
    if keep_records and "keep_records" in inspect.signature(bench.score).parameters:
        return bench.score(records, profile, keep_records=True)
    return bench.score(records, profile)


def rescore(run: str, profile: str = "cambrian", names: Sequence[str] | None = None) -> dict:
    """{benchmark: score() result} for every predictions file of ``run``."""
    results = {}
    for name, path in prediction_files(run, names).items():
        bench = suite.benchmark(name)
        res = _score(bench, read_predictions(path), profile)
        results[name] = {**res, "group": bench.GROUP}
    return results


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)


def table(results: dict) -> str:
    lines = [f"{'benchmark':<22}{'group':<16}{'score':>10}{'n':>8}{'deferred':>10}"
             f"{'errors':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<22}{str(r.get('group')):<16}{_fmt(r['score']):>10}{r['n']:>8}"
                     f"{_fmt(r.get('deferred', 0)):>10}{_fmt(r.get('harness_errors', 0)):>8}")
    avgs = groups.group_averages(groups.columns_from_results(
        {k: v for k, v in results.items() if v.get("group")}))
    for g, title in groups.GROUP_TITLES.items():
        lines.append(f"{title + ' (avg)':<38}{_fmt(avgs[g]):>10}")
    lines.append(f"{'Overall (avg of 16)':<38}{_fmt(avgs['overall']):>10}")
    if avgs["missing"]:
        lines.append(f"missing for the averages: {', '.join(avgs['missing'])}")
    return "\n".join(lines)


def compare(run: str, profiles: Sequence[str] = metrics.HARNESSES,
            names: Sequence[str] | None = None) -> dict:
    """{benchmark: {profile: score or "n/a" / "error: ..."} plus "differing_records":
    {profile: #records scored differently from the first profile}}."""
    out = {}
    for name, path in prediction_files(run, names).items():
        bench, records = suite.benchmark(name), read_predictions(path)
        row: dict = {}
        per_record: dict[str, list] = {}
        for p in profiles:
            try:
                res = _score(bench, records, p, keep_records=True)
            except metrics.ScorerNotFound:
                row[p] = "n/a"
                continue
            except metrics.HarnessError as e:
                row[p] = f"error: {e}"
                continue
            row[p] = res["score"]
            if "record_scores" in res:
                per_record[p] = res["record_scores"]
        base = next(iter(per_record.values()), None)
        row["differing_records"] = {p: sum(a != b for a, b in zip(base, v))
                                    for p, v in per_record.items()} if base is not None else {}
        out[name] = row
    return out


def compare_table(rows: dict, profiles: Sequence[str]) -> str:
    head = f"{'benchmark':<22}" + "".join(f"{p:>14}" for p in profiles) + "  differing records"
    lines = [head]
    for name, row in rows.items():
        numbers = [row[p] for p in profiles if isinstance(row[p], float)]
        flag = "*" if numbers and max(numbers) - min(numbers) > 1e-9 else " "
        cells = "".join(f"{(_fmt(row[p]) if not isinstance(row[p], str) else row[p][:12]):>14}"
                        for p in profiles)
        diffs = ", ".join(f"{p}: {n}" for p, n in row["differing_records"].items() if n)
        lines.append(f"{flag}{name:<21}{cells}  {diffs}")
    lines.append("* = profiles disagree on the score")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cambrian.eval.score",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run directory holding predictions/")
    parser.add_argument("--profile", default="cambrian",
                        help=f"scoring profile, one of {', '.join(metrics.HARNESSES)}")
    parser.add_argument("--benchmarks", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--compare", action="store_true", help="score under every profile")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    names = [n for n in args.benchmarks.split(",") if n] or None
    try:
        if args.compare:
            result = compare(args.run, metrics.HARNESSES, names)
            print(compare_table(result, metrics.HARNESSES))
        else:
            profile = metrics.harness_name(args.profile)
            result = rescore(args.run, profile, names)
            print(f"profile: {profile}\n{table(result)}")
    except (FileNotFoundError, DataFormatError, metrics.ScorerNotFound, metrics.HarnessError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
