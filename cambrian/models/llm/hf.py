"""HF checkpoints of Llama-family models, both ways: ``config.json`` <-> ``LlamaConfig`` and
safetensors (single or sharded with an index) <-> ``Llama`` parameters.

    model = load(checkpoint_dir)        # family from config.json
    save_hf(model, out_dir)             # transformers' from_pretrained opens it
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from cambrian.models.llm.llama import MODEL_TYPES, Llama, LlamaConfig
from cambrian.models.weights import CheckpointError, open_checkpoint, take

_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM"}


# ----------------------------------------------------------------------------------------------
# config.json


def config_from_hf(d: dict, **overrides) -> LlamaConfig:
    """The config of an HF ``config.json`` dict (model_type llama|mistral|qwen2).

    Reads both the transformers-5 ``rope_parameters`` and the older ``rope_theta`` +
    ``rope_scaling`` fields. ``overrides`` (e.g. ``dtype="bfloat16"``) replace fields.
    """
    mt = d.get("model_type", "llama")
    if mt not in MODEL_TYPES:
        raise ValueError(f"config.json: model_type {mt!r} is not a Llama-family model; "
                         f"expected one of {MODEL_TYPES}")
    if d.get("hidden_act", "silu") != "silu":
        raise NotImplementedError(f"config.json: hidden_act {d['hidden_act']!r}; only silu")
    if d.get("mlp_bias"):
        raise NotImplementedError("config.json: mlp_bias=true is not supported")
    rp = dict(d.get("rope_parameters") or {})
    theta = rp.pop("rope_theta", d.get("rope_theta", 10000.0))
    scaling = d.get("rope_scaling") or rp or None
    if scaling:
        scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
    window = d.get("sliding_window")
    if mt == "qwen2" and not d.get("use_sliding_window", False):
        window = None
    layer_types = d.get("layer_types")
    if layer_types and len(set(layer_types)) > 1:
        raise NotImplementedError(
            f"config.json: mixed layer_types {sorted(set(layer_types))} (sliding window on "
            "some layers only) is not supported")
    if layer_types and layer_types[0] == "full_attention":
        window = None
    bias = bool(d.get("attention_bias", False)) if mt != "qwen2" else True
    kw = dict(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
        intermediate_size=d["intermediate_size"], num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"],
        num_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
        head_dim=d.get("head_dim") or d["hidden_size"] // d["num_attention_heads"],
        rope_theta=float(theta), rope_scaling=scaling,
        rms_norm_eps=d.get("rms_norm_eps", 1e-6), attention_bias=bias,
        attention_out_bias=bias if mt == "llama" else False,
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        max_position_embeddings=d.get("max_position_embeddings", 4096),
        sliding_window=window, model_type=mt, bos_token_id=d.get("bos_token_id"),
        eos_token_id=d.get("eos_token_id"), pad_token_id=d.get("pad_token_id"))
    kw.update(overrides)
    return LlamaConfig(**kw)


def config_to_hf(config: LlamaConfig) -> dict:
    """The HF ``config.json`` dict of ``config`` (``save_hf`` writes it)."""
    c = config
    if c.model_type == "llama" and c.attention_bias != c.attention_out_bias:
        raise ValueError("HF llama has one attention_bias for q/k/v/o; this config has "
                         f"attention_bias={c.attention_bias}, "
                         f"attention_out_bias={c.attention_out_bias}")
    if c.model_type == "qwen2" and not c.attention_bias:
        raise ValueError("HF qwen2 always has q/k/v biases; set attention_bias=True")
    rope = {"rope_type": "default", **(c.rope_scaling or {}), "rope_theta": c.rope_theta}
    d = {
        "architectures": [_ARCHITECTURES[c.model_type]], "model_type": c.model_type,
        "hidden_act": "silu", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim, "rms_norm_eps": c.rms_norm_eps,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "rope_parameters": rope, "rope_theta": c.rope_theta,
        "rope_scaling": dict(c.rope_scaling) if c.rope_scaling else None,
        "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id, "dtype": c.param_dtype,
    }
    if c.model_type == "llama":
        d["attention_bias"] = c.attention_bias
        d["mlp_bias"] = False
    else:
        d["sliding_window"] = c.sliding_window
        if c.model_type == "qwen2":
            d["use_sliding_window"] = c.sliding_window is not None
            d["max_window_layers"] = 0
    return d


def read_hf_config(checkpoint_dir: str) -> dict:
    """The ``config.json`` dict of an HF checkpoint directory (for ``config_from_hf``)."""
    path = os.path.join(os.fspath(checkpoint_dir), "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"{path} not found: an HF LLM checkpoint directory needs its "
                              "config.json next to the safetensors files")
    with open(path) as fh:
        return json.load(fh)


# ----------------------------------------------------------------------------------------------
# Weights (both directions share one name table).


class _Entry(NamedTuple):
    param: nnx.Param
    hf_name: str
    hf_shape: tuple[int, ...]
    kind: str  # how the HF [out, in] tensor maps to ours: copy | t (transpose) | qkv | o | bias


def _table(model: Llama) -> list[_Entry]:
    c = model.config
    d, f, h, k, e, v = (c.hidden_size, c.intermediate_size, c.num_heads, c.num_kv_heads,
                        c.head_dim, c.vocab_size)
    rows = [_Entry(model.embedding, "model.embed_tokens.weight", (v, d), "copy"),
            _Entry(model.norm.weight, "model.norm.weight", (d,), "copy")]
    if not c.tie_word_embeddings:
        rows.append(_Entry(model.lm_head, "lm_head.weight", (v, d), "t"))
    for i, layer in enumerate(model.layers):
        p, a = f"model.layers.{i}.", layer.attn
        rows += [
            _Entry(layer.input_norm.weight, p + "input_layernorm.weight", (d,), "copy"),
            _Entry(layer.post_attn_norm.weight, p + "post_attention_layernorm.weight", (d,),
                   "copy"),
            _Entry(a.q, p + "self_attn.q_proj.weight", (h * e, d), "qkv"),
            _Entry(a.k, p + "self_attn.k_proj.weight", (k * e, d), "qkv"),
            _Entry(a.v, p + "self_attn.v_proj.weight", (k * e, d), "qkv"),
            _Entry(a.o, p + "self_attn.o_proj.weight", (d, h * e), "o"),
            _Entry(layer.mlp.gate, p + "mlp.gate_proj.weight", (f, d), "t"),
            _Entry(layer.mlp.up, p + "mlp.up_proj.weight", (f, d), "t"),
            _Entry(layer.mlp.down, p + "mlp.down_proj.weight", (d, f), "t"),
        ]
        if c.attention_bias:
            rows += [_Entry(a.q_bias, p + "self_attn.q_proj.bias", (h * e,), "bias"),
                     _Entry(a.k_bias, p + "self_attn.k_proj.bias", (k * e,), "bias"),
                     _Entry(a.v_bias, p + "self_attn.v_proj.bias", (k * e,), "bias")]
        if c.attention_out_bias:
            rows.append(_Entry(a.o_bias, p + "self_attn.o_proj.bias", (d,), "copy"))
    return rows


def _to_ours(x: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "t":
        return x.T
    if kind == "qkv":  # [N*E, D] -> [D, N, E]
        return x.T.reshape(shape)
    if kind == "o":  # [D, H*E] -> [H, E, D]
        return x.T.reshape(shape)
    return x.reshape(shape)


def _to_hf(x: np.ndarray, kind: str, hf_shape: tuple[int, ...]) -> np.ndarray:
    if kind in ("t", "qkv", "o"):
        return x.reshape(-1, x.shape[-1]).T if kind == "o" else x.reshape(x.shape[0], -1).T
    return x.reshape(hf_shape)


def load(checkpoint_dir: str, *, dtype: str = "float32", param_dtype: str = "float32",
         hf_config: dict | None = None, **overrides) -> Llama:
    """A Llama-family model from an HF checkpoint directory (config.json + safetensors).

    Sharded checkpoints (``model.safetensors.index.json``) are read through the index; tensors
    stream one at a time into the parameter tree. ``dtype`` is the compute dtype,
    ``param_dtype`` the weight dtype; ``hf_config`` replaces the directory's ``config.json``
    (e.g. the Llama inside a multimodal checkpoint); ``overrides`` replace ``LlamaConfig``
    fields. A ``vocab_size`` override below the checkpoint's keeps the first rows of the
    embedding and output (transformers' ``resize_token_embeddings`` to a smaller tokenizer).
    """
    config = config_from_hf(hf_config or read_hf_config(checkpoint_dir), dtype=dtype,
                            param_dtype=param_dtype, **overrides)
    reader = open_checkpoint(checkpoint_dir)
    # Abstract first: the only real arrays ever allocated are the converted checkpoint tensors.
    model = nnx.eval_shape(lambda: Llama(config, rngs=nnx.Rngs(0)))
    v = config.vocab_size
    for entry in _table(model):
        shape = tuple(entry.param.shape)
        rows = entry.hf_name in ("model.embed_tokens.weight", "lm_head.weight")
        x = take(reader, entry.hf_name, entry.hf_shape,
                 (lambda a: a[:v]) if rows and "vocab_size" in overrides else None)
        entry.param.set_value(jnp.asarray(_to_ours(np.asarray(x), entry.kind, shape), param_dtype))
    return model


def save_hf(model: Llama, out_dir: str, *, dtype: str | None = None,
            max_shard_size: int = 5 * 2**30) -> None:
    """Writes ``model`` as an HF checkpoint (config.json + safetensors) that transformers opens.

    Tensors are stored in ``dtype`` (default: the model's param dtype); checkpoints larger than
    ``max_shard_size`` bytes are split into shards with a ``model.safetensors.index.json``.
    """
    np_dtype = {"float32": np.float32, "float16": np.float16,
                "bfloat16": ml_dtypes.bfloat16}[jnp.dtype(dtype or model.config.param_dtype).name]
    os.makedirs(out_dir, exist_ok=True)
    hf = config_to_hf(model.config)
    hf["dtype"] = jnp.dtype(np_dtype).name
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for entry in _table(model):
        x = np.asarray(jax.device_get(entry.param[...])).astype(np.float32)
        x = np.ascontiguousarray(_to_hf(x, entry.kind, entry.hf_shape).astype(np_dtype))
        if size and size + x.nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][entry.hf_name] = x
        size += x.nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(out_dir, "model.safetensors"), metadata=meta)
    else:
        weight_map, total = {}, 0
        for j, shard in enumerate(shards):
            name = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(out_dir, name), metadata=meta)
            weight_map.update(dict.fromkeys(shard, name))
            total += sum(x.nbytes for x in shard.values())
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as fh:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as fh:
        json.dump(hf, fh, indent=2)
