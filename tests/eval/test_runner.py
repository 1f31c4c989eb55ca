"""The eval runner: batch-invariant predictions, resumable JSONL, vision-off mode."""

import json
import os

import pytest

from cambrian.data import tokenizer
from cambrian.eval import runner
from cambrian.train import build_model


@pytest.fixture(scope="module")
def setup(cache_dir):
    from cambrian import config as C
    from tests.conftest import small

    cfg = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    cfg.eval.limit = 6
    cfg.eval.max_new_tokens = 6
    tok = tokenizer.load("synthetic")
    return cfg, tok, build_model(cfg, tok)


def _preds(wd, sub="predictions"):
    out = {}
    for f in sorted(os.listdir(os.path.join(wd, sub))):
        for line in open(os.path.join(wd, sub, f)):
            r = json.loads(line)
            out[(f, r["id"])] = r["prediction"]
    return out


def test_predictions_do_not_depend_on_batch_size(setup, tmp_path):
    cfg, tok, model = setup
    got = {}
    for bs in (1, 4, 16):
        cfg.eval.batch_size = bs
        wd = str(tmp_path / f"bs{bs}")
        runner.evaluate(model, cfg, tok, wd)
        got[bs] = _preds(wd)
    assert len(got[1]) == 4 * 6
    assert got[1] == got[4] == got[16]


def test_rerun_resumes_from_saved_predictions(setup, tmp_path):
    cfg, tok, model = setup
    cfg.eval.batch_size = 4
    wd = str(tmp_path / "r")
    first = runner.evaluate(model, cfg, tok, wd)
    path = os.path.join(wd, "predictions", "synthetic_general.jsonl")
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[:2]) + "\n")  # as if interrupted after 2 predictions
    again = runner.evaluate(model, cfg, tok, wd)
    assert len(open(path).read().splitlines()) == 6
    assert again["synthetic_general"]["score"] == first["synthetic_general"]["score"]


def test_vision_off_writes_its_own_predictions(setup, tmp_path):
    cfg, tok, model = setup
    cfg.eval.batch_size = 8
    cfg.eval.vision = "both"
    res = runner.evaluate(model, cfg, tok, str(tmp_path))
    cfg.eval.vision = "on"
    assert "synthetic_general/vision_off" in res and "synthetic_general" in res
    assert len(_preds(str(tmp_path), "predictions_vision_off")) == 24


def test_data_parallel_eval_on_8_devices_matches_one(tmp_path, cache_dir):
    """The same predictions with the batch sharded over 8 (fake CPU) devices."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import json, os, sys
        from cambrian import config as C
        from cambrian.data import tokenizer
        from cambrian.eval import runner
        from cambrian.train import build_model
        from tests.conftest import small
        cfg = small(C.load("encoders/dinov2.py:runlocal"), {cache_dir!r})
        cfg.eval.limit, cfg.eval.max_new_tokens, cfg.eval.batch_size = 6, 6, 8
        tok = tokenizer.load("synthetic")
        runner.evaluate(build_model(cfg, tok), cfg, tok, sys.argv[1])
    """)
    outs = {}
    for n in (1, 8):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
        wd = str(tmp_path / f"d{n}")
        subprocess.run([sys.executable, "-c", script, wd], check=True, env=env, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        outs[n] = _preds(wd)
    assert len(outs[1]) == 24 and outs[1] == outs[8]
