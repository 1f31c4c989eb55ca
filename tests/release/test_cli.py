"""``python -m cambrian.release``: convert -> eval-only scoring through launch/tpu.py; chat."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cambrian.release import cli
from tests.release.conftest import image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_reproduce_slot_and_tower_arguments(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("cambrian.release.reproduce")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "cambrian.release.reproduce", fake)
    assert cli.main(["reproduce", "--x", "1"]) == 0 and seen == [["--x", "1"]]
    with pytest.raises(SystemExit, match="--tower 'nodir': expected NAME=DIR"):
        cli._towers(type("A", (), {"tower": ["nodir"]}))
    got = cli._towers(type("A", (), {"tower": ["facebook/dinov2-giant-res378=/t/d"]}))
    assert got == {"facebook/dinov2-giant-res378": "/t/d"}


@pytest.mark.slow
def test_chat_prints_the_reference_answer(releases, references, tmp_path, capsys):
    rel = releases["34b"]
    path = tmp_path / "a.png"
    Image.fromarray(image(517, 289, seed=3)).save(path)
    want = references["34b"].answer(np.asarray(Image.open(path).convert("RGB")), "What is it?",
                                    max_new_tokens=5)
    cli.main(["chat", "--checkpoint", rel.checkpoint, "--towers-root", rel.towers_root,
              "--image", str(path), "--max-new-tokens", "5", "What is it?"])
    assert capsys.readouterr().out.endswith(want + "\n")  # answers may hold newlines


@pytest.mark.slow
def test_convert_then_eval_only_scoring(releases, tmp_path):
    rel = releases["8b"]
    run, work = tmp_path / "run", tmp_path / "eval"
    cli.main(["convert", "--checkpoint", rel.checkpoint, "--towers-root", rel.towers_root,
              "--out", str(run)])
    saved = json.loads((run / "config.json").read_text())
    assert list(saved["model"]["encoders"]) == ["clip", "convnext", "dinov2", "siglip"]  # sorted
    assert [saved["model"]["encoders"][a]["order"] for a in ("siglip", "clip", "dinov2",
                                                              "convnext")] == [0, 1, 2, 3]
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch/tpu.py"), "--config",
         "configs/eval/cambrian.py:runlocal", f"--config.checkpoint={run}", "--workdir",
         str(work), "--config.eval.limit=1"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (work / "report.json").is_file(), os.listdir(work)  # scored, report written
