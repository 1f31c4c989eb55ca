"""Errors after the model is built end the run with one line naming the record or step and the
fix, and with the checkpoint that is due: the last good state before a bad record, never a state
after a non-finite loss. Each run is the real entry point (``launch/tpu.py``'s ``main``)."""

import importlib.util
import json
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cambrian import checkpoint, train
from cambrian.data import loader
from cambrian.data import synthetic as synthetic_lib
from cambrian.data.readers import DataError
from tests.conftest import SMALL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, STEPS = 4, 4


def _launch_main():
    spec = importlib.util.spec_from_file_location("cambrian_launch_tpu",
                                                  os.path.join(ROOT, "launch", "tpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def launch(capsys):
    """``launch(*args) -> (exit status, stderr)``; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    main = _launch_main()

    def call(*args):
        code = main(list(args))
        return code, capsys.readouterr().err

    yield call
    root.handlers[:] = handlers
    root.setLevel(level)


def _first_drawn_at_step(records, step: int) -> int:
    """Index of a record that stage 1 (seed 0) first draws in batch ``step`` (1-based): the
    loader's own order, read with an encoder that returns the record's index."""
    class Index:
        skip_bad = False

        def __call__(self, item):
            return {"i": np.int32(int(item[0]["id"].rsplit("_", 1)[1]))}

    batches = loader.dataset(records, Index(), batch_size=BATCH, num_batches=STEPS, seed=0)
    seen = [set(b["i"].tolist()) for b in batches]
    new = sorted(seen[step - 1] - set().union(*seen[:step - 1]))
    assert new, f"no record is first drawn at step {step}: {seen}"
    return new[0]


def _overrides(cache_dir, data, image_root):
    o = {"cache_dir": cache_dir, "log_every": 100, "save.every": 0,
         "data.efficiency_batches": 0,  # no batch drawn ahead: the bad one comes mid-run
         "model.llm.random.hidden_size": 64, "model.llm.random.intermediate_size": 128,
         "model.llm.random.head_dim": 16, "model.llm.random.num_layers": 2,
         "stages.stage1.steps": STEPS,
         "stages.stage1.batch_size": BATCH, "stages.stage1.warmup_ratio": 0.0,
         "stages.stage1.data": data, "stages.stage1.image_root": image_root,
         "stages.stage2.steps": 0}
    return [f"--config.{k}={v}" for k, v in o.items()]


def _latest(workdir):
    mngr = checkpoint.manager(workdir, 2, read_only=True)
    step = checkpoint.latest(mngr)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, out["state"]["params"]


def test_missing_image_then_nan_loss_stop_with_one_line_and_the_due_checkpoint(
        cache_dir, tmp_path, launch):
    # stage 1 reads 8 synthetic records from their own folder; the image of one that it first
    # draws at step 3 goes missing
    src = synthetic_lib.ensure(cache_dir, SMALL)
    records = json.load(open(os.path.join(src, "align.json")))[:8]
    (tmp_path / "data" / "images").mkdir(parents=True)
    for r in records:
        shutil.copy(os.path.join(src, r["image"]), tmp_path / "data" / r["image"])
    data = str(tmp_path / "data" / "align.json")
    json.dump(records, open(data, "w"))
    bad = records[_first_drawn_at_step(loader.load_records(data), 3)]["image"]
    hidden = tmp_path / "hidden.png"
    shutil.move(tmp_path / "data" / bad, hidden)
    wd = str(tmp_path / "run")
    args = ["--config", "encoders/dinov2.py:runlocal", "--workdir", wd, "--skip-eval",
            *_overrides(cache_dir, data, str(tmp_path / "data"))]

    code, err = launch(*args)
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    line = errors[0]
    assert "stage1 step 3 (global step 3)" in line and "image file not found: " in line
    assert str(tmp_path / "data" / bad) in line and "data.skip_bad=True" in line
    assert "checkpoint written at step 2" in line
    assert _latest(wd)[0] == 2

    # Image back, and an LR of 1e30: the rerun resumes at step 2 with the exact next batch,
    # and the loss blows up before the stage's final checkpoint, which is not written.
    shutil.move(hidden, tmp_path / "data" / bad)
    code, err = launch(*args, "--config.stages.stage1.lr=1e30")
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "resuming from" in err and "step 2 (stage1)" in err
    line = errors[0]
    assert "stage1 step 4 (global step 4)" in line and "this state is not saved" in line, line
    assert "stages.stage1.lr=1e+30" in line and "latest checkpoint, step 2" in line, line
    step, params = _latest(wd)
    assert step == 2
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    assert len(leaves) > 30 and all(np.isfinite(x).all() for x in leaves)


def test_launch_shows_one_line_or_with_traceback_the_traceback(cache_dir, tmp_path, launch,
                                                               monkeypatch):
    def bad_record(*args, **kwargs):
        raise DataError("data/x.jsonl:7: conversation has no human turn")

    monkeypatch.setattr(train, "run", bad_record)
    args = ["--config", "encoders/dinov2.py:runlocal", "--workdir", str(tmp_path),
            f"--config.cache_dir={cache_dir}"]
    code, err = launch(*args)
    assert code == 1 and err.strip().splitlines()[-1] == (
        "error: data/x.jsonl:7: conversation has no human turn")
    with pytest.raises(DataError):
        launch(*args, "--traceback")
    monkeypatch.setenv("CAMBRIAN_TRACEBACK", "1")
    with pytest.raises(DataError):
        launch(*args)
