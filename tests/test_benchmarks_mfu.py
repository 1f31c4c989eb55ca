"""benchmarks/mfu_cambrian.py: the four-tower FLOP formula against torch's own FLOP counter on
the independent PyTorch model, and the --tiny run of both sides."""

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _counter():
    """A dispatch mode summing ``torch.utils.flop_counter``'s per-op formulas (its
    FlopCounterMode's module tracker refuses the towers' no_grad block)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        flops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in flop_registry:
                self.flops += flop_registry[func.overloadpacket](*args, **(kwargs or {}),
                                                                 out_val=out)
            return out

    return Count


def test_four_tower_flops_match_torch_flop_counter(monkeypatch):
    """The formula's forward FLOPs (towers + SVA + LLM) equal what ``torch.utils.flop_counter``
    counts (matmuls, convolutions, attention) on the reference PyTorch model built at the same
    tiny shape, in float32. The counter counts causal attention over all T^2 (query, key)
    pairs, so the LLM's attention is compared as 4 L H E T^2 per row."""
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    import torch

    from benchmarks import mfu, mfu_cambrian, torch_cambrian

    config, model = mfu_cambrian.probe(tiny=True)
    d = mfu_cambrian.dims_of(model)
    b, seq = 2, int(config.model.max_len)
    step, batch = torch_cambrian.make_step(model, b, seq, "cpu")
    net = torch_cambrian.Cambrian(model)
    pixels = [x.float() for x in batch["pixels"]]
    # the math backend: the counter has no formula for the CPU fused-attention kernel
    with (_counter()() as counter, torch.no_grad(),
          torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)):
        net(pixels, batch["tokens"], batch["loss_mask"])
    counted = counter.flops

    llm = d.llm
    forward = (b * sum(t.forward_flops() for t in d.towers)
               + b * mfu_cambrian.sva_forward_flops(d)
               + 2 * llm.llm_matmul_params() * b * seq
               + 4 * llm.L * llm.H * llm.E * b * seq * seq)
    assert forward == counted
    # and the step total is towers once + 3 x (SVA + LLM with causal attention)
    total = mfu_cambrian.model_flops(d, b, seq)["total"]
    causal = mfu.model_flops(llm, b, seq)
    assert total == (b * sum(t.forward_flops() for t in d.towers)
                     + 3 * b * mfu_cambrian.sva_forward_flops(d)
                     + causal["llm_dense"] + causal["llm_attention"])
    assert len(d.towers) == 4 and {t.kind for t in d.towers} == {"vit", "convnext"}


@pytest.mark.slow
def test_tiny_run_both_sides(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHONPATH=ROOT)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "mfu_cambrian.py"), "--tiny",
         "--rounds", "1", "--steps", "2", "--warmup", "1", "--peak-tflops", "1"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for k in ("mfu", "speedup_vs_torch", "step_s", "torch_step_s", "device", "versions"):
        assert k in out, k
    for k in ("mfu", "speedup_vs_torch", "step_s", "torch_step_s"):
        assert math.isfinite(out[k]) and out[k] > 0, (k, out[k])
    assert math.isfinite(out["torch"]["loss"]) and out["ours"]["tried"][0]["loss"] > 0
    assert out["versions"]["torch"] and out["versions"]["jax"]
    assert json.loads((tmp_path / "mfu_cambrian.json").read_text()) == out
