"""The figures end to end: the CLI and both notebooks (executed headless) on the committed runs.
Every figure must be a non-empty PNG whose axes carry the expected labels."""

import asyncio
import json
import os
import threading

import pandas as pd
import pytest
from PIL import Image

from cambrian.results import cli, figures, frames, reference, runs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# figure kind -> (x label, y label) of its first axes ("" = not checked)
AXES = {
    "group_bars": ("score (%)", "run (best overall on top)"),
    "heatmap": ("benchmark (colour = group)", "run"),
    "whos_answering": ("benchmark (colour = group)", "score (%)"),
    "score_vs_tokens": ("visual tokens per image (log scale)",
                        "score (%), average of the four groups"),
    "loss_curves": ("training step (global, all stages)",
                    "loss (nats per answer token, log scale)"),
    "attention_mass": ("share of SVA attention (%)", "benchmark"),
    "radar": ("", ""),
}


def check_figures(folder: str, expected: dict[str, str]) -> dict:
    """``expected``: {png file: figure kind}. Returns the manifest."""
    with open(os.path.join(folder, "figures.json")) as fh:
        manifest = json.load(fh)
    assert sorted(manifest) == sorted(expected)
    for name, kind in expected.items():
        path = os.path.join(folder, name)
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width >= 1000 and im.height >= 300, name
            assert len(im.getcolors(1 << 16) or range(2 ** 16)) > 8, f"{name} is blank"
        entry = manifest[name]
        assert entry["kind"] == kind
        first = entry["axes"][0]
        assert (first["xlabel"], first["ylabel"]) == AXES[kind], name
        assert entry["suptitle"] or any(a["title"] for a in entry["axes"]), f"{name}: no title"
    return manifest


def _notebook(path: str, params: str):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = params
    return NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}})


def test_cli_and_notebooks_draw_every_figure(data_dir, tmp_path):
    """The one end-to-end check: both notebooks headless (two kernels) while the CLI runs here."""
    pytest.importorskip("nbclient")
    compare = _notebook(os.path.join(ROOT, "notebooks", "compare_encoders.ipynb"),
                        f"RUNS = [{data_dir!r}]\nNAMES = None\nPROFILE = ''\n"
                        f"FIG_DIR = {str(tmp_path / 'compare')!r}")
    paper = _notebook(os.path.join(ROOT, "notebooks", "paper_tables.ipynb"),
                      f"RUNS = [{data_dir!r}]\nNAMES = None\nTABLE = 'encoder_sweep'\n"
                      f"FIG_DIR = {str(tmp_path / 'paper')!r}")
    errors = []

    def kernels():
        async def both():
            await asyncio.gather(compare.async_execute(), paper.async_execute())

        try:
            asyncio.run(both())
        except Exception as e:  # re-raised below, in the test's thread
            errors.append(e)

    thread = threading.Thread(target=kernels)
    thread.start()
    out = tmp_path / "cli"
    try:
        assert cli.main(["compare", data_dir, "--out", str(out)]) == 0
    finally:
        thread.join()
    if errors:
        raise errors[0]

    manifest = check_figures(str(out), {f"{k}.png": k for k in AXES})
    assert len(manifest["group_bars.png"]["axes"]) == 4  # one panel per group
    assert manifest["radar.png"]["axes"][0]["polar"]
    summary = (out / "summary.md").read_text()
    assert "## Ranking" in summary and "| sva_4tower |" in summary
    assert "![radar](radar.png)" in summary

    check_figures(str(tmp_path / "compare"), {f"{k}.png": k for k in AXES})
    check_figures(str(tmp_path / "paper"), {"paper_group_bars.png": "group_bars",
                                            "paper_score_vs_tokens.png": "score_vs_tokens"})
    last = compare.nb.cells[-1]["outputs"][0]["data"]["text/plain"]
    assert "rank" in last and "sva_4tower" in last  # ends with the ranked table
    images = sum("image/png" in o.get("data", {}) for c in compare.nb.cells
                 for o in c.get("outputs", []))
    assert images == len(AXES)


def test_figures_without_data_say_what_to_run(data_dir, capsys):
    loaded = runs.load(os.path.join(data_dir, "clip_mlp"))
    scores = frames.scores(loaded)
    with pytest.raises(figures.NoData, match="--config.eval.save_attention=True"):
        figures.attention_mass(frames.attention(loaded))
    with pytest.raises(figures.NoData, match="--config.eval.vision=both"):
        figures.whos_answering(scores)
    both = pd.concat([reference.scores("encoder_sweep"), scores], ignore_index=True)
    text = cli.summary(loaded, both, {"radar": "skipped: no data"}, "")
    assert "- The four group averages per run. skipped: no data" in text
    assert "| SigLIP SO400M/14@384 | 1 |" in text  # the paper's rows ranked beside the run
    assert cli.main(["compare", os.path.join(data_dir, "nothing"), "--out", "unused"]) == 2
    assert "nothing: no run found" in capsys.readouterr().err
