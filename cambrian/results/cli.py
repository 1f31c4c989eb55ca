"""Compare runs without Jupyter: every figure as PNG plus a markdown summary.

    python -m cambrian.results compare runs/dinov2 runs/clip --out figs/
    python -m cambrian.results compare 'gs://bucket/sweep/*' --out figs/ --reference encoder_sweep
    python -m cambrian.results compare runs/* --out figs/ --profile lmms-eval

RUN is a run folder, a folder of runs or a glob, local or gs://. ``--profile`` rescores every
run's saved predictions under that scoring profile first. ``--reference`` adds the paper's rows
(``encoder_sweep`` or ``released_models``) beside the runs. Writes ``OUT/<figure>.png``,
``OUT/figures.json`` (each figure's axes) and ``OUT/summary.md``; a figure the runs have no data
for is listed in the summary with what to run to get it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import pandas as pd

from cambrian.results import figures, frames, reference, runs, tables

CAPTIONS = {
    "group_bars": "Group averages per run (chance as a black tick where known).",
    "heatmap": "Every benchmark x run.",
    "whos_answering": "Vision on vs vision off vs chance per benchmark.",
    "score_vs_tokens": "Average score vs visual tokens and input resolution.",
    "loss_curves": "Training loss per step.",
    "attention_mass": "Share of the SVA's attention per encoder and benchmark.",
    "radar": "The four group averages per run.",
}


def compare(patterns: Sequence[str], out: str, *, profile: str = "",
            reference_set: str = "", names: Sequence[str] | None = None) -> dict[str, str]:
    """Draws every figure into ``out`` and writes ``summary.md``; returns {figure: path or
    the reason it was skipped}."""
    loaded = runs.load(list(patterns), list(names) if names else None)
    if profile:
        loaded = [runs.rescored(r, profile) for r in loaded]
    scores = frames.scores(loaded)
    if reference_set:
        scores = pd.concat([reference.scores(reference_set), scores], ignore_index=True)
    data = {"group_bars": scores, "heatmap": scores, "whos_answering": scores,
            "score_vs_tokens": scores, "radar": scores, "loss_curves": frames.curves(loaded),
            "attention_mass": frames.attention(loaded)}
    os.makedirs(out, exist_ok=True)
    done: dict[str, str] = {}
    for kind, fn in figures.KINDS.items():
        try:
            fig = fn(data[kind])
        except figures.NoData as e:
            done[kind] = f"skipped: {e}"
            continue
        done[kind] = figures.save(fig, os.path.join(out, f"{kind}.png"))
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(summary(loaded, scores, done, profile))
    return done


def summary(loaded: list[runs.Run], scores: pd.DataFrame, done: dict[str, str],
            profile: str) -> str:
    lines = ["# Run comparison", "", "| run | path | config | step | scoring profile |",
             "|---|---|---|---|---|"]
    for r in loaded:
        lines.append(f"| {r.name} | {r.path} | {r.report.get('config', '')} | "
                     f"{r.report.get('step', '')} | "
                     f"{r.report.get('decode', {}).get('profile', '')} |")
    notes = [f"- {r.name}: {n}" for r in loaded for n in r.report.get("notes", [])]
    if profile:
        notes.append(f"- every run rescored from its saved predictions under `{profile}`")
    ranked = tables.ranked(scores).rename(columns=tables.TITLES)
    lines += ["", "## Ranking (group averages, %)", "", tables.markdown(ranked), "",
              "## Per benchmark (paper layout: MME-P raw, 0-2000)", "",
              tables.markdown(tables.paper_layout(scores))]
    who = tables.whos_answering(scores)
    if len(who):
        lines += ["", "## Who's answering (mean over runs with vision off, %)", "",
                  tables.markdown(who)]
    lines += ["", "## Figures", ""]
    for kind, result in done.items():
        lines.append(f"- {CAPTIONS[kind]} " + (result if result.startswith("skipped")
                                               else f"![{kind}]({os.path.basename(result)})"))
    if notes:
        lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cambrian.results",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("compare", help="figures and a markdown summary of several runs")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folder, folder of runs or glob (local or gs://)")
    p.add_argument("--out", required=True, help="folder for the PNGs and summary.md")
    p.add_argument("--profile", default="",
                   help="rescore every run's predictions under this scoring profile first "
                        "(cambrian, lmms-eval, vlmevalkit, fixed)")
    p.add_argument("--reference", default="", choices=("", *reference.SETS),
                   help="add the paper's rows beside the runs")
    p.add_argument("--names", default="", help="comma-separated display names, one per run")
    args = parser.parse_args(argv)
    try:
        done = compare(args.runs, args.out, profile=args.profile,
                       reference_set=args.reference,
                       names=[n for n in args.names.split(",") if n] or None)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for kind, result in done.items():
        print(f"{kind:16s} {result}")
    print(f"summary          {os.path.join(args.out, 'summary.md')}")
    return 0
