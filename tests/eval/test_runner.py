"""The eval runner: batch-invariant predictions, resumable JSONL, vision-off mode."""

import json
import os

import numpy as np
import pytest

from cambrian.data import tokenizer
from cambrian.eval import predictions, runner
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
    full = open(path).read()
    lines = full.splitlines()
    open(path, "w").write("\n".join(lines[:2]) + "\n")  # as if interrupted after 2 predictions
    again = runner.evaluate(model, cfg, tok, wd)
    assert open(path).read() == full  # same records, same (item) order
    assert again["synthetic_general"]["score"] == first["synthetic_general"]["score"]


def test_resume_from_the_parts_of_an_interrupted_multi_host_run(setup, tmp_path, monkeypatch):
    """Part files of 2 hosts, one cut in the middle of a line, are resumed by 1 process: only the
    missing items are decoded and the merged file is the uninterrupted run's."""
    cfg, tok, model = setup
    cfg.eval.batch_size = 4
    wd = str(tmp_path / "p")
    runner.evaluate(model, cfg, tok, wd)
    pred = os.path.join(wd, "predictions")
    full = {f: open(os.path.join(pred, f)).read() for f in os.listdir(pred)}
    lines = full["synthetic_general.jsonl"].splitlines(keepends=True)
    os.remove(os.path.join(pred, "synthetic_general.jsonl"))
    open(os.path.join(pred, "synthetic_general.jsonl.part0-of-2"), "w").writelines(
        [lines[4], lines[0]])
    open(os.path.join(pred, "synthetic_general.jsonl.part1-of-2"), "w").write(
        lines[3] + lines[5][:20])  # killed while appending item 5
    decoded = []
    add = predictions.Writer.add
    monkeypatch.setattr(predictions.Writer, "add",
                        lambda self, recs: (decoded.extend(r["id"] for r in recs), add(self, recs)))
    runner.evaluate(model, cfg, tok, wd)
    want_ids = [json.loads(x)["id"] for x in (lines[1], lines[2], lines[5])]
    assert sorted(decoded) == sorted(want_ids)
    assert {f: open(os.path.join(pred, f)).read() for f in os.listdir(pred)} == full


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


def test_bf16_eval_stores_the_llm_in_bf16_with_the_same_predictions(setup, tmp_path,
                                                                     monkeypatch):
    """A bf16 run's eval copy of the LLM is cast to bf16 (half the replicated memory); the LLM
    casts each weight to its compute dtype anyway, so the predictions are those of the fp32
    masters."""
    import copy

    import jax
    import jax.numpy as jnp
    from flax import nnx

    cfg, tok, _ = setup
    cfg = copy.deepcopy(cfg)
    cfg.model.dtype = "bfloat16"
    cfg.eval.batch_size = 8
    cfg.eval.suite = "synthetic_vision_centric"
    model = build_model(cfg, tok)
    _, state = nnx.split(model)
    cast = runner._llm_in_compute_dtype(state, "bfloat16")
    kinds = {x.dtype for x in jax.tree.leaves(cast["llm"])}
    assert kinds == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(cast["connector"])} == {jnp.dtype(jnp.float32)}
    runner.evaluate(model, cfg, tok, str(tmp_path / "cast"))
    monkeypatch.setattr(runner, "_llm_in_compute_dtype", lambda s, d: s)
    runner.evaluate(model, cfg, tok, str(tmp_path / "masters"))
    assert _preds(str(tmp_path / "cast")) == _preds(str(tmp_path / "masters"))


def test_saves_upstream_text_on_the_llama3_layout(setup, release_tokenizers, tmp_path,
                                                  monkeypatch):
    """With a Llama-3 tokenizer and template, whatever the batch, each saved prediction is
    upstream's text for the row's tokens (``decoded.py``: special tokens skipped, 4.37's clean-up,
    stripped). The decoder is replaced by one that emits fixed tokens (a special token, spaced
    punctuation, <|eot_id|>, then padding), so the model (vocab >= the tokenizer's) never runs."""
    import copy

    cfg, _, model = setup
    d, tok, ids = release_tokenizers["llama3"]
    text = "Hello , world ? I do n't know . It 's red"
    reserved = tok.convert_tokens_to_ids("<|reserved_special_token_4|>")
    row = [reserved, *tok(" " + text, add_special_tokens=False).input_ids, ids["eot"]]

    def fake_generate_fn(graphdef, max_new_tokens, eos_ids, vision):
        assert ids["eot"] in eos_ids

        def generate(state, batch):
            b = batch["tokens"].shape[0]
            toks = np.zeros((b, max_new_tokens), np.int32)
            toks[:, :len(row)] = row
            return toks, np.full((b,), len(row), np.int32)
        return generate

    monkeypatch.setattr(runner, "_generate_fn", fake_generate_fn)
    cfg = copy.deepcopy(cfg)
    cfg.model.tokenizer, cfg.model.template = d, "llama_3"
    cfg.eval.limit, cfg.eval.max_new_tokens = 3, len(row) + 4
    got = {}
    for bs in (1, 3):
        cfg.eval.batch_size = bs
        wd = tmp_path / f"bs{bs}"
        runner.evaluate(model, cfg, tok, str(wd))
        got[bs] = {(f.name, json.loads(line)["id"]): json.loads(line)["prediction"]
                   for f in sorted((wd / "predictions").iterdir()) for line in open(f)}
    assert got[1] == got[3] and len(got[1]) == 4 * 3
    assert set(got[1].values()) == {"Hello, world? I don't know. It's red"}
