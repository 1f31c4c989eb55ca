"""The run record: metrics.jsonl continued across resumes, TensorBoard event files, the W&B
switch, the MFU peak table and formula."""

import glob
import json
import logging
import struct
import sys

import pytest

from cambrian import config as C
from cambrian import runlog


def _config(**log):
    c = C.base_config()
    c.log.update({"tensorboard": False, **log})
    return c


def _row(stage, step, stage_step, loss):
    return runlog.row(stage=stage, step=step, stage_step=stage_step, loss=loss,
                      lr={"base": 1e-3, "connector": 1e-4}, grad_norm=0.5, seconds=2.0, steps=4,
                      tokens=1000, examples=8, flops_per_step=None, devices=1, peak=None)


def test_row_has_the_published_keys_and_rates():
    r = _row("stage2", 12, 2, 1.5)
    assert list(r) == ["stage", "step", "stage_step", "loss", "lr", "grad_norm", "step_time_s",
                       "tokens_per_s", "examples_per_s", "mfu", "time"]
    assert (r["step_time_s"], r["tokens_per_s"], r["examples_per_s"], r["mfu"]) == (
        0.5, 500.0, 4.0, None)
    json.dumps(r)  # one JSON object per line


def test_metrics_continue_across_a_resume_without_duplicate_steps(tmp_path, caplog):
    wd = str(tmp_path)
    rec = runlog.Recorder(_config(), wd, restored_step=0, main=True)
    for s in range(1, 5):
        rec.write(_row("stage1", s, s, 10.0 - s))
    for s in range(1, 4):
        rec.write(_row("stage2", 4 + s, s, 5.0 - s))
    rec.close()
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"stage": "stage2", "step": 8, "sta')  # killed while writing a line

    # resumed from the checkpoint at step 5 (stage 2, step 1): steps 6 and 7 are replayed
    with caplog.at_level(logging.WARNING, logger="cambrian"):
        rec = runlog.Recorder(_config(), wd, restored_step=5, main=True)
    assert "metrics.jsonl:8: ignoring the unfinished last line" in caplog.text
    assert rec.losses("stage2") == ([1], [4.0])
    for s in range(2, 5):
        rec.write(_row("stage2", 4 + s, s, 40.0 - s))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["loss"] for r in rows if r["stage"] == "stage2"] == [4.0, 38.0, 37.0, 36.0]
    assert rec.losses("stage1") == ([1, 2, 3, 4], [9.0, 8.0, 7.0, 6.0])

    # a process other than 0 keeps the rows but writes nothing
    other = runlog.Recorder(_config(), wd, restored_step=8, main=False)
    other.write(_row("stage2", 9, 5, 1.0))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 8
    assert other.losses("stage2")[0] == [1, 2, 3, 4, 5]


def test_a_corrupt_line_before_the_last_is_an_error_naming_it(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(runlog.RunError, match=r"metrics.jsonl:2 is not JSON"):
        runlog.Recorder(_config(), str(tmp_path), restored_step=2, main=True)


def _events(logdir):
    """Every Event of the TFRecord files in ``logdir`` (record: u64 length, u32 crc, data,
    u32 crc), parsed with the Event message of TensorBoard's proto."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            out.append(ev)
            i += 12 + n + 4
    return out


def test_tensorboard_scalars_per_stage_and_purge_on_resume(tmp_path):
    wd = str(tmp_path)
    rec = runlog.Recorder(_config(tensorboard=True), wd, restored_step=0, main=True)
    rec.write(_row("stage2", 7, 3, 1.25))
    rec.close()
    scalars = {(v.tag, ev.step): v.simple_value for ev in _events(tmp_path / "tensorboard")
               for v in ev.summary.value}
    assert scalars[("stage2/loss", 7)] == 1.25
    assert scalars[("stage2/tokens_per_s", 7)] == 500.0
    assert scalars[("stage2/lr/connector", 7)] == pytest.approx(1e-4)
    assert not any(tag.endswith("/mfu") for tag, _ in scalars)  # null: not plotted

    runlog.Recorder(_config(tensorboard=True), wd, restored_step=5, main=True).close()
    starts = [ev.step for ev in _events(tmp_path / "tensorboard")
              if ev.HasField("session_log") and ev.session_log.status == ev.session_log.START]
    assert starts == [6]  # TensorBoard drops the earlier file's steps >= 6


def test_wandb_asked_for_but_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(runlog.RunError, match=r"log.wandb='probe'.*pip install wandb"):
        runlog.Recorder(_config(wandb="probe"), str(tmp_path), restored_step=0, main=False)


@pytest.mark.parametrize("kind,peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("TPU v4", 275e12), ("TPU v4 lite", None),
    ("TPU v5 lite", 197e12), ("TPU v5", 459e12), ("TPU v6 lite", 918e12), ("cpu", None)])
def test_peak_flops_by_device_kind(kind, peak):
    assert runlog.peak_flops(kind) == peak
    assert runlog.peak_flops(kind, peak_tflops=2.5) == 2.5e12


def test_mfu():
    # 8 devices of 100 TFLOP/s; 2.4e15 FLOP per step in 6 s: 0.4e15 FLOP/s of 0.8e15
    assert runlog.mfu(2.4e15, 6.0, 8, 100e12) == pytest.approx(0.5)
    assert runlog.mfu(2.4e15, 6.0, 8, None) is None
    assert runlog.mfu(None, 6.0, 8, 100e12) is None
