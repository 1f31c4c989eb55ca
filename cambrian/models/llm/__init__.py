"""Flax LLMs for the language side of a probe: the Llama family (Llama-2/3, Vicuna, Yi, Mistral,
Qwen2) with HF checkpoint conversion both ways, a KV cache and batched generation.

    from cambrian.models import llm
    model = llm.load(checkpoint_dir)              # family from config.json
    logits = model(token_ids)                     # int32[B, T] -> float32[B, T, V]
    out = llm.generate(model, prompts, max_new_tokens=32, eos_id=2)
    llm.save_hf(model, out_dir)
"""

from cambrian.models.llm.generate import bucket, generate, generate_from_embeds
from cambrian.models.llm.llama import (
    KVCache,
    Llama,
    LlamaConfig,
    constrain,
    init_cache,
    load,
    read_hf_config,
    save_hf,
)

__all__ = [
    "KVCache", "Llama", "LlamaConfig", "bucket", "constrain", "generate", "generate_from_embeds",
    "init_cache", "load", "read_hf_config", "save_hf",
]
