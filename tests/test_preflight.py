import subprocess
import sys

import pytest

from cambrian import config as C
from cambrian import preflight

LAUNCH = [sys.executable, "launch/tpu.py"]


def run(*args):
    return subprocess.run(LAUNCH + list(args), capture_output=True, text=True, timeout=120)


def test_missing_checkpoint_names_field_and_path(tmp_path):
    c = C.load("encoders/dinov2.py", [f"--config.model.encoders.dinov2.checkpoint={tmp_path}/nope"])
    probs = preflight.problems(c)
    assert any(p.startswith("model.encoders.dinov2.checkpoint:") and f"{tmp_path}/nope" in p
               for p in probs)
    assert any(p.startswith("model.llm.checkpoint:") for p in probs)
    assert all("\n" not in p for p in probs)


def test_missing_data_file_names_stage(tmp_path):
    c = C.load("encoders/dinov2.py:runlocal", [f"--config.stages.stage2.data={tmp_path}/x.jsonl"])
    (p,) = preflight.problems(c)
    assert p.startswith("stages.stage2.data:") and "x.jsonl" in p and "data_recipes/build.py" in p


@pytest.mark.parametrize("args,expect", [
    (["--config", "encoders/dinov2.py", "--workdir", "/tmp/x"], "model.encoders.dinov2.checkpoint"),
    (["--config", "encoders/dinov2.py:runlocal", "--workdir", "/tmp/x", "--config.bogus=1"],
     "unknown config key 'bogus'"),
])
def test_launcher_fails_early_with_one_clear_line(args, expect):
    r = run(*args)
    assert r.returncode == 2
    assert expect in r.stderr and r.stderr.startswith("error: ")
