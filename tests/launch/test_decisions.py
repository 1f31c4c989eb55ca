"""The launcher's decisions without a slice: outcome of a run, steps lost, settings, presets."""

import io
import logging

import pytest

from cambrian import config as C
from cambrian import slices
from cambrian.pod import launch, memory, settings


def _never():
    raise AssertionError("the markers alone decide here")


@pytest.mark.parametrize("exits, workers, healthy, kind, rc", [
    ({0: "0", 1: "0"}, 2, _never, "ok", 0),
    ({0: "143", 1: "143"}, 2, _never, "preempted", 143),
    ({0: "1", 1: "lost"}, 2, _never, "lost", 143),
    ({0: "busy"}, 1, _never, "busy", 3),
    ({0: "1"}, 2, lambda: False, "preempted", 143),  # w1 silent, slice gone
    ({0: "1"}, 2, lambda: True, "detached", 1),  # w1 silent, slice fine: reattach
    ({0: "1", 1: "1"}, 2, lambda: True, "failed", 1),
    ({0: "0", 1: "2"}, 2, lambda: True, "failed", 2),
    ({0: "1", 1: "1"}, 2, lambda: False, "preempted", 143),
])
def test_classify(exits, workers, healthy, kind, rc):
    out = launch.classify(exits, workers, healthy)
    assert (out.kind, out.rc) == (kind, rc), out


def test_watch_counts_steps_over_stages_and_logs_the_steps_a_restart_lost(caplog):
    w = launch.Watch({"stage1": 0, "stage2": 100}, "abc", out=io.StringIO())
    for line in ("[w0] 10:00:00 INFO stage1 step 100 loss 1.0",
                 "[w0] 10:00:01 INFO stage2 step 37 loss 1.0", "@@cambrian-worker 0 exit 143"):
        w.line(line)
    assert w.last_step == 137 and w.exits == {0: "143"}
    with caplog.at_level(logging.WARNING, logger="cambrian.pod"):
        w.line("[w0] config encoders/dinov2.py (0123456789abcdef) -> gs://b/r")
    assert "worker 0 built config 0123456789abcdef, this machine abc" in caplog.text
    w.new_attempt(restart=1)
    assert w.exits == {}
    with caplog.at_level(logging.INFO, logger="cambrian.pod"):
        w.line("[w0] 10:05:00 INFO resuming from gs://b/r step 130 (stage2)")
    assert "restart 1 resumed from step 130; last step logged before it: 137; steps lost: 7" \
        in caplog.text


def test_settings_file_then_environment(tmp_path):
    f = tmp_path / "launch.toml"
    f.write_text('project = "p-file"\nzone = "z-file"\npoll_seconds = 5\n'
                 '[env]\nCAMBRIAN_DATA = "gs://b/data"\nXLA_FLAGS = "--x"\n')
    s = settings.load({"CAMBRIAN_LAUNCH_CONFIG": str(f), "CAMBRIAN_ZONE": "z-env",
                       "CAMBRIAN_DATA": "gs://other/data"})
    assert (s.project, s.zone, s.poll_seconds) == ("p-file", "z-env", 5.0)
    assert s.env == {"CAMBRIAN_DATA": "gs://other/data", "XLA_FLAGS": "--x"}
    f.write_text('projct = "p"\n')
    with pytest.raises(settings.SettingsError, match=r"launch.toml: unknown keys \['projct'\]"):
        settings.load({"CAMBRIAN_LAUNCH_CONFIG": str(f)})


@pytest.mark.parametrize("spec", ["encoders/dinov2.py:v4-128", "connectors/sva.py:v4-128",
                                  "connectors/concat.py:tokens=144,v4-128"])
def test_slice_presets_set_numerics_and_memory_knobs(spec):
    c = C.load(spec)
    s = slices.SLICES["v4-128"]
    assert (c.model.dtype, c.model.encoder_dtype, c.remat) == ("bfloat16", "bfloat16", s.remat)
    assert {n: st.grad_accum for n, st in c.stages.items()} == s.grad_accum
    assert c.save.every == s.save_every and (c.mesh.data, c.mesh.fsdp) == (1, -1)
    assert (c.mesh.tensor, c.sharding) == (s.tensor, "fsdp_tp" if s.tensor > 1 else "fsdp")
    assert c.stages.stage2.batch_size == 512  # the protocol's batch, in microbatches
    plain = C.load(spec.replace(",v4-128", "").replace(":v4-128", ""))
    assert (plain.model.dtype, plain.remat) == ("float32", "none")


def test_slice_arguments_that_conflict_are_errors():
    with pytest.raises(C.ConfigError, match="runlocal and v4-8 exclude each other"):
        C.load("encoders/clip.py:runlocal,v4-8")
    with pytest.raises(C.ConfigError, match="several slices"):
        C.load("connectors/sva.py:v4-128,v5p-128")


def test_memory_advice_names_the_knob_of_the_largest_part():
    r = {"stage": "stage2", "batch_size": 512, "devices": 64, "grad_accum": 2, "remat": "dots",
         "dtype": "float32", "mesh": {"data": 1, "fsdp": 64, "tensor": 1},
         "per_device_gib": {"params": 0.4, "optimizer": 0.8, "gradients": 0.4, "batch": 0.1,
                            "activations": 60.0, "total": 61.3}}
    assert memory.advice(r) == (
        "try --config.stages.stage2.grad_accum=8 (now 2: 4 rows per chip per microbatch); or "
        "--config.remat=full (now dots); or --config.model.dtype=bfloat16 (fp32 masters stay); "
        "or a larger slice, or the config's slice preset (:v4-128, :v5p-128; README)")
    r["per_device_gib"].update(params=9.0, optimizer=18.0, gradients=9.0, activations=5.0)
    assert memory.advice(r).startswith("the weights, optimizer state and gradients take 36.0")


def test_memory_estimate_compiles_each_stage_for_the_slice(tiny_config):
    tiny_config.stages.stage1.steps = 0  # stages without steps are not checked
    out = memory.estimate(tiny_config, "v5e-1")  # one chip: this process's one CPU device
    assert [r["stage"] for r in out] == ["stage2"]
    for r in out:
        assert r["method"] == "compiled" and r["fits"] and r["budget_gib"] == 14.4
        g = r["per_device_gib"]
        assert g["total"] == pytest.approx(g["params"] + g["optimizer"] + g["batch"]
                                           + g["activations"], abs=0.02)
        assert r["flops_per_device"] > 0 and r["step_seconds_estimate"] is not None
