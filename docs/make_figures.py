"""Redraws the figures the README shows, into docs/.

    python docs/make_figures.py

The paper's encoder sweep gives the per-group bars, the heatmap, score vs tokens and the radar;
the full-length dinov2 :runlocal probe in docs/probes/ gives who's answering; the test-data probes
(tests/results/data/probes) give the loss curves and, beside Cambrian-1-8B's published numbers, the
SVA attention.
"""

import os

import pandas as pd

from cambrian.results import figures, frames, reference, runs

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_RUNS = os.path.join(os.path.dirname(HERE), "tests", "results", "data", "probes")


def main() -> None:
    sweep = reference.scores("encoder_sweep")
    probes = runs.load(TEST_RUNS)
    long_run = runs.load(os.path.join(HERE, "probes", "dinov2_full"))
    drawn = {
        "group_bars": figures.group_bars(sweep),
        "heatmap": figures.heatmap(sweep),
        "score_vs_tokens": figures.score_vs_tokens(sweep),
        "radar": figures.radar(sweep),
        "whos_answering": figures.whos_answering(frames.scores(long_run)),
        "loss_curves": figures.loss_curves(frames.curves(probes)),
        "attention_mass": figures.attention_mass(
            pd.concat([reference.attention(), frames.attention(probes)], ignore_index=True)),
    }
    for name, fig in drawn.items():
        print(figures.save(fig, os.path.join(HERE, f"{name}.png")))


if __name__ == "__main__":
    main()
