"""Our scores of a released Cambrian-1 model beside the paper's, per scoring profile.

    python -m cambrian.release reproduce --run RUN_DIR [--profile P ...] [--model 8b]
    python -m cambrian.release.reproduce --run RUN_DIR ...        (the same)

``RUN_DIR`` is an evaluated run (``convert`` then the eval-only run): its ``config.json``, and its
``report.json`` and/or saved ``predictions/``. Each ``--profile`` (default: the profile the run was
scored with) is rescored from the saved predictions when there are any, else read from
``report.json`` (only its own profile). The paper's row is the Cambrian-1-8B/13B/34B row of
``cambrian/results/reference/released_models.csv``; which one comes from ``--model`` or the run's
config (its config name, the release directory's name, else its chat template). A benchmark the
run did not score is printed as ``missing``, and group averages that need it as ``missing`` too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence

import fsspec

from cambrian.eval import groups, metrics
from cambrian.release.config import RELEASES
from cambrian.results import reference, runs

MISSING = "missing"
_SIZE = re.compile(r"cambrian[-_/]?1?[-_]?(8b|13b|34b)\b", re.IGNORECASE)


def paper_row(size: str) -> dict:
    """The paper's Cambrian-1-<size> row: {column: number in the paper's units}, the published
    group averages under their group names and ``overall`` (the mean of the four)."""
    table = reference.raw("released_models")
    name = f"Cambrian-1-{size.upper()}"
    rows = table[table["model"] == name]
    if rows.empty:
        raise ValueError(f"{reference.path('released_models')}: no row {name!r}; "
                         f"rows: {', '.join(table['model'])}")
    row = rows.iloc[0]
    out = {c: float(row[c]) for c in groups.COLUMNS}
    for g in groups.GROUPS:
        out[g] = float(row[f"{g}_published"])
    out["overall"] = sum(out[g] for g in groups.GROUPS) / len(groups.GROUPS)
    return out


def infer_size(config: dict, run: str) -> tuple[str, str]:
    """(8b | 13b | 34b, why) from a run's config: its name (``cambrian/8b.py``), the release
    directory it was converted from (``.../cambrian-8b``), else its chat template."""
    model = config.get("model", {})
    llm = model.get("llm", {}) if isinstance(model, dict) else {}
    for key, value in (("config name", config.get("name")),
                       ("model.llm.checkpoint", llm.get("checkpoint")),
                       ("model.tokenizer", model.get("tokenizer"))):
        found = _SIZE.search(str(value or ""))
        if found:
            return found.group(1).lower(), f"{key} {value!r}"
    template = model.get("template")
    sizes = [s for s, r in RELEASES.items() if r.template == template]
    if len(sizes) == 1:
        return sizes[0], f"chat template {template!r}"
    raise ValueError(f"{run}/config.json: cannot tell which released model this run is (config "
                     f"name {config.get('name')!r}, model.llm.checkpoint "
                     f"{llm.get('checkpoint')!r}, template {template!r}); pass --model "
                     f"{'|'.join(RELEASES)}")


def _read_run(path: str) -> runs.Run:
    """The run at ``path``; ``report.json`` may be absent when predictions are saved."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(f"{p}/config.json"):
        raise FileNotFoundError(f"{path}/config.json not found: give the run directory that "
                                "`python -m cambrian.release convert --out` wrote and the eval "
                                "scored")
    if fs.exists(f"{p}/{runs.REPORT}"):
        return runs.read(path)
    if not fs.isdir(f"{p}/predictions"):
        raise FileNotFoundError(f"{path}: neither {runs.REPORT} nor predictions/; evaluate the "
                                f"run first (launch/tpu.py --config eval/cambrian.py "
                                f"--config.checkpoint={path})")
    with fsspec.open(f"{path}/config.json", "rt", encoding="utf-8") as fh:
        config = json.load(fh)
    return runs.Run(path.rstrip("/").rsplit("/", 1)[-1], path, config, {"benchmarks": {}}, [], {})


def run_scores(run: runs.Run, profile: str) -> dict:
    """{column: number in the paper's units (MME-P 0-2000)} plus group means and ``overall``
    (None where a column is missing) of ``run`` under ``profile``."""
    fs, p = fsspec.core.url_to_fs(run.path)
    own = run.report.get("decode", {}).get("profile")
    if fs.isdir(f"{p}/predictions"):
        report = runs.rescored(run, profile).report
    elif own is not None and metrics.harness_name(own) == profile:
        report = run.report
    else:
        raise FileNotFoundError(
            f"{run.path}: no predictions/ to rescore under {profile!r}; {runs.REPORT} holds "
            f"{own!r} scores only. Pass --profile {own} or re-evaluate with saved predictions")
    on = {k: v for k, v in report["benchmarks"].items()
          if "/" not in k and v.get("score") is not None}
    cols = groups.columns_from_results(on)
    avgs = groups.group_averages(cols)
    return {**{c: cols.get(c) for c in groups.COLUMNS},
            **{g: avgs[g] for g in (*groups.GROUPS, "overall")}}


def _num(x: float | None) -> str:
    return MISSING if x is None else f"{x:.1f}"


def table(paper: dict, ours: dict[str, dict], size: str) -> str:
    """Rows: the 16 benchmarks, the four group averages, overall. Columns: the paper's number,
    then ours and ours minus the paper's for each profile."""
    head = f"{'':<24}{'paper':>10}" + "".join(f"{p:>12}{'Δ':>8}" for p in ours)
    lines = [f"Cambrian-1-{size.upper()}: the paper (Table 4 of arXiv 2406.16860) vs this run; "
             "MME-P on 0-2000, the rest in %, group averages with MME-P / 20", head]

    def row(title: str, key: str) -> str:
        cells = f"{title:<24}{_num(paper[key]):>10}"
        for scores in ours.values():
            mine = scores[key]
            delta = None if mine is None else mine - paper[key]
            cells += f"{_num(mine):>12}{'' if delta is None else f'{delta:+.1f}':>8}"
        return cells

    for g, cols in groups.GROUPS.items():
        lines += [row(groups.COLUMN_TITLES.get(c, c), c) for c in cols]
        lines.append(row(f"{groups.GROUP_TITLES[g]} (avg)", g))
    lines.append(row("Overall (avg of 4)", "overall"))
    missing = {p: [c for c in groups.COLUMNS if s[c] is None] for p, s in ours.items()}
    for p, cols in missing.items():
        if cols:
            lines.append(f"{p}: missing {len(cols)} of 16 ({', '.join(cols)}); their group "
                         "averages are missing too")
    return "\n".join(lines)


def reproduce(run_dir: str, profiles: Sequence[str] = (), model: str | None = None
              ) -> tuple[str, dict, dict[str, dict]]:
    """(size, paper row, {profile: our scores}); see the module docstring."""
    run = _read_run(run_dir)
    if model:
        size = model.lower()
    else:
        size, why = infer_size(run.config, run_dir)
        print(f"comparing with Cambrian-1-{size.upper()} (from {why}; --model to override)",
              file=sys.stderr)
    if size not in RELEASES:
        raise ValueError(f"--model {model!r}: expected one of {', '.join(RELEASES)}")
    if not profiles:
        profiles = [run.report.get("decode", {}).get("profile") or "cambrian"]
    names = list(dict.fromkeys(metrics.harness_name(p) for p in profiles))
    return size, paper_row(size), {p: run_scores(run, p) for p in names}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cambrian.release reproduce",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="evaluated run directory (local or gs://)")
    ap.add_argument("--profile", action="append", default=[],
                    help=f"scoring profile, repeatable: {', '.join(metrics.HARNESSES)} "
                         "(default: the run's own)")
    ap.add_argument("--model", choices=sorted(RELEASES), help="the paper's row to compare with "
                    "(default: from the run's config)")
    ap.add_argument("--json", help="also write {profile: scores} and the paper's row here")
    args = ap.parse_args(argv)
    try:
        size, paper, ours = reproduce(args.run, args.profile, args.model)
    except (FileNotFoundError, ValueError, metrics.ScorerNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(paper, ours, size))
    if args.json:
        with fsspec.open(args.json, "wt") as fh:
            json.dump({"model": f"Cambrian-1-{size.upper()}", "paper": paper, "ours": ours}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
