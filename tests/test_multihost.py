"""Two JAX processes x 4 CPU devices (gloo collectives) train like one device.

Each process loads only its half of every batch; the run is the mesh (data=2, fsdp=2, tensor=2)
spanning both processes, with its checkpoint written by both. It is held to the single-device
run as ``tests/test_sharding.py`` holds a mesh: first gradients and loss curve to 1e-5, final
parameters to 1e-5 or the 1-device run's own fp32 noise floor (that file says why). Process 0
alone logs progress and writes the run record; process 1 logs warnings only.
"""

import json
import logging
import os
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from cambrian import config as C
from cambrian import train
from tests.conftest import small, start_processes
from tests.test_sharding import assert_same_training, first_gradients

STEPS = 20


def tiny(cache_dir):
    c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir, steps=STEPS)
    c.stages.stage1.steps = 0
    c.stages.stage2.batch_size = 8
    c.mesh.update(dict(data=2, fsdp=2, tensor=2))
    c.sharding = "fsdp_tp"
    return c


@pytest.mark.multihost
def test_two_processes_equal_one_device(cache_dir, tmp_path):
    out = str(tmp_path / "multi.npz")
    procs = start_processes("tests.test_multihost", [[out, cache_dir, str(tmp_path / "run")]] * 2,
                            devices=4)

    runs = {}
    for name, accum in (("one", 1), ("one_accum2", 2)):
        c = tiny(cache_dir)
        c.mesh.update(dict(data=1, fsdp=1, tensor=1))
        c.stages.stage2.grad_accum = accum
        with first_gradients() as grads:
            fit = train.fit(c, str(tmp_path / name), devices=jax.devices()[:1])
        runs[name] = {"losses": np.asarray(fit.losses["stage2"]), "grads": grads,
                      "params": {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                                 jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(fit.params))}}

    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    got = dict(np.load(out))
    assert int(got["process_count"]) == 2 and int(got["device_count"]) == 8
    multi = {"losses": got["losses"],
             **{part: {k.split("/", 1)[1]: v for k, v in got.items() if k.startswith(f"{part[0]}/")}
                for part in ("grads", "params")}}
    assert_same_training(multi, runs["one"], runs["one_accum2"])

    # logs: INFO from process 0 only; process 1's warnings name it
    assert " INFO mesh " in logs[0] and f" INFO stage2 step {STEPS} loss " in logs[0]
    assert " INFO " not in logs[1], logs[1][-2000:]
    assert "WARNING [process 1] probe" in logs[1] and "WARNING probe" in logs[0]
    # the record: written once, by process 0, with the losses both processes saw
    with open(os.path.join(tmp_path, "run", "metrics.jsonl")) as fh:
        rows = [json.loads(line) for line in fh]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    np.testing.assert_array_equal([r["loss"] for r in rows], got["losses"])


def _worker(port: str, pid: str, out: str, cache_dir: str, workdir: str) -> None:
    from cambrian import distributed, runlog, sharding

    distributed.initialize(f"localhost:{port}", 2, int(pid))
    runlog.setup_logging(jax.process_index())
    logging.getLogger("cambrian").warning("probe")
    with first_gradients() as grads:
        fit = train.fit(tiny(cache_dir), workdir)
    params = sharding.to_host(nnx.to_pure_dict(fit.params))
    if jax.process_index() == 0:
        res = {f"p/{jax.tree_util.keystr(k)}": np.asarray(v)
               for k, v in jax.tree_util.tree_leaves_with_path(params)}
        res.update({f"g/{k}": v for k, v in grads.items()})
        np.savez(out, losses=np.asarray(fit.losses["stage2"]), process_count=jax.process_count(),
                 device_count=jax.device_count(), **res)
    jax.distributed.shutdown()


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
