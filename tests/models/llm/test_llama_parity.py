"""Parity with HF transformers: logits, greedy generation and the HF export, on tiny random
models built from the reference classes and saved with ``save_pretrained``."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from cambrian.models import llm  # noqa: E402

pytestmark = pytest.mark.parity

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
            # Wider than the default 0.02 so logits are spread out and greedy choices decisive.
            initializer_range=0.2)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}

CASES = {
    # name: (config class, model class, extra config fields, save_pretrained kwargs)
    "llama_mha_sharded": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=4),
                          dict(max_shard_size="40KB")),
    "llama3_gqa_bias": ("LlamaConfig", "LlamaForCausalLM",
                        dict(num_key_value_heads=2, rope_theta=500000.0, attention_bias=True,
                             rope_scaling=LLAMA3_ROPE), {}),
    "llama_linear_rope": ("LlamaConfig", "LlamaForCausalLM",
                          dict(num_key_value_heads=2,
                               rope_scaling={"rope_type": "linear", "factor": 4.0}), {}),
    "yi_style": ("LlamaConfig", "LlamaForCausalLM",
                 dict(num_key_value_heads=1, rope_theta=5000000.0, rms_norm_eps=1e-5), {}),
    "mistral_window": ("MistralConfig", "MistralForCausalLM",
                       dict(num_key_value_heads=2, sliding_window=8), {}),
    "qwen2_tied": ("Qwen2Config", "Qwen2ForCausalLM",
                   dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1000000.0),
                   dict(max_shard_size="40KB")),
}


def build_reference(name, path):
    cfg_cls, model_cls, extra, save_kw = CASES[name]
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_cls)(**TINY, **extra)
    ref = getattr(transformers, model_cls)(cfg).eval()
    ref.save_pretrained(path, **save_kw)
    return ref


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    ref = build_reference(request.param, path)
    return request.param, ref, llm.load(str(path)), path


def ref_logits(ref, tokens, attention_mask=None):
    with torch.no_grad():
        kw = {} if attention_mask is None else {"attention_mask": torch.tensor(attention_mask)}
        return ref(torch.tensor(tokens), **kw).logits.numpy()


def test_logits(pair):
    name, ref, model, path = pair
    tokens = np.random.default_rng(0).integers(0, 256, (2, 24))
    want = ref_logits(ref, tokens)
    got = np.asarray(model(jnp.asarray(tokens, jnp.int32)))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4, name
    if name == "llama_mha_sharded":
        assert (path / "model.safetensors.index.json").exists()


def test_greedy_generation_matches_transformers(pair):
    name, ref, model, _ = pair
    rng = np.random.default_rng(1)
    lens = [5, 11, 8]
    t = max(lens)
    ids = np.zeros((3, t), np.int64)
    mask = np.zeros((3, t), np.int64)
    prompts = []
    for r, n in enumerate(lens):
        p = rng.integers(3, 256, n)
        ids[r, t - n:], mask[r, t - n:] = p, 1
        prompts.append(p.tolist())
    with torch.no_grad():
        want = ref.generate(torch.tensor(ids), attention_mask=torch.tensor(mask),
                            max_new_tokens=20, min_new_tokens=20, do_sample=False,
                            pad_token_id=0)[:, t:].numpy().tolist()
    got = llm.generate(model, prompts, max_new_tokens=20, eos_id=None)
    assert got == want, name


def test_save_hf_round_trip(pair, tmp_path):
    name, ref, model, _ = pair
    llm.save_hf(model, str(tmp_path), max_shard_size=30_000)
    assert (tmp_path / "model.safetensors.index.json").exists()
    back = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert type(back) is type(ref)
    tokens = np.random.default_rng(2).integers(0, 256, (2, 16))
    np.testing.assert_array_equal(ref_logits(back, tokens), ref_logits(ref, tokens))
    again = llm.load(str(tmp_path))
    assert again.config == model.config


def test_config_from_hf_reads_both_rope_formats():
    legacy = dict(model_type="llama", vocab_size=8, hidden_size=8, intermediate_size=8,
                  num_hidden_layers=1, num_attention_heads=2, rope_theta=500000.0,
                  rope_scaling=dict(LLAMA3_ROPE))
    new = dict(legacy, rope_scaling=None, rope_theta=None,
               rope_parameters=dict(LLAMA3_ROPE, rope_theta=500000.0))
    a, b = llm.config_from_hf(legacy), llm.config_from_hf(new)
    assert a == b and a.rope_theta == 500000.0 and a.rope_scaling["factor"] == 8.0


def test_missing_tensor_names_the_tensor(tmp_path):
    from safetensors.numpy import load_file, save_file

    build_reference("yi_style", tmp_path)
    sd = load_file(str(tmp_path / "model.safetensors"))
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        llm.load(str(tmp_path))
