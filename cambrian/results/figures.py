"""The comparison figures, drawn from the tables of ``frames`` / ``reference`` with matplotlib.

Each function takes a long table and returns a ``matplotlib.figure.Figure`` sized for a notebook
(10 in wide); ``save`` writes it as PNG and records its axes in ``figures.json`` beside it (what
the tests check). Groups keep one colour everywhere (``GROUP_COLORS``, Okabe-Ito: colour-blind
safe); encoders keep one colour per family in the attention figure. Rows from the paper are drawn
lighter than the user's runs wherever both appear.

    group_bars        per-group scores across runs (one panel per group)
    heatmap           benchmark x run
    whos_answering    vision on vs vision off vs chance per benchmark
    score_vs_tokens   average score vs visual tokens and vs input resolution
    loss_curves       training loss per step, stages marked
    attention_mass    SVA attention share per encoder, per benchmark
    radar             the four group averages per run
    search_trace      guided visual search: boxes per step and the found crops (``trace.py``)
"""

from __future__ import annotations

import functools
import json
import math
import os

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd

from cambrian.results import reference, tables
from cambrian.results.trace import saved_trace, search_trace  # noqa: F401 (figures API)

GROUP_COLORS = {"general": "#0072B2", "knowledge": "#009E73", "ocr_chart": "#E69F00",
                "vision_centric": "#CC79A7", "extra": "#7F7F7F"}
FAMILY_COLORS = {"siglip": "#0072B2", "clip": "#E69F00", "dinov2": "#009E73",
                 "convnext": "#D55E00", "dfn_clip": "#56B4E9", "eva_clip": "#F0E442",
                 "mae": "#CC79A7", "sam": "#999999", "sd_diffusion": "#882255",
                 "dpt": "#44AA99", "supvit": "#332288", "mocov3": "#AA4499", "ijepa": "#117733"}
FAMILY_NAMES = {"siglip": "SigLIP", "clip": "CLIP", "dinov2": "DINOv2", "convnext": "ConvNeXt",
                "dfn_clip": "DFN-CLIP", "eva_clip": "EVA-CLIP", "mae": "MAE", "sam": "SAM",
                "sd_diffusion": "SD", "dpt": "MiDaS", "supvit": "SupViT", "mocov3": "MoCo v3",
                "ijepa": "I-JEPA", "aimv2": "AIMv2"}
WIDTH = 10.0
PAPER_ALPHA = 0.45
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "axes.spines.top": False,
         "axes.spines.right": False, "figure.dpi": 100}


class NoData(ValueError):
    """The table has nothing this figure can show; the message says what to run."""


KINDS: dict = {}  # figure name -> function, in the order the CLI draws them


def _figure(fn):
    """Registers a figure function; the figure it returns is labelled with its name."""
    @functools.wraps(fn)
    def draw(*args, **kwargs) -> plt.Figure:
        fig = fn(*args, **kwargs)
        fig.set_label(fn.__name__)
        return fig

    KINDS[fn.__name__] = draw
    return draw


def _need(df: pd.DataFrame, what: str, fix: str) -> None:
    if df is None or len(df) == 0:
        raise NoData(f"no {what} to draw: {fix}")


def _alpha(source: str, mixed: bool) -> float:
    return PAPER_ALPHA if mixed and source != "run" else 1.0


def _sources(df: pd.DataFrame) -> dict[str, str]:
    return dict(zip(df["label"], df["source"]))


def _text_color(rgb) -> str:
    """Black or white, whichever reads better on ``rgb`` (relative luminance)."""
    r, g, b = matplotlib.colors.to_rgb(rgb)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _order_by_overall(df: pd.DataFrame) -> list[str]:
    means = tables.group_means(df)
    return list(means.sort_values("overall", ascending=False, na_position="last").index)


@_figure
def group_bars(df: pd.DataFrame) -> plt.Figure:
    """One panel per group: a horizontal bar per run (best overall on top), chance as a tick."""
    _need(df, "scores", "load runs with runs.load(...) and frames.scores(...)")
    order = _order_by_overall(df)[::-1]
    means = tables.group_means(df).reindex(order)
    chance = tables.group_means(df, "chance").reindex(order)
    src = _sources(df)
    mixed = len(set(src.values())) > 1
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 4, sharey=True, figsize=(WIDTH, 1.0 + 0.3 * len(order)),
                                 layout="constrained")
        y = np.arange(len(order))
        for ax, g in zip(axes, tables.GROUPS):
            vals = means[g].to_numpy()
            colors = [matplotlib.colors.to_rgba(GROUP_COLORS[g], _alpha(src[lab], mixed))
                      for lab in order]
            ax.barh(y, np.nan_to_num(vals), color=colors, height=0.7)
            for yi, v in zip(y, vals):
                ax.text(0.5 if math.isnan(v) else v + 0.8, yi,
                        "n/a" if math.isnan(v) else f"{v:.1f}", va="center", fontsize=8)
            ch = chance[g].to_numpy()
            ax.plot(ch, y, "|", color="black", markersize=11, markeredgewidth=1.6,
                    label="chance")
            ax.set_title(tables.TITLES[g], color=GROUP_COLORS[g], fontweight="bold")
            ax.set_xlabel("score (%)")
            top = np.nanmax(np.r_[vals, ch, 0])
            ax.set_xlim(0, max(10.0, top * 1.18))
            ax.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(y, order)
        axes[0].set_ylabel("run (best overall on top)")
        if not np.isnan(chance.to_numpy()).all():
            axes[-1].legend(loc="lower right", frameon=False)
        _paper_note(fig, src)
    return fig


def _paper_note(fig, src: dict[str, str]) -> None:
    if len(set(src.values())) > 1:
        fig.supxlabel("lighter: the paper's numbers; solid: runs", fontsize=8, color="0.35")


@_figure
def heatmap(df: pd.DataFrame) -> plt.Figure:
    """Benchmark (columns, grouped) x run (rows, best overall on top). With 3 or more runs a
    cell's colour is its score relative to its benchmark's column (benchmarks differ in range);
    the number in the cell is the score itself."""
    _need(df, "scores", "load runs with runs.load(...) and frames.scores(...)")
    order = _order_by_overall(df)
    wide = tables.benchmark_table(df).reindex(order)
    vals = wide.to_numpy(dtype=float)
    relative = len(order) >= 3
    if relative:
        lo, hi = np.nanmin(vals, 0), np.nanmax(vals, 0)
        color = (vals - lo) / np.where(hi > lo, hi - lo, 1.0)
        clabel = "score within its benchmark (0 = lowest run, 1 = highest)"
    else:
        color, clabel = vals / 100.0, "score (% / 100)"
    group_of = dict(zip(df["title"], df["group"]))
    with plt.rc_context(STYLE):
        h = 1.6 + 0.32 * len(order)
        fig, ax = plt.subplots(figsize=(WIDTH, h), layout="constrained")
        im = ax.imshow(color, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        cmap = plt.get_cmap("viridis")
        for (i, j), v in np.ndenumerate(vals):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.0f}" if v >= 100 else f"{v:.1f}", ha="center",
                        va="center", fontsize=7, color=_text_color(cmap(color[i, j])))
        groups_of_cols = [group_of.get(c) for c in wide.columns]
        for j in range(1, len(groups_of_cols)):
            if groups_of_cols[j] != groups_of_cols[j - 1]:  # white rule between groups
                ax.axvline(j - 0.5, color="white", linewidth=3)
        ax.set_xticks(range(len(wide.columns)), wide.columns, rotation=45, ha="right")
        for t in ax.get_xticklabels():
            t.set_color(GROUP_COLORS.get(group_of.get(t.get_text()), "black"))
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("benchmark (colour = group)")
        ax.set_ylabel("run")
        ax.spines[:].set_visible(False)
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.01)
        cb.set_label(clabel, fontsize=8)
        ax.set_title("Scores per benchmark (%; MME-P / 20)"
                     + ("; colour scaled per benchmark, lowest to highest run" if relative else ""))
    return fig


@_figure
def whos_answering(df: pd.DataFrame) -> plt.Figure:
    """Per benchmark: vision-on and vision-off scores (mean over the runs that have both) and
    chance. A small on-off gap means the benchmark mostly tests the LLM (paper section 2.1)."""
    t = tables.whos_answering(df)
    _need(t, "vision-off scores", "evaluate with --config.eval.vision=both")
    t = t.assign(o=t["group"].map(list(GROUP_COLORS).index)).sort_values("o", kind="stable")
    x = np.arange(len(t))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH, 4.2), layout="constrained")
        colors = [GROUP_COLORS.get(g, "grey") for g in t["group"]]
        ax.bar(x - 0.2, t["vision_on"], 0.4, color=colors, label="vision on")
        ax.bar(x + 0.2, t["vision_off"], 0.4, color="white", edgecolor=colors, hatch="///",
               linewidth=1.2, label="vision off")
        if t["chance"].notna().any():
            ax.hlines(t["chance"], x - 0.45, x + 0.45, color="black", linewidth=2,
                      label="chance")
        ax.set_xticks(x, t.index, rotation=30, ha="right")
        for lab, c in zip(ax.get_xticklabels(), colors):
            lab.set_color(c)
        ax.set_ylabel("score (%)")
        ax.set_xlabel("benchmark (colour = group)")
        runs = int(t["runs"].max())
        ax.set_title(f"Who's answering: vision on vs off ({runs} run{'s' * (runs > 1)}"
                     f"{', mean' if runs > 1 else ''})")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", frameon=False, ncol=3)
    return fig


def _place_labels(ax, xs, ys, labels, fontsize=7) -> None:
    """Labels in columns right of their points: points that a column's labels would cover join
    that column, ordered by y and spread just enough not to overlap, each joined to its point by
    a leader line. Call on the final layout."""
    fig = ax.figure
    to_pt = 72.0 / fig.dpi
    renderer = fig.canvas.get_renderer()
    width = [ax.text(0, 0, s, fontsize=fontsize).get_window_extent(renderer).width
             for s in labels]
    for t in ax.texts[-len(labels):]:
        t.remove()
    for _ in range(10):  # widen the x range until the rightmost column fits in the axes
        disp = ax.transData.transform(np.c_[xs, ys])
        order = np.argsort(xs)
        clusters, cur = [], [order[0]]
        for i in order[1:]:  # a point under the current column's labels joins that column
            if disp[i, 0] < disp[cur, 0].max() + 8 + max(width[j] for j in cur):
                cur.append(i)
            else:
                clusters.append(cur)
                cur = [i]
        clusters.append(cur)
        right = max(disp[c, 0].max() + 8 + max(width[j] for j in c) for c in clusters)
        if right <= ax.bbox.x1:
            break
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi * 1.4)
    step = fontsize * 1.35 / to_pt  # one label height, in pixels
    for members in clusters:
        members = sorted(members, key=lambda i: -disp[i, 1])
        want = disp[members, 1]
        pos = want.copy()
        for _ in range(3):  # push apart downwards, then re-centre on the points
            for k in range(1, len(pos)):
                pos[k] = min(pos[k], pos[k - 1] - step)
            pos += (want - pos).mean()
        for k in range(1, len(pos)):
            pos[k] = min(pos[k], pos[k - 1] - step)
        col = disp[members, 0].max() + 8
        for i, y in zip(members, pos):
            moved = abs(y - disp[i, 1]) > 1 or col - disp[i, 0] > 9
            ax.annotate(labels[i], (xs[i], ys[i]),
                        xytext=((col - disp[i, 0]) * to_pt, (y - disp[i, 1]) * to_pt - 2.5),
                        textcoords="offset points", fontsize=fontsize, color="0.2",
                        arrowprops=dict(arrowstyle="-", color="0.65", linewidth=0.5,
                                        shrinkA=0, shrinkB=3) if moved else None)


def _value_ticks(ax, values) -> None:
    """Ticks at the values present (196, 576, 729, ...) when there are few of them."""
    vals, kept = sorted({int(v) for v in values if not math.isnan(v)}), []
    for v in vals:  # skip a value within 15% of the last kept one (336 / 378 / 384)
        if not kept or v / kept[-1] > 1.15:
            kept.append(v)
    if 0 < len(kept) <= 8:
        ax.set_xticks(kept, [str(v) for v in kept])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


@_figure
def score_vs_tokens(df: pd.DataFrame, group: str = "overall") -> plt.Figure:
    """Average score (``group``: overall or one group) vs visual tokens the LLM reads and vs
    input resolution, coloured by the encoder's supervision (paper's catalog)."""
    _need(df, "scores", "load runs with runs.load(...) and frames.scores(...)")
    means = tables.group_means(df)[group]
    info = df.drop_duplicates("label").set_index("label").reindex(means.index)
    sup = reference.supervision()
    kind = [sup.get(f, "multi-encoder" if "+" in str(f) else "other")
            for f in info["families"]]
    kinds = list(dict.fromkeys(kind))
    palette = dict(zip(kinds, plt.get_cmap("tab10").colors))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.6), sharey=True, layout="constrained")
        points = []
        for ax, col, xlabel in ((axes[0], "tokens", "visual tokens per image (log scale)"),
                                (axes[1], "resolution", "input resolution (px, log scale)")):
            x = info[col].to_numpy(dtype=float)
            ok = ~np.isnan(x) & means.notna().to_numpy()
            if not ok.any():
                raise NoData(f"no run has both a {col} and a {group} score")
            for k in kinds:
                m = ok & (np.asarray(kind) == k)
                run = (info["source"] == "run").to_numpy()
                for sel, marker in ((m & ~run, "o"), (m & run, "*")):
                    if sel.any():
                        ax.scatter(x[sel], means.to_numpy()[sel], s=60 if marker == "*" else 36,
                                   marker=marker, color=palette[k],
                                   label=k if marker == "o" or not (m & ~run).any() else None,
                                   edgecolor="black", linewidth=0.4, zorder=3)
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            _value_ticks(ax, x[ok])
            lo, hi = np.nanmin(x[ok]), np.nanmax(x[ok])
            ax.set_xlim(lo / 1.15, hi * 1.3)  # _place_labels widens it for the labels
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            points.append((ax, x[ok], means.to_numpy()[ok], list(means.index[ok])))
        name = tables.TITLES[group] if group != "overall" else "average of the four groups"
        axes[0].set_ylabel(f"score (%), {name}")
        fig.legend(*axes[0].get_legend_handles_labels(), title="encoder supervision",
                   frameon=False, loc="outside lower center", ncol=min(5, len(kinds)))
        fig.suptitle("Score vs visual tokens and resolution (* = runs, o = the paper)"
                     if len(set(info["source"])) > 1 else "Score vs visual tokens and resolution")
        fig.canvas.draw()  # labels are placed on the final layout, which is then kept
        fig.set_layout_engine("none")
        for ax, *p in points:
            _place_labels(ax, *p)
    return fig


def _smooth(y: np.ndarray, frac: float = 0.02) -> np.ndarray:
    """Exponential moving average with a window of ``frac`` of the points."""
    a = min(1.0, 2.0 / (max(1.0, frac * len(y)) + 1))
    out, acc = np.empty_like(y), y[0]
    for i, v in enumerate(y):
        acc = a * v + (1 - a) * acc
        out[i] = acc
    return out


@_figure
def loss_curves(curves: pd.DataFrame) -> plt.Figure:
    """Training loss per global step, one colour per run (faint: every logged step; solid: an
    exponential moving average); dotted lines mark where each stage ends."""
    _need(curves, "loss curves", "runs write metrics.jsonl or <stage>_losses.json as they train")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(WIDTH, 4.2), layout="constrained")
        colors = plt.get_cmap("tab10").colors
        starts: dict[int, str] = {}
        for i, (label, d) in enumerate(curves.groupby("label", sort=False)):
            d = d.sort_values("step")
            c = colors[i % len(colors)]
            y = d["loss"].to_numpy(dtype=float)
            ax.plot(d["step"], y, color=c, alpha=0.25, linewidth=0.8)
            ax.plot(d["step"], _smooth(y), color=c, linewidth=1.8, label=label)
            offset = (d["step"] - d["stage_step"]).groupby(d["stage"], sort=False).first()
            starts.update({int(o): st for st, o in offset.items()})
        for x, stage in sorted(starts.items()):
            if x > 0:
                ax.axvline(x, color="0.4", linestyle=":", linewidth=1)
            ax.annotate(stage, (x, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                        textcoords="offset points", fontsize=8, color="0.4")
        ax.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.set_xlabel("training step (global, all stages)")
        ax.set_ylabel("loss (nats per answer token, log scale)")
        ax.set_title("Training loss")
        ax.grid(alpha=0.3, which="both")
        ax.legend(frameon=False, ncol=min(4, curves["label"].nunique()), loc="upper right")
    return fig


@_figure
def attention_mass(att: pd.DataFrame) -> plt.Figure:
    """Per run, per benchmark: the share of the SVA's attention each encoder receives."""
    _need(att, "SVA attention mass", "evaluate an SVA run with --config.eval.save_attention=True")
    labels = list(dict.fromkeys(att["label"]))
    nb = att.groupby("label", sort=False)["benchmark"].nunique()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            len(labels), 1, figsize=(WIDTH, 1.2 + sum(0.42 * nb[lab] + 0.5 for lab in labels)),
            layout="constrained", squeeze=False,
            gridspec_kw={"height_ratios": [nb[lab] for lab in labels]})
        seen = {}
        for ax, label in zip(axes[:, 0], labels):
            d = att[att["label"] == label]
            benches = list(dict.fromkeys(d["title"]))[::-1]
            left = np.zeros(len(benches))
            for _, e in d.groupby("encoder", sort=False):
                e = e.set_index("title").reindex(benches)
                fam = e["family"].dropna().iloc[0]
                color = FAMILY_COLORS.get(fam, "#BBBBBB")
                w = e["mass"].fillna(0).to_numpy()
                bars = ax.barh(benches, w, left=left, color=color, edgecolor="white")
                seen.setdefault(FAMILY_NAMES.get(fam, fam), bars)  # one legend entry a family
                for yi, (lft, v) in enumerate(zip(left, w)):
                    if v >= 6:
                        ax.text(lft + v / 2, yi, f"{v:.1f}", ha="center", va="center",
                                fontsize=8, color=_text_color(color))
                left += w
            ax.set_xlim(0, 100)
            ax.set_title(label, loc="left", fontsize=10)
            ax.set_xlabel("share of SVA attention (%)")
            ax.set_ylabel("benchmark")
        fig.legend(handles=list(seen.values()), labels=list(seen), loc="outside lower center",
                   ncol=min(6, len(seen)), frameon=False, title="encoder (family)")
    return fig


@_figure
def radar(df: pd.DataFrame, max_runs: int = 8) -> plt.Figure:
    """The four group averages of each run on one polar chart (the best ``max_runs`` runs by
    overall average; the title says when more were given)."""
    _need(df, "scores", "load runs with runs.load(...) and frames.scores(...)")
    means = tables.group_means(df).dropna(how="all", subset=list(tables.GROUPS))
    _need(means, "group averages", "every run needs scores in at least one group")
    order = _order_by_overall(df)
    shown = [lab for lab in order if lab in means.index][:max_runs]
    angles = np.linspace(0, 2 * np.pi, 5)[:-1]
    vals = means.loc[shown, list(tables.GROUPS)].to_numpy(dtype=float)
    lo = max(0.0, 5 * math.floor((np.nanmin(vals) - 5) / 5))
    hi = min(100.0, 5 * math.ceil((np.nanmax(vals) + 2) / 5))
    src = _sources(df)
    mixed = len(set(src.values())) > 1
    with plt.rc_context(STYLE):
        fig = plt.figure(figsize=(WIDTH, 6.0), layout="constrained")
        ax = fig.add_subplot(projection="polar")
        ax.set_theta_zero_location("N")  # General on top, then clockwise as in the tables
        ax.set_theta_direction(-1)
        colors = plt.get_cmap("tab10").colors
        for i, (label, v) in enumerate(zip(shown, vals)):
            closed = np.r_[v, v[:1]]
            a = np.r_[angles, angles[:1]]
            ls = "--" if mixed and src.get(label) != "run" else "-"
            ax.plot(a, closed, ls, color=colors[i % 10], linewidth=1.8, marker="o",
                    markersize=3, label=label, zorder=1)
        ax.set_xticks(angles, [""] * 4)
        ax.set_ylim(lo, hi)
        for ang, g, ha, va in zip(angles, tables.GROUPS, ("center", "left", "center", "right"),
                                  ("bottom", "center", "top", "center")):
            ax.text(ang, hi + (hi - lo) * 0.06, tables.TITLES[g], color=GROUP_COLORS[g],
                    fontweight="bold", ha=ha, va=va)
        step = 10 if hi - lo > 25 else 5
        ax.set_yticks(np.arange(step * math.ceil(lo / step), hi + 0.1, step))
        ax.set_rlabel_position(135)
        ax.tick_params(axis="y", labelsize=8, labelcolor="0.35")
        for t in ax.get_yticklabels():
            t.set_bbox(dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
        more = len([lab for lab in order if lab in means.index]) - len(shown)
        ax.set_title("Group averages, score (%)"
                     + (f", radial axis from {lo:.0f}" if lo > 0 else "")
                     + (f"; best {len(shown)} of {len(shown) + more} runs by overall"
                        if more > 0 else "") + ("; dashed: the paper" if mixed else ""), pad=28)
        ax.legend(loc="center left", bbox_to_anchor=(1.22, 0.5), frameon=False)
    return fig


def describe_axes(fig: plt.Figure) -> list[dict]:
    """Title, axis labels and tick labels of every axes that shows data (colourbars aside)."""
    out = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        out.append({"title": ax.get_title() or ax.get_title(loc="left"),
                    "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                    "polar": ax.name == "polar",
                    "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
                    "yticklabels": [t.get_text() for t in ax.get_yticklabels()]})
    return out


def save(fig: plt.Figure, path: str) -> str:
    """Writes ``fig`` as PNG (150 dpi) and, in ``figures.json`` in the same folder, its kind and
    axes; closes it (a notebook still shows a closed figure it is handed). Returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=150)
    manifest = os.path.join(folder, "figures.json")
    entries = {}
    if os.path.exists(manifest):
        with open(manifest) as fh:
            entries = json.load(fh)
    entries[os.path.basename(path)] = {"kind": fig.get_label(), "suptitle": fig.get_suptitle(),
                                       "axes": describe_axes(fig)}
    with open(manifest, "w") as fh:
        json.dump(entries, fh, indent=1)
    plt.close(fig)
    return path
