"""The guided-visual-search trace figure: where the search looked, step by step.

``search_trace(image, traces)`` draws the image with every scored box (thin, coloured by depth,
its score beside it) and each step's chosen box (thick), then one panel per target with the crop
the answer saw. ``saved_trace(predictions, folder, item_id)`` draws one item of a
``vstar_search`` predictions file (its ``"search"`` traces and ``"image_file"`` under the
benchmark folder).

    from cambrian.results import figures
    fig = figures.saved_trace("runs/x/predictions/vstar_search.jsonl", "data/benchmarks/vstar",
                              "12")
    figures.save(fig, "docs/vstar_trace.png")
"""

from __future__ import annotations

import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np

from cambrian.eval import predictions
from cambrian.eval.benchmarks import common

DEPTH_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")


def _box(ax, box, color, width, style="-") -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(matplotlib.patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                                              edgecolor=color, linewidth=width, linestyle=style))


def search_trace(image: np.ndarray, traces: list[dict], title: str = "") -> plt.Figure:
    """uint8[H, W, 3] + the item's search traces -> Figure (labelled ``search_trace``)."""
    n = len(traces)
    fig, axes = plt.subplots(1, 1 + n, figsize=(10.0, 10.0 / (1 + n) + 0.8),
                             gridspec_kw={"width_ratios": [2] + [1] * n}, squeeze=False)
    ax = axes[0, 0]
    ax.imshow(image)
    ax.set_title(title or "Search: scored boxes per step (thin), chosen (thick)")
    for tr in traces:
        for st in tr["steps"]:
            color = DEPTH_COLORS[(st["depth"] - 1) % len(DEPTH_COLORS)]
            for j, (b, s) in enumerate(zip(st["boxes"], st["scores"])):
                _box(ax, b, color, 2.5 if j == st["chosen"] else 0.8,
                     "-" if j == st["chosen"] else "--")
                if j == st["chosen"]:
                    ax.text(b[0] + 2, b[1] + 2, f"{st['depth']}: {s:.2f}", color=color,
                            fontsize=7, va="top")
    for k, tr in enumerate(traces):
        cax = axes[0, 1 + k]
        if tr["box"]:
            x0, y0, x1, y1 = tr["box"]
            cax.imshow(image[y0:y1, x0:x1])
            state = "found" if tr["found"] else "not found"
            cax.set_title(f"{tr['target']}: {state}\nscore {tr['score']:.2f}, "
                          f"{len(tr['steps'])} steps")
        else:
            cax.text(0.5, 0.5, "no search" if tr.get("global_score") is None else
                     f"resolved globally\n(score {tr['global_score']:.2f})",
                     ha="center", va="center", transform=cax.transAxes)
            cax.set_title(tr["target"])
    for a in axes.ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.set_label("search_trace")
    return fig


def saved_trace(path: str, folder: str, item_id: str) -> plt.Figure:
    """One item of a saved ``vstar_search`` predictions file, drawn over its image."""
    for rec in predictions.read(path):
        if str(rec["id"]) == str(item_id):
            if "search" not in rec or "image_file" not in rec:
                raise ValueError(f"{path}: item {item_id!r} has no search trace; it was not "
                                 "decoded by the vstar_search benchmark")
            image = common.read_image_file(f"{folder.rstrip('/')}/{rec['image_file']}",
                                           f"{path} item {item_id}")
            return search_trace(image, rec["search"],
                                title=f"{rec['id']}: {rec['prediction']!r} (gold "
                                      f"{rec['answer']!r})")
    raise KeyError(f"{path}: no item with id {item_id!r}")
