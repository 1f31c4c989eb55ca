"""Meshes, logical-axis rules, and sharded training equal to one device.

The equality test trains the runlocal probe 20 steps on 1 device and on the meshes (data=8),
(fsdp=8) and (data=2, fsdp=2, tensor=2) of 8 fake CPU devices, in a subprocess because the device
count must be set before JAX starts. Errors are relative, per tensor: ||a - b|| / ||b||.

* The first step's gradients must agree to 1e-5 (measured <= 6e-7: only the reduction order
  differs -- each device sums its rows, the all-reduce adds the partial sums, ``tensor`` splits
  the mlp/heads/vocab contractions).
* The 20-step loss curves must agree to 1e-5 (measured <= 3e-7).
* The final parameters must agree to 1e-5, or to within NOISE_FACTOR x the fp32 noise floor of
  the 1-device run itself: the largest error between it and the same 1-device run whose batch
  gradient is summed as two microbatches (``grad_accum=2``, same math, another summation order).

Why the floor: Adam normalises every element, u = m_hat / (sqrt(v_hat) + eps), so an element whose
gradient is a near-cancelling sum moves by a visibly different amount when the last bits of its
summands change. Measured: one ``attn/v`` element's first gradient is 2.1e-7 on 1 device and
2.0e-7 on (data=8) (the tensor's typical element is 1e-2); its first update differs by 1.5e-5,
which alone is 1.7e-5 of the tensor's norm; the perturbed weights then shift every later gradient
(by up to 8e-5 at step 2) and the runs separate by ~1e-5 everywhere. One device with
``grad_accum=2`` already ends 2.0e-5 from ``grad_accum=1`` (1.9e-5 after the first step); the
meshes end 1.6e-5 (data=8, fsdp=8) and 2.8e-5 ((2, 2, 2)) away. A sharding bug (a missing or
doubled reduction, a misrouted shard, a wrong normalisation) moves parameters by >= 1e-3 and
shows in the first gradients and the loss curve as well.
"""

import contextlib
import os
import subprocess
import sys

import jax
import ml_collections as mlc
import numpy as np
import optax
import pytest
from flax import nnx

from cambrian import sharding, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (data, fsdp, tensor, preset); "one_accum2" is "one" with grad_accum=2 (the noise floor);
# "d2f2t2_chunk" is "d2f2t2" with the chunked cross-entropy (vocab split over `tensor`)
MESHES = {"one": (1, 1, 1, "fsdp"), "one_accum2": (1, 1, 1, "fsdp"), "data8": (8, 1, 1, "dp"),
          "fsdp8": (1, 8, 1, "fsdp"), "d2f2t2": (2, 2, 2, "fsdp_tp"),
          "d2f2t2_chunk": (2, 2, 2, "fsdp_tp")}
LOSS_CHUNK = 24  # positions per piece in "d2f2t2_chunk" (the runlocal rows hold 128)
STEPS = 20


def mesh_cfg(data=-1, fsdp=1, tensor=1, dcn=(1, 1, 1)):
    return mlc.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor,
                           "dcn": dict(zip(sharding.MESH_AXES, dcn))})


def test_mesh_shape_infers_and_rejects():
    assert sharding.mesh_shape(mesh_cfg(-1, 2, 1), 8) == ([4, 2, 1], [1, 1, 1])
    assert sharding.mesh_shape(mesh_cfg(1, -1, 2, dcn=(2, 1, 1)), 16) == ([1, 4, 2], [2, 1, 1])
    with pytest.raises(ValueError, match="needs 16 devices, 8 are available"):
        sharding.mesh_shape(mesh_cfg(2, 8, 1), 8)
    with pytest.raises(ValueError, match="at most one axis may be -1"):
        sharding.mesh_shape(mesh_cfg(-1, -1, 1), 8)
    with pytest.raises(ValueError, match="does not divide 8 devices"):
        sharding.mesh_shape(mesh_cfg(-1, 3, 1), 8)
    mesh = sharding.make_mesh(mesh_cfg(), jax.devices()[:1])
    assert dict(mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}


def test_logical_spec_rules():
    mesh = jax.sharding.AbstractMesh((2, 4, 2), sharding.MESH_AXES)
    w, _ = sharding.PRESETS["fsdp_tp"]
    P = jax.sharding.PartitionSpec
    assert sharding.logical_spec(("embed", "mlp"), (64, 128), mesh, w) == P("fsdp", "tensor")
    # 6 does not divide over fsdp=4: replicated rather than unevenly split
    assert sharding.logical_spec(("embed", "mlp"), (6, 128), mesh, w) == P(None, "tensor")
    # one mesh axis is used once per array
    assert sharding.logical_spec(("heads", "mlp"), (4, 8), mesh, w) == P("tensor", None)
    assert sharding.logical_spec(("batch", "embed"), (8, 64), mesh,
                                 {"batch": sharding.BATCH}) == P(("data", "fsdp"), None)


def test_rules_from_config_overrides_and_errors():
    c = mlc.ConfigDict({"sharding": "fsdp", "sharding_rules": (("vocab", "tensor"),)})
    r = sharding.Rules.from_config(c)
    assert r.params == {"embed": "fsdp", "vocab": "tensor"} and r.acts == {"batch": sharding.BATCH}
    c.sharding_rules = (("vocab", "model"),)
    with pytest.raises(ValueError, match="mesh axes are"):
        sharding.Rules.from_config(c)
    c.sharding = "zero3"
    with pytest.raises(ValueError, match="not a preset"):
        sharding.Rules.from_config(c)


@pytest.fixture(scope="module")
def mesh_runs(tmp_path_factory, cache_dir):
    out = str(tmp_path_factory.mktemp("meshes") / "runs.npz")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "tests.test_sharding", out, cache_dir],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(out))


# ------------------------------------------------------------------------- shared comparison

NOISE_FACTOR = 3  # the floor is one sample; meshes have ended up to 1.8x above it


def rel_errors(got: dict, want: dict) -> dict:
    """{name: ||a - b|| / ||b||} over the names of ``want``."""
    assert set(got) == set(want), sorted(set(got) ^ set(want))[:5]
    return {k: float(np.linalg.norm(got[k] - b) / max(np.linalg.norm(b), 1e-30))
            for k, b in want.items()}


@contextlib.contextmanager
def first_gradients():
    """While active, ``train.fit`` keeps its first step's clipped gradient of every trained
    parameter, read back from Adam's first moment (mu = (1 - b1) g after one step); yields
    {param keystr: array}."""
    grads: dict[str, np.ndarray] = {}
    make = train.make_train_step

    def recording(*args, **kwargs):
        step = make(*args, **kwargs)

        def run(trainable, frozen, opt_state, batch):
            trainable, opt_state, metrics = step(trainable, frozen, opt_state, batch)
            if not grads:
                is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)  # noqa: E731
                (adam,) = [s for s in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(s)]
                mu = sharding.to_host(nnx.to_pure_dict(adam.mu))
                grads.update({jax.tree_util.keystr(p): np.asarray(v)
                              for p, v in jax.tree_util.tree_leaves_with_path(mu)})
            return trainable, opt_state, metrics

        return run

    train.make_train_step = recording
    try:
        yield grads
    finally:
        train.make_train_step = make


def assert_same_training(got: dict, want: dict, floor_run: dict) -> None:
    """``got`` / ``want`` / ``floor_run``: {"losses", "grads", "params"} of a run, the 1-device
    reference and the reference's grad_accum=2 twin (see the module docstring)."""
    assert len(want["params"]) > 30 and len(want["grads"]) > 20  # every tensor, every trained one
    assert len(want["losses"]) > 1 and np.all(np.isfinite(want["losses"]))
    assert want["losses"][-1] < want["losses"][0]
    np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-5, atol=0)
    for k, err in rel_errors(got["grads"], want["grads"]).items():
        assert err <= 1e-5, ("first gradient", k, err)
    floor = max(rel_errors(floor_run["params"], want["params"]).values())
    tol = max(1e-5, NOISE_FACTOR * floor)
    for k, err in rel_errors(got["params"], want["params"]).items():
        assert err <= tol, ("final params", k, err, f"noise floor {floor:.2e}")


# ------------------------------------------------------------------------- mesh equality


def _run(runs: dict, name: str) -> dict:
    return {part: {k.split("/", 2)[2]: v for k, v in runs.items()
                   if k.startswith(f"{name}/{part[0]}/")} for part in ("grads", "params")} | {
        "losses": runs[f"{name}/losses"]}


@pytest.mark.parametrize("name", [m for m in MESHES if m not in ("one", "one_accum2")])
def test_sharded_training_equals_one_device(mesh_runs, name):
    assert_same_training(_run(mesh_runs, name), _run(mesh_runs, "one"),
                         _run(mesh_runs, "one_accum2"))


def test_params_were_sharded_on_the_mesh(mesh_runs):
    # fsdp8: the LLM MLP kernel's embed dim is split 8 ways; d2f2t2 splits embed 2 x mlp 2
    assert tuple(mesh_runs["fsdp8/shard_shape"]) == (8, 128)
    assert tuple(mesh_runs["d2f2t2/shard_shape"]) == (32, 64)
    assert tuple(mesh_runs["data8/shard_shape"]) == (64, 128)


def test_checkpoint_restores_onto_another_mesh(mesh_runs):
    """The fsdp8 run's final checkpoint, restored onto the (2, 2, 2) mesh, is the same bits."""
    assert mesh_runs["restore/shard_shape"].tolist() == [32, 64]
    assert bool(mesh_runs["restore/equal"])


# ------------------------------------------------------------------------- subprocess worker


def _worker(out: str, cache_dir: str) -> None:
    from cambrian import checkpoint
    from cambrian import config as C
    from tests.conftest import small

    res = {}
    for name, (d, f, t, preset) in MESHES.items():
        c = small(C.load("encoders/dinov2.py:runlocal"), cache_dir, steps=STEPS)
        c.stages.stage1.steps = 0
        c.stages.stage2.batch_size = 8
        c.stages.stage2.grad_accum = 2 if name == "one_accum2" else 1
        c.mesh.update(dict(data=d, fsdp=f, tensor=t))
        c.sharding = preset
        c.loss_chunk = LOSS_CHUNK if name.endswith("_chunk") else 0
        wd = os.path.join(os.path.dirname(out), name)
        with first_gradients() as grads:
            fit = train.fit(c, wd, devices=jax.devices()[:d * f * t])
        res.update({f"{name}/g/{k}": v for k, v in grads.items()})
        res[f"{name}/losses"] = np.asarray(fit.losses["stage2"])
        gate = fit.params["llm"]["layers"][0]["mlp"]["gate"]
        res[f"{name}/shard_shape"] = np.asarray(gate.sharding.shard_shape(gate.shape))
        for path, x in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(fit.params)):
            res[f"{name}/p/{jax.tree_util.keystr(path)}"] = np.asarray(x)
        if name == "d2f2t2":  # restore the fsdp8 checkpoint onto this mesh's shardings
            mngr = checkpoint.manager(os.path.join(os.path.dirname(out), "fsdp8"), 1)
            target = checkpoint.abstract({"params": nnx.to_pure_dict(fit.params)})
            state, _ = checkpoint.restore(mngr, checkpoint.latest(mngr), target)
            g = state["params"]["llm"]["layers"][0]["mlp"]["gate"]
            res["restore/shard_shape"] = np.asarray(g.sharding.shard_shape(g.shape))
            res["restore/equal"] = np.asarray(all(
                np.array_equal(np.asarray(a), res[f"fsdp8/p/{jax.tree_util.keystr(p)}"])
                for p, a in jax.tree_util.tree_leaves_with_path(state["params"])))
    np.savez(out, **res)


if __name__ == "__main__":
    _worker(*sys.argv[1:3])
