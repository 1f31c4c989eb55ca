"""Exact resume: a run killed (SIGKILL) at a random step, relaunched, preempted (SIGTERM) and
relaunched again ends with parameters bitwise equal to an uninterrupted run, and with the same
record of training (metrics.jsonl, <stage>_losses.json: every step once, the same losses).

Every run is the real entry point (``launch/tpu.py``) in a subprocess; they share a persistent
compilation cache, so only the first one compiles, and the uninterrupted run goes alongside the
relaunches (45-55 s in all on 2 shared cores).
"""

import json
import os
import random
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from cambrian import checkpoint
from tests.conftest import SMALL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {"stage1": 6, "stage2": 10}
SAVE_EVERY = 3
STEP_RE = re.compile(r"(stage[12]) step (\d+) loss")


def overrides(cache_dir: str) -> list[str]:
    o = {"cache_dir": cache_dir, "log_every": 1, "save.every": SAVE_EVERY, "eval.limit": 1,
         "model.llm.random.hidden_size": 64, "model.llm.random.intermediate_size": 128,
         "model.llm.random.head_dim": 16}
    o.update({f"data.synthetic.{k}": v for k, v in SMALL.items()})
    for name, steps in STEPS.items():
        o.update({f"stages.{name}.steps": steps, f"stages.{name}.batch_size": 4})
    return [f"--config.{k}={v}" for k, v in o.items()]


def launch(workdir: str, cache_dir: str, env: dict, log=subprocess.PIPE) -> subprocess.Popen:
    cmd = [sys.executable, "launch/tpu.py", "--config", "encoders/dinov2.py:runlocal",
           "--workdir", workdir, "--skip-eval", *overrides(cache_dir)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=log, stdout=subprocess.DEVNULL,
                            text=True)


def final_state(workdir: str) -> tuple[int, dict, dict]:
    """(step, params as saved, meta) of a run's latest checkpoint."""
    mngr = checkpoint.manager(workdir, 2, read_only=True)
    step = checkpoint.latest(mngr)
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                     meta=ocp.args.JsonRestore()))
    return step, out["state"]["params"], out["meta"]


def run_until(proc: subprocess.Popen, step: int, sig: int) -> tuple[int, str]:
    """Reads the log until global ``step`` is done, sends ``sig``; returns (exit code, log)."""
    log = []
    for line in proc.stderr:
        log.append(line)
        for stage, s in STEP_RE.findall(line):
            done = int(s) + (STEPS["stage1"] if stage == "stage2" else 0)
            if done >= step and proc.poll() is None:
                proc.send_signal(sig)
    log.append(proc.stderr.read())
    return proc.wait(timeout=300), "".join(log)


def test_killed_and_preempted_runs_resume_bitwise(cache_dir, tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
           "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    total = sum(STEPS.values())
    rng = random.Random()
    kill_at = rng.randint(2, total - 6)
    wd = str(tmp_path / "run")

    # 1. SIGKILL at a random step: no chance to write anything.
    code, log = run_until(launch(wd, cache_dir, env), kill_at, signal.SIGKILL)
    assert code == -signal.SIGKILL, (kill_at, log[-3000:])
    # the last committed checkpoint, if any (one still being written when killed is not one)
    saved = checkpoint.latest(checkpoint.manager(wd, 2, read_only=True))
    assert saved is None or (saved % SAVE_EVERY == 0 and saved <= kill_at), (kill_at, saved)

    # The uninterrupted run, alongside the rest (its programs are in the cache by now).
    ref_log = open(tmp_path / "ref.log", "w")
    ref = launch(str(tmp_path / "ref"), cache_dir, env, log=ref_log)
    try:
        # 2. Relaunch: resumes; SIGTERM two steps later writes a checkpoint at the current step.
        term_at = kill_at + 2
        code, log = run_until(launch(wd, cache_dir, env), term_at, signal.SIGTERM)
        assert code == 143, (kill_at, log[-3000:])
        written = int(re.search(r"checkpoint written at step (\d+)", log).group(1))
        mngr = checkpoint.manager(wd, 2, read_only=True)
        assert checkpoint.latest(mngr) == written and term_at <= written < total, (kill_at, written)
        assert ("resuming from" in log) == (saved is not None), (kill_at, saved)

        # 3. Relaunch: finishes.
        code, log = run_until(launch(wd, cache_dir, env), total + 1, signal.SIGTERM)
        assert code == 0 and "resuming from" in log, log[-3000:]
    except BaseException:  # the uninterrupted run never outlives the test
        ref.kill()
        raise

    # The uninterrupted run.
    assert ref.wait(timeout=300) == 0, (tmp_path / "ref.log").read_text()[-3000:]
    ref_log.close()
    ref_step, want, _ = final_state(str(tmp_path / "ref"))
    step, got, meta = final_state(wd)
    assert step == ref_step == total
    assert meta["done_stages"] == {"stage1": STEPS["stage1"], "stage2": total}
    got = jax.tree_util.tree_leaves_with_path(got)
    want = jax.tree.leaves(want)
    assert len(got) == len(want) > 30
    for (path, a), b in zip(got, want):
        assert np.array_equal(np.asarray(a), np.asarray(b)), (jax.tree_util.keystr(path), kill_at)

    # The record: rows past a restored checkpoint were dropped, so each step appears once.
    rows, ref_rows = (_rows(d) for d in (wd, str(tmp_path / "ref")))
    assert [r["step"] for r in rows] == list(range(1, total + 1)), (kill_at, rows)
    assert [(r["stage"], r["stage_step"], r["loss"], r["grad_norm"], r["lr"]) for r in rows] == [
        (r["stage"], r["stage_step"], r["loss"], r["grad_norm"], r["lr"]) for r in ref_rows]
    for name, steps in STEPS.items():
        losses = json.load(open(os.path.join(wd, f"{name}_losses.json")))
        assert losses["stage_steps"] == list(range(1, steps + 1))
        assert losses["losses"] == [r["loss"] for r in ref_rows if r["stage"] == name]


def _rows(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]
