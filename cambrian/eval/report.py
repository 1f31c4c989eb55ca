"""``report.json`` / ``report.md`` for a run, and the table printed at the end of it."""

from __future__ import annotations

import json
import os

from cambrian import fileio
from cambrian.eval import groups, predictions


def group_averages(results: dict[str, dict]) -> tuple[dict[str, dict], float | None]:
    """(per-group {"score", "chance", "benchmarks"}, overall) from vision-on results.

    Suites made of the paper's benchmarks use the paper's definition (``groups.py``: 16 columns,
    MME-P / 20, all four groups needed); any other suite (e.g. the synthetic one) averages its
    benchmarks by their ``group`` and the overall is the mean of the groups.
    """
    on = {k: v for k, v in results.items() if "/" not in k}
    cols = groups.columns_from_results(on)
    if any(c in groups.COLUMNS for c in cols):
        paper = groups.group_averages(cols)
        out = {g: {"score": paper[g], "chance": None, "benchmarks": list(groups.GROUPS[g])}
               for g in groups.GROUPS}
        return out, paper["overall"]
    by: dict[str, list[str]] = {}
    for name, r in on.items():
        if r.get("group"):
            by.setdefault(r["group"], []).append(name)
    out = {}
    for g in sorted(by, key=lambda g: list(groups.GROUPS).index(g) if g in groups.GROUPS else 9):
        names = by[g]
        chances = [on[n].get("chance") for n in names]
        out[g] = {"score": sum(on[n]["score"] for n in names) / len(names),
                  "chance": None if None in chances else sum(chances) / len(chances),
                  "benchmarks": names}
    overall = sum(v["score"] for v in out.values()) / len(out) if out else None
    return out, overall


def build(results: dict[str, dict], *, config_name: str, config_hash: str, step: int,
          decode: dict, wall_seconds: float, notes: list[str] | None = None) -> dict:
    per_group, overall = group_averages(results)
    return {"config": config_name, "config_hash": config_hash, "step": step,
            "benchmarks": results, "groups": per_group, "overall": overall, "decode": decode,
            "wall_seconds": round(wall_seconds, 1), "notes": notes or []}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def table(report: dict) -> str:
    """Markdown table: benchmark, group, score, vision-off, chance, n."""
    res = report["benchmarks"]
    lines = ["| benchmark | group | score | vision off | chance | n |", "|---|---|---|---|---|---|"]
    for name, r in res.items():
        if "/" in name:
            continue
        off = res.get(f"{name}/vision_off", {}).get("score")
        lines.append(f"| {name} | {groups.GROUP_TITLES.get(r.get('group'), '–')} | "
                     f"{_fmt(r['score'])} | "
                     f"{_fmt(off)} | {_fmt(r.get('chance'))} | {r['n']} |")
    for g, r in report["groups"].items():
        lines.append(f"| **{groups.GROUP_TITLES.get(g, g)}** | group | {_fmt(r['score'])} | | "
                     f"{_fmt(r['chance'])} | |")
    if report["overall"] is not None:
        lines.append(f"| **Overall** | | {report['overall']:.1f} | | | |")
    return "\n".join(lines)


def write(report: dict, workdir: str) -> None:
    """report.json, report.md, and the predictions in lmms-eval's sample-log layout."""
    fileio.write_text(fileio.join(workdir, "report.json"), json.dumps(report, indent=2))
    fileio.write_text(fileio.join(workdir, "report.md"),
                      f"# {report['config']} (step {report['step']})\n\n{table(report)}\n")
    if os.path.isdir(os.path.join(workdir, "predictions")):  # local runs
        export_lmms_eval(workdir)


def export_lmms_eval(workdir: str, out_dir: str | None = None) -> list[str]:
    """Writes each ``predictions/<bench>.jsonl`` in lmms-eval's ``--log_samples`` layout
    (``doc_id``, ``target``, ``arguments``, ``resps``, ``filtered_resps``, ``doc``) so the
    predictions can be inspected or rescored with lmms-eval's tooling. Returns the files written."""
    src = os.path.join(workdir, "predictions")
    out_dir = out_dir or os.path.join(workdir, "lmms_eval_samples")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for name in sorted(os.listdir(src)):
        if not name.endswith(".jsonl"):
            continue
        dst = os.path.join(out_dir, name.replace(".jsonl", "_samples.jsonl"))
        with open(dst, "w") as fout:
            for i, rec in enumerate(predictions.read(os.path.join(src, name))):
                pred = rec.pop("prediction")
                target = rec.get("answer", rec.get("references", ""))
                fout.write(json.dumps({
                    "doc_id": i, "target": target,
                    "arguments": [[rec.get("prompt", ""), {"until": [], "do_sample": False}]],
                    "resps": [[pred]], "filtered_resps": [pred], "doc": rec}) + "\n")
        written.append(dst)
    return written
