"""Flax LLMs for the language side of a probe: the Llama family (Llama-2/3, Vicuna, Yi, Mistral,
Qwen2) with HF checkpoint conversion both ways, a KV cache and batched generation.

    from cambrian.models import llm
    model = llm.load(checkpoint_dir)              # family from config.json
    logits = model(token_ids)                     # int32[B, T] -> float32[B, T, V]
    out = llm.generate(model, prompts, max_new_tokens=32, eos_id=2)
    llm.save_hf(model, out_dir)

Modules: ``llama`` (config, layers, the training forward), ``decode`` (the cached,
batch-invariant forward generation runs), ``generate`` (the decoding loop), ``hf`` (checkpoints),
``blocks`` (attention kernels and fixed-shape blocking).
"""

from cambrian.models.llm.decode import KVCache, init_cache
from cambrian.models.llm.generate import bucket, generate, generate_from_embeds
from cambrian.models.llm.hf import config_from_hf, config_to_hf, load, read_hf_config, save_hf
from cambrian.models.llm.llama import REMAT_POLICIES, Llama, LlamaConfig
from cambrian.sharding import constrain

__all__ = [
    "KVCache", "Llama", "LlamaConfig", "REMAT_POLICIES", "bucket", "config_from_hf",
    "config_to_hf", "constrain", "generate", "generate_from_embeds", "init_cache", "load",
    "read_hf_config", "save_hf",
]
