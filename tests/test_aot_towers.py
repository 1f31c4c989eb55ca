"""The 7B-tower dry run (``benchmarks/memory.py --tower-7b``): the tower's size counted by hand,
and (slow) a shallow copy of the probe compiled on a mesh of 8 fake devices."""

import json
import os
import subprocess
import sys

import pytest

from cambrian import aot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import memory  # noqa: E402


def _tower_params() -> int:
    """DINOv3 ViT-7B/16 as built here, counted from its published shape: SwiGLU blocks without
    q/k/v bias, layer scale, 4 registers, CLS, a 14 x 14 (+ CLS) position table."""
    c, f, depth, p = 4096, 8192, 40, 16
    block = (3 * c * c            # q, k, v (no bias)
             + c * c + c          # out projection
             + c * 2 * f + 2 * f  # SwiGLU fc1 (gate and value halves)
             + f * c + c          # fc2
             + 4 * c + 2 * c)     # two LayerNorms, two layer scales
    stem = p * p * 3 * c + c + (14 * 14 + 1) * c + c + 4 * c
    return depth * block + stem + 2 * c  # + final norm


def test_7b_probe_shapes_and_bytes():
    c = memory.tower_7b_config(grad_accum=8)
    r = aot.dry_run(c, lower=False, stage="stage2",
                    vocab_size=aot.KNOWN_LLMS[memory.LLAMA3_8B]["vocab_size"])
    n = _tower_params()
    assert 6.70e9 < n < 6.73e9  # DINOv3 reports 6,716M (with RoPE instead of a position table)
    assert r["params"]["frozen"] == n
    # frozen bf16 tower (2 bytes), trained fp32 LLM + connector (4 bytes), one device
    assert r["per_device_bytes"]["params"] == 2 * n + 4 * r["params"]["trainable"]


@pytest.mark.slow
def test_shallow_7b_probe_compiles_on_8_devices(tmp_path):
    """One tower block (full width) + one decoder layer, batch 8 of 256 tokens, fsdp=8."""
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import memory\n"
        "from cambrian import aot\n"
        "c = memory.tower_7b_config(1)\n"
        "c.stages.stage2.batch_size = 8; c.model.max_len = 256\n"
        "r = aot.dry_run(aot.shallow_config(c, 1, 0, 1), stage='stage2', vocab_size=128256)\n"
        "print(json.dumps(r))\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    assert r["per_device_bytes"]["activations"] > 0 and r["flops_per_device"] > 0
