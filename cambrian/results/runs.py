"""Run directories, local or ``gs://``, found by folder or glob and read into ``Run`` records.

A run directory is what ``launch/tpu.py --workdir W`` leaves behind; this module reads:

    config.json                   the resolved config (required)
    report.json                   per-benchmark scores, groups, vision-off (required)
    metrics.jsonl                 one JSON object per logged step (loss curves), or else
    <stage>_losses.json           the loss of every step of that stage
    attention/<benchmark>.json    SVA attention mass per encoder (eval.save_attention=True)
    predictions/<benchmark>.jsonl saved answers (only read to rescore under another profile)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import fsspec

from cambrian.eval.benchmarks import common

REPORT = "report.json"
METRIC_KEYS = ("stage", "step", "stage_step", "loss")  # the ones loss curves need
_GLOB = "*?["


@dataclasses.dataclass
class Run:
    """What one run directory holds. ``metrics``: one dict per logged step with at least
    ``stage``, ``step`` (global), ``stage_step`` and ``loss`` (see ``read_metrics``)."""

    name: str
    path: str
    config: dict
    report: dict
    metrics: list[dict]
    attention: dict[str, dict]


def _url(fs, path: str) -> str:
    """A path from ``fs`` as the user would type it (``gs://b/x`` or a local path)."""
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if proto in ("file", "local") else fs.unstrip_protocol(path)


def find(patterns: str | list[str]) -> list[str]:
    """Run directories named by ``patterns``: a run folder, a folder of run folders, or a glob
    (``gs://bucket/sweep/*``, ``runs/dinov2-*``). A pattern that finds no run is an error."""
    found: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        fs, p = fsspec.core.url_to_fs(pattern)
        p = p.rstrip("/")
        cands = sorted(fs.glob(p)) if any(c in p for c in _GLOB) else [p]
        hits = []
        for c in cands:
            if c.endswith("/" + REPORT):
                hits.append(c.rsplit("/", 1)[0])
            elif fs.exists(f"{c}/{REPORT}"):
                hits.append(c)
            elif fs.isdir(c):  # a folder of runs
                hits += sorted(f.rsplit("/", 1)[0] for f in fs.glob(f"{c}/*/{REPORT}"))
        if not hits:
            raise FileNotFoundError(
                f"{pattern}: no run found (a run folder holds {REPORT}, written when its "
                "evaluation ends); give run folders, a folder of them, or a glob such as "
                "gs://bucket/runs/*")
        found += [_url(fs, h) for h in hits]
    return list(dict.fromkeys(found))


def _read_json(path: str):
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as e:
        raise common.DataFormatError(f"{path}: line {e.lineno}: malformed JSON ({e.msg})") from e


def read_metrics(run: str, config: dict) -> list[dict]:
    """Logged steps from ``metrics.jsonl``; without it, every step of ``<stage>_losses.json``
    (``step`` counted across the stages in config order). [] if the run logged neither."""
    fs, p = fsspec.core.url_to_fs(run)
    path = f"{run.rstrip('/')}/metrics.jsonl"
    if fs.exists(f"{p}/metrics.jsonl"):
        rows = []
        for rec, where in common.read_jsonl(path):
            for k in METRIC_KEYS:
                common.field(rec, k, where)
            rows.append(rec)
        return rows
    rows, offset = [], 0
    for stage, settings in config.get("stages", {}).items():
        losses_path = f"{p}/{stage}_losses.json"
        if fs.exists(losses_path):
            losses = _read_json(_url(fs, losses_path))
            if not isinstance(losses, list):
                raise common.DataFormatError(f"{_url(fs, losses_path)}: expected a JSON list of "
                                             f"losses, got {type(losses).__name__}")
            rows += [{"stage": stage, "step": offset + i, "stage_step": i, "loss": float(x)}
                     for i, x in enumerate(losses, 1)]
        offset += int(settings.get("steps", 0))
    return rows


def read_attention(run: str) -> dict[str, dict]:
    """{benchmark: record of ``attention/<benchmark>.json``}; {} if the eval saved none."""
    fs, p = fsspec.core.url_to_fs(run)
    files = sorted(fs.glob(f"{p}/attention/*.json"))
    return {f.rsplit("/", 1)[1][: -len(".json")]: _read_json(_url(fs, f)) for f in files}


def read(path: str, name: str | None = None) -> Run:
    """One run directory as a ``Run``; a missing or malformed file is an error naming it."""
    path = path.rstrip("/")
    for f in ("config.json", REPORT):
        if not fsspec.core.url_to_fs(f"{path}/{f}")[0].exists(f"{path}/{f}"):
            raise FileNotFoundError(f"{path}/{f} not found: a run folder holds config.json and "
                                    f"{REPORT} (written by launch/tpu.py when training and "
                                    "evaluation end)")
    config, report = _read_json(f"{path}/config.json"), _read_json(f"{path}/{REPORT}")
    if not isinstance(report.get("benchmarks"), dict):
        raise common.DataFormatError(f"{path}/{REPORT}: expected a 'benchmarks' object of "
                                     "per-benchmark results")
    return Run(name or path.rsplit("/", 1)[-1], path, config, report,
               read_metrics(path, config), read_attention(path))


def _unique_names(paths: list[str]) -> list[str]:
    """Folder names, with parent folders added until they differ (a/x, b/x)."""
    depth = 1
    while True:
        names = ["/".join(p.rstrip("/").split("/")[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > 8:
            return names
        depth += 1


def load(patterns: str | list[str], names: list[str] | None = None) -> list[Run]:
    """Every run of ``patterns`` (see ``find``), named by its folder unless ``names`` are given."""
    paths = find(patterns)
    if names is not None and len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} runs ({', '.join(paths)})")
    return [read(p, n) for p, n in zip(paths, names or _unique_names(paths))]


def rescored(run: Run, profile: str) -> Run:
    """``run`` with every benchmark rescored from its saved predictions under ``profile``
    (``cambrian``, ``lmms-eval``, ``vlmevalkit``, ``fixed``); vision-off predictions too."""
    from cambrian.eval import metrics, score
    from cambrian.eval import report as report_lib

    profile = metrics.harness_name(profile)
    fs, p = fsspec.core.url_to_fs(run.path)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for sub, suffix in (("predictions", ""), ("predictions_vision_off", "/vision_off")):
            if not fs.isdir(f"{p}/{sub}"):
                continue
            local = os.path.join(tmp, sub)
            fs.get(f"{p}/{sub}/", os.path.join(local, "predictions") + "/", recursive=True)
            # score.rescore reads <dir>/predictions/*.jsonl
            for name, res in score.rescore(local, profile).items():
                results[name + suffix] = res
    if not results:
        raise FileNotFoundError(f"{run.path}/predictions: no saved predictions to rescore "
                                f"under {profile!r}")
    per_group, overall = report_lib.group_averages(results)
    report = {**run.report, "benchmarks": results, "groups": per_group, "overall": overall,
              "decode": {**run.report.get("decode", {}), "profile": profile}}
    return dataclasses.replace(run, report=report)
