"""A preempted spot slice is recreated and the run resumes from its checkpoint.

``launch/tpu.py --tpu --create --spot --retries 2`` against the fake gcloud, whose one v4-8
worker (4 fake CPU chips) trains the tiny runlocal probe for real. When stage 2 logs step 3 the
fake preempts the slice: SIGTERM to the run (the trainer checkpoints and exits 143), node
PREEMPTED, queued resource SUSPENDED. The launcher must queue a new slice (fresh VMs: code and
install again) and rerun, and the rerun must continue from the checkpoint, not from step 0.
"""

import re

from cambrian import checkpoint
from tests.conftest import SMALL
from tests.launch.conftest import kind

STEPS = 30


def test_a_preempted_slice_is_recreated_and_the_run_resumes(pod, tmp_path):
    o = {"cache_dir": pod.cache_dir, "log_every": 1, "eval.limit": 1,
         "stages.stage1.steps": 0, "stages.stage2.steps": STEPS,
         "stages.stage2.batch_size": 4, "model.llm.random.hidden_size": 64,
         "model.llm.random.intermediate_size": 128, "model.llm.random.head_dim": 16}
    o.update({f"data.synthetic.{k}": v for k, v in SMALL.items()})
    workdir = str(tmp_path / "run")
    pod.preempt_at("stage2 step 3 loss")
    r = pod.launch("--config", "encoders/dinov2.py:runlocal",
                   *[f"--config.{k}={v}" for k, v in o.items()], "--workdir", workdir,
                   "--skip-eval", "--tpu", "t1", "--zone", "z1", "--accelerator", "v4-8",
                   "--create", "--version", "rt-1", "--spot", "--retries", "2",
                   "--delete-after", "--no-memory-check", timeout=900,
                   JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])

    steps = [k for k in map(kind, pod.calls()) if k not in ("qr-describe", "tpu-describe")]
    attempt = ["qr-create", "tpu-scp", "unpack", "install", "uv venv", "uv pip", "run"]
    assert steps == attempt + ["qr-delete"] + attempt + ["qr-delete"]

    # the rerun resumed where the SIGTERM checkpoint left, and trained only the steps after it
    out = r.stdout
    first, _, second = out.partition("resuming from")
    assert second, out[-3000:]
    resumed = int(re.match(r" \S+ step (\d+)", second).group(1))
    assert 3 <= resumed < STEPS
    before = [int(s) for s in re.findall(r"\[w0\].*stage2 step (\d+) loss", first)]
    after = [int(s) for s in re.findall(r"\[w0\].*stage2 step (\d+) loss", second)]
    assert before[:3] == [1, 2, 3] and max(before) == resumed
    assert after == list(range(resumed + 1, STEPS + 1))
    assert "restart 1/2 after SIGTERM" in r.stderr
    assert f"restart 1 resumed from step {resumed}" in r.stderr
    assert "steps lost: 0" in r.stderr
    assert "its environment differs" not in r.stderr  # the workers built this config
    assert checkpoint.latest(checkpoint.manager(workdir, 2, read_only=True)) == STEPS
