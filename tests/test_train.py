"""End-to-end: the trainer on tiny runlocal configs (one step per shipped config, and a full
two-stage run with eval and report)."""

import glob
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from cambrian import config as C
from cambrian import optim, sharding, train
from cambrian.data import chat_templates, loader, tokenizer
from tests.conftest import small

CONFIGS = sorted(os.path.relpath(p, C.CONFIGS_DIR)
                 for p in glob.glob(os.path.join(C.CONFIGS_DIR, "*", "*.py"))
                 if not p.endswith("__init__.py") and "/eval/" not in p
                 and "/tools/" not in p)  # tool configs: tested with their tools


def _runlocal_model(name):
    return C.to_json(C.load(name + ":runlocal").model)


# Under :runlocal, configs of one encoder family become the same tiny model (e.g. clip.py and
# clip_224.py); one train step per distinct runlocal model covers every shipped config.
DISTINCT = {}
for _name in CONFIGS:
    DISTINCT.setdefault(_runlocal_model(_name), _name)


def one_step(config, stage: str = "stage2", grad_accum: int = 1):
    """Builds the model and runs one step of ``stage``; returns the loss and param trees."""
    tok = tokenizer.load(config.model.tokenizer)
    model = train.build_model(config, tok)
    stage = config.stages[stage]
    gd, trainable, frozen = nnx.split(model, optim.trainable_filter(stage.trainable), ...)
    tx = optim.make(stage, trainable)
    path, root = loader.resolve(stage.data, stage.image_root, config.cache_dir,
                                config.data.synthetic.to_dict())
    enc = loader.Encoder(template=chat_templates.get(config.model.template), tokenizer=tok,
                         num_image_tokens=model.num_image_tokens, max_len=config.model.max_len,
                         images=model.host_images(), image_root=root, skip_bad=False,
                         system=config.model.system_prompt)
    batch = next(iter(loader.dataset(loader.load_records(path), enc, batch_size=2, num_batches=1,
                                     seed=0)))
    mesh = sharding.make_mesh(config.mesh)
    step = train.make_train_step(gd, tx, loss_chunk=config.loss_chunk, grad_accum=grad_accum)
    before = jax.tree.map(np.array, (trainable, frozen))
    new, _, m = step(trainable, frozen, tx.init(trainable), sharding.put_batch(batch, mesh))
    return float(m["loss"]), before, jax.tree.map(np.array, (new, frozen))


def test_every_config_maps_to_a_tested_runlocal_model():
    assert all(_runlocal_model(n) in DISTINCT for n in CONFIGS)
    assert len(DISTINCT) >= 14 + 4  # every encoder family and every connector


@pytest.mark.parametrize("name", sorted(DISTINCT.values()))
def test_every_config_runs_one_train_step(name, cache_dir):
    config = small(C.load(name + ":runlocal"), cache_dir)
    loss, (tr0, fr0), (tr1, fr1) = one_step(config)
    assert np.isfinite(loss) and loss > 0
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(tr0), jax.tree.leaves(tr1))]
    assert any(changed)
    for a, b in zip(jax.tree.leaves(fr0), jax.tree.leaves(fr1)):  # frozen encoders untouched
        np.testing.assert_array_equal(a, b)


def test_two_stage_run_writes_report_and_resumes(tiny_config, tmp_path):
    wd = str(tmp_path / "run")
    rep = train.run(tiny_config, wd)
    assert set(rep["groups"]) == {"general", "knowledge", "ocr_chart", "vision_centric"}
    for name, r in rep["benchmarks"].items():
        assert r["n"] == 4 and 0 <= r["score"] <= 100 and 0 < r["chance"] < 100
        lines = open(os.path.join(wd, "predictions", f"{name}.jsonl")).read().splitlines()
        assert len(lines) == 4 and all("prediction" in json.loads(x) for x in lines)
    on_disk = json.load(open(os.path.join(wd, "report.json")))
    assert on_disk["config"] == "encoders/dinov2.py:runlocal" and on_disk["step"] == 4
    assert on_disk["config_hash"] == C.config_hash(tiny_config)
    assert any("random-init" in n for n in on_disk["notes"])
    # the training record: one row per step (log_every=1) with the published keys and types
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert [(r["stage"], r["step"], r["stage_step"]) for r in rows] == [
        ("stage1", 1, 1), ("stage1", 2, 2), ("stage2", 3, 1), ("stage2", 4, 2)]
    for r in rows:
        assert list(r) == ["stage", "step", "stage_step", "loss", "lr", "grad_norm",
                           "step_time_s", "tokens_per_s", "examples_per_s", "mfu", "time"]
        assert list(r["lr"]) == ["base"] and r["lr"]["base"] > 0 and r["mfu"] is None  # CPU
        assert all(isinstance(r[k], float) and r[k] > 0 for k in (
            "loss", "grad_norm", "step_time_s", "tokens_per_s", "examples_per_s", "time"))
        # 4 rows of one conversation each: its 20 visual tokens and its text, <= 128 a row
        assert r["examples_per_s"] * r["step_time_s"] == pytest.approx(4)
        assert 4 * 20 < r["tokens_per_s"] * r["step_time_s"] <= 4 * 128
    assert glob.glob(os.path.join(wd, "tensorboard", "events.out.tfevents.*"))
    # A rerun restores the finished stages and the saved predictions instead of recomputing.
    mtime = os.path.getmtime(os.path.join(wd, "predictions", "synthetic_general.jsonl"))
    rep2 = train.run(tiny_config, wd)
    def scores(r):
        return {k: {f: v for f, v in b.items() if f != "seconds"} for k, b in r.items()}

    assert scores(rep2["benchmarks"]) == scores(rep["benchmarks"])
    assert os.path.getmtime(os.path.join(wd, "predictions", "synthetic_general.jsonl")) == mtime
