"""``launch/tpu.py --tpu`` against a fake ``gcloud`` (tests/launch/fake_gcloud.py): the command
sequence, the ``--worker=all`` fan-out, log streaming, failures, and what stops before gcloud.

The workers run ``tests/launch/fake_trainer.py`` in place of the trainer; test_preemption.py runs
the real one.
"""

import os
import re

from tests.launch.conftest import HERE, kind

TRAINER = os.path.join(HERE, "fake_trainer.py")


def _tpu(pod, *extra, accelerator="v4-32"):
    return ["--config", "encoders/dinov2.py:runlocal", "--workdir", str(pod.tmp / "run"),
            "--tpu", "t1", "--zone", "z1", "--accelerator", accelerator, "--no-memory-check",
            *extra]


def _steps(calls) -> list[str]:
    """gcloud call kinds in order, state polls dropped and repeats folded."""
    out = []
    for k in map(kind, calls):
        if k not in ("qr-describe", "tpu-describe", "uv venv", "uv pip") and \
                (not out or out[-1] != k):
            out.append(k)
    return out


def test_create_sync_install_run_delete_on_every_worker(pod):
    r = pod.launch(*_tpu(pod, "--create", "--version", "rt-1", "--spot"), FAKE_TRAINER=TRAINER)
    assert r.returncode == 0, r.stderr[-3000:]
    calls = pod.calls()
    assert _steps(calls) == ["qr-create", "tpu-scp", "unpack", "install", "run"]
    create = next(c for c in calls if kind(c) == "qr-create")
    assert {"--accelerator-type=v4-32", "--runtime-version=rt-1", "--spot",
            "--node-id=t1", "--zone=z1"} <= set(create)
    assert all("--worker=all" in c for c in calls if kind(c) in
               ("tpu-scp", "unpack", "install", "run"))
    assert sum(kind(c) == "uv venv" for c in calls) == 4  # v4-32: 4 workers, one install each
    # worker 0 streams in full, the others stay quiet; all four run as one 4-process job
    out = r.stdout
    assert "[w0] 0: process 0 of 4 via 127.0.0.1:8476" in out
    for step in (1, 2, 3):
        assert f"[w0] 00:00:0{step} INFO stage2 step {step} loss 1.{step}" in out
    assert "[w0] INFO worker 0 detail line" in out
    assert "[w1]" not in out and "[w3]" not in out
    assert r.stderr.count("exited: 0") == 4

    # the same slice again, now deleted at the end: the install is cached per VM
    before = len(calls)
    r = pod.launch(*_tpu(pod, "--delete-after"), FAKE_TRAINER=TRAINER)
    assert r.returncode == 0, r.stderr[-3000:]
    again = pod.calls()[before:]
    assert _steps(again) == ["tpu-scp", "unpack", "install", "run", "qr-delete"]
    assert "cached" in r.stdout


def test_a_failing_worker_shows_its_traceback_and_is_not_restarted(pod):
    pod.add_node("t1", "v4-16")
    r = pod.launch(*_tpu(pod, "--retries", "2", accelerator="v4-16"), FAKE_TRAINER=TRAINER,
                   FAKE_FAIL_WORKER="1")
    assert r.returncode == 1, r.stderr[-3000:]
    out = r.stdout
    assert "[w1] Traceback (most recent call last):" in out
    assert "[w1] ValueError: boom on worker 1" in out
    assert "[w1] INFO worker 1 detail line" not in out  # not an error: filtered
    assert "[w0] jax.errors.JaxRuntimeError: task 1 failed" in out
    assert sum(kind(c) == "run" for c in pod.calls()) == 1
    assert "run failed" in r.stderr


def test_dry_run_prints_every_gcloud_command_and_runs_none(pod):
    r = pod.launch(*_tpu(pod, "--create", "--version", "rt-1", "--delete-after", "--dry-run"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert pod.calls() == []
    err = r.stderr
    for text in ("would run: gcloud compute tpus queued-resources create t1 --node-id=t1 "
                 "--accelerator-type=v4-32 --runtime-version=rt-1 --zone=z1",
                 "would run: gcloud compute tpus tpu-vm scp ", "install.sh",
                 "--coordinator WORKER0_IP:8476 --num-processes 4 -- launch/tpu.py --config "
                 "encoders/dinov2.py:runlocal",
                 "would run: gcloud compute tpus queued-resources delete t1 --force --quiet"):
        assert text in err


def test_a_config_error_stops_before_any_gcloud_call(pod):
    r = pod.launch(*_tpu(pod, "--config.stages.stage2.stepz=3", "--create", "--version", "x"))
    assert r.returncode == 2
    assert "unknown config key 'stages.stage2.stepz'" in r.stderr
    assert pod.calls() == []


def test_an_over_memory_config_stops_before_any_gcloud_call(pod):
    # 2^24 rows: the batch alone overflows a v4 chip, found from shapes before any compile
    args = _tpu(pod, f"--config.cache_dir={pod.cache_dir}",
                "--config.stages.stage2.batch_size=16777216", accelerator="v4-8")
    args.remove("--no-memory-check")
    r = pod.launch(*args)
    assert r.returncode == 2, r.stderr[-3000:]
    total = float(re.search(r"stage2 on v4-8: ([\d.]+) GiB per chip of 28.8", r.stderr)[1])
    batch = float(re.search(r"the batch alone takes ([\d.]+) GiB per chip", r.stderr)[1])
    assert 28.8 < batch <= total  # 2^24 rows of int32 tokens and uint8 images: tens of GiB
    assert "does NOT fit" in r.stderr and "shapes only" in r.stderr
    assert "lower --config.stages.stage2.batch_size" in r.stderr  # the knob to change
    assert pod.calls() == []


def test_hosts_fan_out_one_ssh_per_host_with_its_process_id(pod, tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# GPU nodes\nalice@gpu-a\ngpu-b  # second\n")
    r = pod.launch("--config", "encoders/dinov2.py:runlocal", "--workdir", "/shared/run",
                   "--hosts", str(hosts), "--dry-run", "--env", "XLA_FLAGS=--x")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [ln for ln in r.stderr.splitlines() if "worker run" in ln]
    assert len(runs) == 2
    for i, (host, line) in enumerate(zip(("alice@gpu-a", "gpu-b"), runs)):
        assert f"would run: ssh -o BatchMode=yes -o ConnectTimeout=20 {host} " in line
        assert f"--worker-id {i} --coordinator gpu-a:8476 --num-processes 2" in line
        assert "--env XLA_FLAGS=--x" in line and "bash cambrian/pod/install.sh" not in line
    assert "install.sh ~/cambrian/venv-" in r.stderr and " gpu" in r.stderr


def test_launch_toml_defaults_reach_the_config_and_every_worker(pod):
    (pod.tmp / "launch.toml").write_text(
        'project = "p-file"\nzone = "z-file"\nbucket = "gs://bkt"\n'
        '[env]\nCAMBRIAN_DATA = "/fake/data"\n')
    r = pod.launch("--config", "encoders/dinov2.py", "--workdir", "runs/x", "--tpu", "t1",
                   "--dry-run", "--no-memory-check")
    assert r.returncode == 0, r.stderr[-3000:]
    assert '"/fake/data/built/cambrian_737k"' in r.stdout  # built as the workers build it
    run = next(ln for ln in r.stderr.splitlines() if "worker run" in ln)
    assert "--env CAMBRIAN_DATA=/fake/data" in run and "--workdir gs://bkt/runs/x" in run
    assert "--zone=z-file" in run and "--project=p-file" in run
