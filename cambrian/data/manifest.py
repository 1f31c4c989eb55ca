"""The build manifest (what went in, what was dropped and why, what came out) and its reports.

Counts add up exactly. Per source::

    read      = sum(bad) + duplicate_exact + duplicate_perceptual + benchmark_leak + available
    available = removed + not_selected + (kept - repeated)

and over the whole build ``read`` (all files) = ``unassigned`` + file-level bad + kept unique +
every drop reason in ``dropped``.
"""

from __future__ import annotations

import json
import os

import fsspec

from cambrian.data.recipe import Recipe
from cambrian.data.select import Allocation

_DROPS = ("duplicate_exact", "duplicate_perceptual", "benchmark_leak", "removed", "not_selected")


def _file_info(path: str) -> dict:
    try:
        fs, p = fsspec.core.url_to_fs(path)
        info = fs.info(p)
        return {"size": info.get("size"), "mtime": str(info.get("mtime") or info.get("updated"))}
    except (OSError, ValueError):
        return {}


def make_manifest(recipe: Recipe, stats: dict, files: dict, alloc: Allocation,
                  leakage: dict | None, examples: int) -> dict:
    sources = {n: {**s, "bad": dict(s["bad"])} for n, s in stats.items()}
    dropped: dict[str, int] = {}
    for s in sources.values():
        for reason, n in [*s["bad"].items(), *((k, s[k]) for k in _DROPS)]:
            dropped[reason] = dropped.get(reason, 0) + n
    file_out = {}
    for path, f in files.items():
        for reason, n in f["bad"].items():
            dropped[reason] = dropped.get(reason, 0) + n
        file_out[path] = {"read": f["read"], "unassigned": sum(f["unassigned"].values()),
                          "unassigned_by_tag": dict(f["unassigned"].most_common(50)),
                          "bad": dict(f["bad"]), **_file_info(path)}
    kept = sum(s["kept"] for s in sources.values())
    categories = {}
    for c in recipe.categories:
        k = sum(s["kept"] for s in sources.values() if s["category"] == c)
        categories[c] = {"ratio": recipe.ratios[c] if recipe.ratios else None,
                         "requested": alloc.category_requested[c], "kept": k,
                         "share": k / kept if kept else 0.0,
                         "shortfall": alloc.shortfall.get(c, 0)}
    warnings = [f"source {n!r} matched no records" for n, s in sources.items() if not s["read"]]
    warnings += [f"category {c!r} is {n} records short of its share" for c, n in
                 alloc.shortfall.items() if n > 0]
    unassigned = sum(f["unassigned"] for f in file_out.values())
    if unassigned:
        warnings.append(f"{unassigned} records in the annotation files belong to no source "
                        "(see files[...].unassigned_by_tag)")
    return {
        "recipe": {"name": recipe.name, "hash": recipe.hash(), "seed": recipe.seed,
                   "version": recipe.version, "definition": recipe.to_dict()},
        "totals": {"read": sum(f["read"] for f in file_out.values()), "unassigned": unassigned,
                   "kept": kept, "kept_unique": kept - sum(s["repeated"] for s in sources.values()),
                   "dropped": sum(dropped.values())},
        "dropped": dict(sorted(dropped.items())),
        "sources": sources,
        "categories": categories,
        "files": file_out,
        "leakage": leakage,
        "warnings": warnings,
        "output": {"examples": examples},
    }


def summary_table(m: dict) -> str:
    """Markdown tables of the per-source and per-category counts and the drop reasons."""
    rows = ["| source | category | read | bad | duplicates | leaked | available | requested "
            "| kept |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, s in m["sources"].items():
        dup = s["duplicate_exact"] + s["duplicate_perceptual"]
        rows.append(f"| {n} | {s['category']} | {s['read']} | {sum(s['bad'].values())} | {dup} | "
                    f"{s['benchmark_leak'] + s['leak_reported']} | {s['available']} | "
                    f"{s['requested']} | {s['kept']} |")
    rows += ["", "| category | ratio | requested | kept | share |", "|---|---:|---:|---:|---:|"]
    for c, s in m["categories"].items():
        ratio = "-" if s["ratio"] is None else f"{s['ratio']:g}"
        rows.append(f"| {c} | {ratio} | {s['requested']} | {s['kept']} | {100 * s['share']:.2f}% |")
    t = m["totals"]
    rows += ["", f"read {t['read']}, kept {t['kept']} ({t['kept_unique']} unique), "
             f"unassigned {t['unassigned']}, dropped {t['dropped']}: "
             + (", ".join(f"{k} {v}" for k, v in m["dropped"].items() if v) or "none")]
    rows += [f"warning: {w}" for w in m["warnings"]]
    return "\n".join(rows) + "\n"


def plot(m: dict, path: str) -> None:
    """Category shares (pie) and per-source available / kept / requested (bars) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = {c: s["kept"] for c, s in m["categories"].items() if s["kept"]}
    names = list(m["sources"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, max(4, 0.25 * len(names) + 1)),
                               gridspec_kw={"width_ratios": [1, 1.4]})
    if cats:
        a.pie(list(cats.values()), labels=list(cats), autopct="%1.1f%%", startangle=90)
    a.set_title(f"{m['recipe']['name']}: {m['totals']['kept']} examples by category")
    y = range(len(names))
    b.barh(y, [m["sources"][n]["available"] for n in names], color="lightgrey",
           label="available")
    b.barh(y, [m["sources"][n]["kept"] for n in names], alpha=0.8, label="kept")
    b.barh(y, [m["sources"][n]["requested"] for n in names], color="none", edgecolor="black",
           label="requested")
    b.set_yticks(list(y), names, fontsize=7)
    b.invert_yaxis()
    b.set_xlabel("examples")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(m: dict, out: str) -> None:
    """manifest.json, summary.md and composition.png in ``out``."""
    with open(os.path.join(out, "manifest.json.tmp"), "w") as f:
        json.dump(m, f, indent=1)
    os.replace(os.path.join(out, "manifest.json.tmp"), os.path.join(out, "manifest.json"))
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary_table(m))
    plot(m, os.path.join(out, "composition.png"))
