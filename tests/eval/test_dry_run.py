"""``eval/dry_run.py``'s exact byte counts, against hand-derived sizes and the real KV cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cambrian.eval import dry_run, runner
from cambrian.models.llm import decode, llama


def test_param_bytes_and_the_eval_copy_of_a_bf16_run():
    f32, bf16 = jnp.float32, jnp.bfloat16
    state = {"llm": {"w": jax.ShapeDtypeStruct((2, 3), f32),
                     "ids": jax.ShapeDtypeStruct((5,), jnp.int32)},
             "encoders": {"w": jax.ShapeDtypeStruct((4,), bf16)}}
    assert dry_run.param_bytes(state) == {"llm": {"float32": 24, "int32": 20},
                                          "encoders": {"bfloat16": 8}}
    copy = jax.eval_shape(lambda s: runner._llm_in_compute_dtype(s, "bfloat16"), state)
    # the LLM's floating-point weights halve; integers and the towers stay as stored
    assert dry_run.param_bytes(copy) == {"llm": {"bfloat16": 12, "int32": 20},
                                         "encoders": {"bfloat16": 8}}


def test_kv_cache_bytes_match_the_decoders_cache():
    cfg = llama.LlamaConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=3,
                            num_heads=4, num_kv_heads=2, head_dim=8, dtype="bfloat16")
    cache_len, nbytes = dry_run.kv_cache_bytes(3, 2, 8, rows=5, prompt=70, new=33,
                                               dtype="bfloat16")
    assert cache_len == 128  # 103 rounded up to whole 64-key blocks
    real = decode.init_cache(cfg, 5, cache_len)
    assert nbytes == sum(x.nbytes for x in (*real.k, *real.v))
