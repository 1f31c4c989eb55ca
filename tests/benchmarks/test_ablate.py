"""benchmarks/ablate.py: each switch really changes the compiled step, and a tiny run works."""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cambrian.models import llm
from cambrian.models.llm import blocks

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "ablate.py")
_spec = importlib.util.spec_from_file_location("bench_ablate", PATH)
ablate = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ablate
_spec.loader.exec_module(ablate)

CFG = llm.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8)


def _grad_hlo():
    model = llm.Llama(CFG, rngs=nnx.Rngs(0))
    tokens = jnp.ones((2, 8), jnp.int32)
    loss = lambda m, t: jnp.sum(m(t)[..., 0])  # noqa: E731
    return nnx.jit(nnx.grad(loss)).lower(model, tokens).compile().as_text()


def test_rope_switch_leaves_cos_to_the_fusions_and_restores():
    with_change = _grad_hlo().count(" cosine(")
    restore = ablate.switch_off("rope_tables")
    try:
        without = _grad_hlo().count(" cosine(")
    finally:
        restore()
    assert with_change == 1 and without >= 2 * CFG.num_layers
    assert _grad_hlo().count(" cosine(") == 1


def test_attention_switch_is_the_same_function_differentiated_by_jax():
    rng = np.random.default_rng(0)
    q, k, v, do = (jnp.asarray(rng.normal(size=(2, 6, h, 8)), jnp.float32) for h in (4, 2, 2, 4))
    mask = jnp.tril(jnp.ones((6, 6), bool))[None].repeat(2, 0).at[1, 4:].set(False)
    grads = {}
    for side in ("with", "without"):
        restore = ablate.switch_off("attention_backward") if side == "without" else None
        try:
            f = lambda q, k, v: blocks.attend(q, k, v, mask)  # noqa: E731
            o, vjp = jax.vjp(f, q, k, v)
            grads[side] = (o, *vjp(do))
            jaxpr = str(jax.make_jaxpr(f)(q, k, v))
        finally:
            if restore:
                restore()
        assert ("custom_vjp_call" in jaxpr) == (side == "with")
    for a, b in zip(grads["with"], grads["without"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_unknown_change_is_named():
    with pytest.raises(ValueError, match="bogus"):
        ablate.switch_off("bogus")


def test_tiny_paired_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMBRIAN_CACHE", str(tmp_path))
    res = ablate.main(["--change", "rope_tables", "--steps", "2", "--hidden", "64",
                       "--layers", "1", "--batch", "2"])
    assert res["change"] == "rope_tables" and res["steps"] == 2
    assert res["speedup"] > 0 and res["with_step_s"] > 0 and res["without_step_s"] > 0


@pytest.mark.slow  # 20 s: a toy mfu.py model compiled twice
def test_tiny_llm1b_paired_run():
    res = ablate.main(["--change", "attention_backward", "--model", "llm1b", "--tiny",
                       "--remat", "dots", "--steps", "2", "--batch", "2"])
    assert res["model"] == "llm1b" and res["steps"] == 2
    assert res["speedup"] > 0 and res["with_step_s"] > 0 and res["without_step_s"] > 0
