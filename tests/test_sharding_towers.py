"""Vision towers sharded over the mesh like the LLM, and rematerialised blocks.

The 7B-structured tower is DINOv3 ViT-7B/16's block (``aot.KNOWN_TOWERS``: width 4096, 32 heads
of 128, SwiGLU 8192, 4 registers) at depth 2; the fast case scales width and MLP by 1/4 (32 heads
of 32). Its features on one device and on (fsdp=4, tensor=2) of 8 fake CPU devices (``fsdp_tp``:
``embed`` over fsdp, ``heads`` / ``mlp`` over tensor) must agree to a relative error of 1e-5:
only the reduction order differs (the embed / heads / mlp contractions are split across devices);
a misrouted shard or a missing reduction gives errors of order 1.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian import aot
from cambrian.models.encoders import common, vit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, IMAGE = 8, 64  # 4 x 4 patches + CLS + 4 registers per image


def _tower_config(scale: int) -> vit.ViTConfig:
    spec = dict(aot.KNOWN_TOWERS["dinov3-7b/16"][1])
    spec.update(depth=2, image_size=IMAGE, pos_size=IMAGE // spec["patch"],
                width=spec["width"] // scale, mlp_dim=spec["mlp_dim"] // scale)
    return vit.ViTConfig(**spec).check()


def _run_worker(scale: int, tmp_path) -> dict:
    out = str(tmp_path / f"tower{scale}.npz")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-m", "tests.test_sharding_towers", out, str(scale)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = dict(np.load(out))
    res["meta"] = json.loads(str(res["meta"]))
    return res


def _check(res: dict, scale: int) -> None:
    cfg = _tower_config(scale)
    one, eight = res["one"], res["eight"]
    assert one.shape == (BATCH, IMAGE // 16, IMAGE // 16, cfg.width)
    assert np.isfinite(one).all() and np.abs(one).mean() > 0.1  # real features, not zeros
    rel = np.linalg.norm(eight - one) / np.linalg.norm(one)
    assert rel <= 1e-5, rel
    shards = res["meta"]["shard_shapes"]
    c, h, d, f = cfg.width, cfg.heads, cfg.width // cfg.heads, cfg.mlp_dim
    # the weights really were split: embed over fsdp=4, heads / mlp over tensor=2
    assert shards["blocks.0.attn.q.kernel"] == [c // 4, h // 2, d]
    assert shards["blocks.0.attn.out.kernel"] == [h // 2, d, c // 4]
    assert shards["blocks.0.mlp.fc1.kernel"] == [c // 4, 2 * f // 2]
    assert shards["blocks.0.mlp.fc2.kernel"] == [f // 2, c // 4]
    # 1/8 of the tower per device, plus the biases of the heads / mlp shards, which are
    # replicated over fsdp (3.9% more at quarter width, 1.0% at full width)
    assert res["meta"]["max_device_param_bytes"] * 8 <= 1.05 * res["meta"]["total_param_bytes"]
    print(f"relative error 1 vs 8 devices: {rel:.2e}; per-device / ideal bytes: "
          f"{res['meta']['max_device_param_bytes'] * 8 / res['meta']['total_param_bytes']:.4f}")


def test_quarter_width_7b_tower_same_features_on_1_and_8_devices(tmp_path):
    _check(_run_worker(4, tmp_path), 4)


@pytest.mark.slow
def test_7b_tower_block_shapes_same_features_on_1_and_8_devices(tmp_path):
    _check(_run_worker(1, tmp_path), 1)


def test_remat_blocks_same_gradients_and_recomputes():
    """``remat_blocks`` changes where activations come from, not the math."""
    tower = common.random_init(vit.VisionTransformer, _tower_config(32), rngs=nnx.Rngs(0))
    gd, state = nnx.split(tower)
    px = jnp.asarray(np.random.RandomState(0).randn(2, IMAGE, IMAGE, 3), jnp.float32)

    def loss(st, remat):
        with common.remat_blocks(remat):
            return jnp.sum(nnx.merge(gd, st)(px)[0] ** 2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    g0, g1 = grad(state, False), grad(state, True)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    # one checkpointed call per block with remat, none without
    jaxpr = jax.make_jaxpr(jax.grad(loss), static_argnums=1)
    assert str(jaxpr(state, True)).count("remat") == 2
    assert "remat" not in str(jaxpr(state, False))


def test_compute_dtype_bf16_with_fp32_weights():
    """A trained tower keeps float32 weights and computes in bfloat16 inside ``compute_dtype``:
    the blocks' activations are bf16, the features float32 and within bf16 rounding of the
    float32 forward (measured 8e-3 relative at width 128; bf16 keeps 8 bits of mantissa)."""
    tower = common.random_init(vit.VisionTransformer, _tower_config(32), rngs=nnx.Rngs(0))
    px = jnp.asarray(np.random.RandomState(0).randn(2, IMAGE, IMAGE, 3), jnp.float32)
    want, out32 = tower(px)
    with common.compute_dtype("bfloat16"):
        got, out16 = tower(px)
    assert tower.blocks[0].attn.q.kernel[...].dtype == jnp.float32
    assert out32["hidden_states"][1].dtype == jnp.float32
    assert out16["hidden_states"][1].dtype == jnp.bfloat16 and got.dtype == jnp.float32
    rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
    assert 1e-4 < rel < 2e-2, rel


# ------------------------------------------------------------------------- subprocess worker


def _worker(out: str, scale: int) -> None:
    from cambrian import sharding

    cfg = _tower_config(scale)
    tower = common.random_init(vit.VisionTransformer, cfg, rngs=nnx.Rngs(0))
    gd, state = nnx.split(tower)
    px = np.random.RandomState(1).randn(BATCH, IMAGE, IMAGE, 3).astype(np.float32)
    feats = jax.jit(lambda st, x: nnx.merge(gd, st)(x)[0])
    one = np.asarray(feats(state, px))

    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:8]).reshape(1, 4, 2), sharding.MESH_AXES)
    rules = sharding.Rules(*sharding.PRESETS["fsdp_tp"])
    shs = sharding.state_shardings(state, mesh, rules)
    placed = jax.tree.map(lambda v, s: v.replace(sharding.put_host_array(np.asarray(v[...]), s)),
                          state, shs, is_leaf=lambda x: isinstance(x, nnx.Variable))
    with rules.activations(mesh):
        eight = np.asarray(feats(placed, sharding.put_batch({"x": px}, mesh)["x"]))
    flat = dict(nnx.to_flat_state(placed))
    shard_shapes = {".".join(map(str, k)): list(v[...].sharding.shard_shape(v.shape))
                    for k, v in flat.items()}
    per_dev = sharding.bytes_per_device(placed)
    meta = {"shard_shapes": shard_shapes, "max_device_param_bytes": max(per_dev.values()),
            "total_param_bytes": sum(x.nbytes for x in jax.tree.leaves(state))}
    np.savez(out, one=one, eight=eight, meta=np.asarray(json.dumps(meta)))


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
