"""Two JAX processes x 4 CPU devices (gloo collectives) train like one device.

Each process loads only its half of every batch; the run is the mesh (data=2, fsdp=2, tensor=2)
spanning both processes, with its checkpoint written by both. Loss curves must match the
single-device run to 1e-5 relative, final parameters to 1e-5 relative L2 error per tensor (see
``tests/test_sharding.py`` for why not element-wise).
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from cambrian import config as C
from cambrian import train
from tests.conftest import small

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 20


def tiny(cache_dir):
    c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir, steps=STEPS)
    c.stages.stage1.steps = 0
    c.stages.stage2.batch_size = 8
    c.mesh.update(dict(data=2, fsdp=2, tensor=2))
    c.sharding = "fsdp_tp"
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.multihost
@pytest.mark.xfail(reason="known gap (open): losses match; llm/embedding ends just above 1e-5 "
                   "rel. L2 from the 1-device run", strict=False)
def test_two_processes_equal_one_device(cache_dir, tmp_path):
    port, out = _free_port(), str(tmp_path / "multi.npz")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.test_multihost", str(port), str(i), out, cache_dir,
         str(tmp_path / "run")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for i in range(2)]

    c = tiny(cache_dir)
    c.mesh.update(dict(data=1, fsdp=1, tensor=1))
    ref = train.fit(c, str(tmp_path / "ref"), devices=jax.devices()[:1])

    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]
    got = dict(np.load(out))
    assert int(got["process_count"]) == 2 and int(got["device_count"]) == 8
    np.testing.assert_allclose(got["losses"], ref.losses["stage2"], rtol=1e-5, atol=0)
    want = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
            jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(ref.params))}
    assert set(want) == {k.removeprefix("p/") for k in got if k.startswith("p/")}
    for k, b in want.items():
        a = got[f"p/{k}"]
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b), k


def _worker(port: str, pid: str, out: str, cache_dir: str, workdir: str) -> None:
    from cambrian import distributed, sharding

    distributed.initialize(f"localhost:{port}", 2, int(pid))
    fit = train.fit(tiny(cache_dir), workdir)
    params = sharding.to_host(nnx.to_pure_dict(fit.params))
    if jax.process_index() == 0:
        res = {f"p/{jax.tree_util.keystr(k)}": np.asarray(v)
               for k, v in jax.tree_util.tree_leaves_with_path(params)}
        np.savez(out, losses=np.asarray(fit.losses["stage2"]), process_count=jax.process_count(),
                 device_count=jax.device_count(), **res)
    jax.distributed.shutdown()


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
