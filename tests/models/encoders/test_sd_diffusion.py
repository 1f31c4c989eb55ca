"""Parity of the SD2.1 feature encoder with diffusers (tiny random models, fp32)."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from cambrian.models import encoders  # noqa: E402
from cambrian.models.encoders import layout, preprocess  # noqa: E402
from cambrian.models.encoders import sd_diffusion as sd  # noqa: E402
from cambrian.models.weights import CheckpointError  # noqa: E402

from .utils import forward, nhwc, param_dtypes  # noqa: E402

pytestmark = pytest.mark.parity

T = 250
# SD2.1's layout in miniature: cross-attention blocks with linear projections, a plain last down
# block / first up block, several heads; the VAE has a 2x (not 8x) downsampling.
VAE_KW = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
              down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
              scaling_factor=0.18215, sample_size=32)
UNET_KW = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
               down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
               layers_per_block=1, attention_head_dim=(2, 4, 4), cross_attention_dim=24,
               norm_num_groups=4, use_linear_projection=True, upcast_attention=True)
SCHED_KW = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                steps_offset=1, prediction_type="v_prediction")


def _perturb(model, seed):
    """Moves norm scales/shifts and biases off their 1/0 init so swapped tensors show up; weight
    matrices keep torch's fan-in init, which keeps activations at the O(1) scale of real SD."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def _text_parts(root):
    """A tiny CLIP tokenizer + text encoder in SD's subfolders (empty prompt needs no merges)."""
    tok_dir = os.path.join(root, "tokenizer")
    os.makedirs(tok_dir)
    vocab = {"!": 0, "a": 1, "a</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}
    with open(os.path.join(tok_dir, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(tok_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    tok = transformers.CLIPTokenizer(os.path.join(tok_dir, "vocab.json"),
                                     os.path.join(tok_dir, "merges.txt"), pad_token="!",
                                     model_max_length=8)
    tok.save_pretrained(tok_dir)
    cfg = transformers.CLIPTextConfig(vocab_size=5, hidden_size=24, intermediate_size=48,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      max_position_embeddings=8, bos_token_id=3, eos_token_id=4,
                                      pad_token_id=0, hidden_act="gelu")
    torch.manual_seed(2)
    text = _perturb(transformers.CLIPTextModel(cfg), 3)
    text.save_pretrained(os.path.join(root, "text_encoder"))
    return tok, text


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sd21"))
    torch.manual_seed(0)
    vae = _perturb(diffusers.AutoencoderKL(**VAE_KW), 10)
    unet = _perturb(diffusers.UNet2DConditionModel(**UNET_KW), 11)
    vae.save_pretrained(os.path.join(root, "vae"))
    unet.save_pretrained(os.path.join(root, "unet"))
    sched = diffusers.DDIMScheduler(**SCHED_KW)
    sched.save_pretrained(os.path.join(root, "scheduler"))
    tok, text = _text_parts(root)
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                             scheduler=sched, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    with torch.no_grad():
        prompt = pipe.encode_prompt([""], device="cpu", num_images_per_prompt=1,
                                    do_classifier_free_guidance=False)[0]
    sd.write_empty_prompt_embedding(root)
    enc = sd.load(root, variant="runlocal", noise_seed=7)
    return dict(root=root, vae=vae, unet=unet, sched=sched, prompt=prompt, enc=enc)


def _nchw(x):
    return torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous()


def _pixels(b, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (b, size, size, 3)).astype(np.float32)


def test_empty_prompt_embedding_matches_pipeline(ref):
    ours = np.load(os.path.join(ref["root"], sd.PROMPT_FILE))
    assert ours.shape == (1, 8, 24)
    np.testing.assert_allclose(ours, ref["prompt"].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(ref["enc"].prompt_embedding[...]), ours, atol=0, rtol=0)


def test_vae_latents(ref):
    x = _pixels(2, 32)
    ours = forward(ref["enc"].vae, jnp.asarray(x))
    with torch.no_grad():
        want = ref["vae"].encode(_nchw(x)).latent_dist.mode()
    assert ours.shape == (2, 16, 16, 4)
    np.testing.assert_allclose(np.asarray(ours), nhwc(want), atol=1e-4, rtol=0)


def test_alphas_cumprod_matches_ddim():
    ours = sd.alphas_cumprod(sd.SchedulerConfig())
    want = diffusers.DDIMScheduler(**SCHED_KW).alphas_cumprod.numpy()
    np.testing.assert_allclose(ours, want, atol=1e-6, rtol=0)


def test_unet_output_at_t250(ref):
    g = np.random.default_rng(1)
    x = g.standard_normal((2, 16, 16, 4)).astype(np.float32)
    ctx = g.standard_normal((2, 8, 24)).astype(np.float32)
    eps, out = forward(ref["enc"].unet, jnp.asarray(x), T, jnp.asarray(ctx))
    with torch.no_grad():
        want = ref["unet"](_nchw(x), T, encoder_hidden_states=torch.from_numpy(ctx)).sample
    np.testing.assert_allclose(np.asarray(eps), nhwc(want), atol=1e-4, rtol=0)
    assert [out[f"up_{i}"].shape[-1] for i in range(3)] == [32, 32, 16]


def test_features_match_cambrian_recipe(ref):
    """``sd.reference``: Cambrian's DiffusionVisionTower.extract_features with diffusers."""
    enc = ref["enc"]
    # 36px: latents 18x18 do not halve evenly twice, so the UNet takes the upsample-size path.
    x = _pixels(2, 36, seed=3)
    feats, out = forward(enc, jnp.asarray(x))
    with torch.no_grad():
        want = sd.reference(ref["root"], _nchw(x), enc.config)
        latents = ref["vae"].config.scaling_factor * ref["vae"].encode(_nchw(x)).latent_dist.mode()
        noise = _nchw(enc.noise(18, 18)).expand_as(latents)
        noisy = ref["sched"].add_noise(latents, noise, torch.tensor(T, dtype=torch.long))
    latents, noisy = nhwc(latents), nhwc(noisy)
    assert feats.shape == (2, 9, 9, enc.out_channels) == want.shape
    assert enc.out_channels == 32 + 32 + 16
    np.testing.assert_allclose(np.asarray(out["latents"]), latents, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(out["noisy_latents"]), noisy, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(feats), want, atol=1e-4, rtol=0)

    # One noise map shared by the batch: features do not depend on an image's batch position.
    swapped, _ = forward(enc, jnp.asarray(x[::-1]))
    np.testing.assert_allclose(np.asarray(swapped[::-1]), np.asarray(feats), atol=1e-5, rtol=0)


def test_layer_selects_one_up_block(ref):
    enc = sd.load(ref["root"], variant="runlocal", layer=1)
    assert enc.up_blocks == (1,) and enc.out_channels == 32
    assert ref["enc"].grid == (8, 8)


def test_bfloat16_load_and_no_converted_dir(ref, tmp_path):
    enc = encoders.load("sd_diffusion", ref["root"], variant="runlocal", dtype="bfloat16")
    assert enc.config.dtype == "bfloat16" and param_dtypes(enc) == {jnp.dtype("bfloat16")}
    with pytest.raises(TypeError, match="cannot be rebuilt from a converted directory"):
        layout.save(enc, str(tmp_path), family="sd_diffusion")


def test_cambrian_sd21_feature_size():
    v = sd.VARIANTS["2.1"]
    # Cambrian: 3520 channels (1280 + 1280 + 640 + 320) on 32x32 tokens at 512px.
    assert sd.feature_channels(v["unet"], v["up_blocks"]) == 3520
    assert v["image_size"] // v["patch_size"] == 32 and v["timestep"] == 250


def test_create_runlocal():
    enc = nnx.eval_shape(lambda: sd.create("runlocal", rngs=nnx.Rngs(0)))
    assert enc.out_channels == 80 and enc.grid == (8, 8)


def test_preprocessing_maps_to_minus_one_one():
    spec = sd.preprocessing("2.1")
    assert spec.image_size == 512
    px = np.array([[0, 255, 127.5]], np.float32)[..., None].repeat(3, -1)
    np.testing.assert_allclose(preprocess.normalize(px, spec)[0, :, 0], [-1, 1, 0], atol=1e-6)


def _copy_with(ref, tmp_path, edit, sub="unet"):
    """A copy of the reference checkpoint with ``edit`` applied to ``sub``'s tensors."""
    from safetensors.numpy import load_file, save_file

    root = str(tmp_path / "ckpt")
    shutil.copytree(ref["root"], root)
    path = os.path.join(root, sub, "diffusion_pytorch_model.safetensors")
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)
    return root


def test_legacy_vae_attention_names(ref, tmp_path):
    def rename(t):
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"),
                         ("to_out.0", "proj_attn")):
            for leaf in ("weight", "bias"):
                t[f"encoder.mid_block.attentions.0.{old}.{leaf}"] = t.pop(
                    f"encoder.mid_block.attentions.0.{new}.{leaf}")

    enc = sd.load(_copy_with(ref, tmp_path, rename, sub="vae"), variant="runlocal")
    x = _pixels(1, 16)
    with torch.no_grad():
        want = ref["vae"].encode(_nchw(x)).latent_dist.mode()
    np.testing.assert_allclose(np.asarray(enc.vae(jnp.asarray(x))), nhwc(want), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_unet_conv_projection(ref, tmp_path):
    """SD 1.x layout: Transformer2D proj_in/proj_out are 1x1 convs."""
    root = str(tmp_path / "ckpt")
    shutil.copytree(ref["root"], root)
    shutil.rmtree(os.path.join(root, "unet"))
    torch.manual_seed(4)
    unet = _perturb(diffusers.UNet2DConditionModel(**{**UNET_KW, "use_linear_projection": False}),
                    12)
    unet.save_pretrained(os.path.join(root, "unet"))
    enc = sd.load(root, variant="runlocal")
    g = np.random.default_rng(5)
    x = g.standard_normal((1, 8, 8, 4)).astype(np.float32)
    ctx = g.standard_normal((1, 8, 24)).astype(np.float32)
    eps, _ = forward(enc.unet, jnp.asarray(x), T, jnp.asarray(ctx))
    with torch.no_grad():
        want = unet(_nchw(x), T, encoder_hidden_states=torch.from_numpy(ctx)).sample
    np.testing.assert_allclose(np.asarray(eps), nhwc(want), atol=1e-4, rtol=0)


def test_missing_tensor_is_named(ref, tmp_path):
    name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    root = _copy_with(ref, tmp_path, lambda t: t.pop(name))
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + ".*missing"):
        sd.load(root, variant="runlocal")


def test_misshaped_tensor_is_named(ref, tmp_path):
    name = "down_blocks.0.resnets.0.conv1.weight"

    def edit(t):
        t[name] = t[name][:, :, :2]

    root = _copy_with(ref, tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"conv1\.weight.*\(16, 16, 2, 3\).*\(16, 16, 3, 3\)"):
        sd.load(root, variant="runlocal")


def test_missing_files_are_named(ref, tmp_path):
    root = str(tmp_path / "ckpt")
    shutil.copytree(ref["root"], root)
    os.remove(os.path.join(root, sd.PROMPT_FILE))
    with pytest.raises(CheckpointError, match=sd.PROMPT_FILE):
        sd.load(root, variant="runlocal")
    shutil.rmtree(os.path.join(root, "vae"))
    with pytest.raises(CheckpointError, match=r"vae/config\.json"):
        sd.load(root, variant="runlocal")
    with pytest.raises(CheckpointError, match="not found"):
        sd.load(str(tmp_path / "nowhere"))


SD21_UNET = dict(  # stabilityai/stable-diffusion-2-1 unet/config.json
    sample_size=96, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, norm_num_groups=32,
    norm_eps=1e-5, use_linear_projection=True, upcast_attention=True)
SD21_VAE = dict(  # stabilityai/stable-diffusion-2-1 vae/config.json
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2, norm_num_groups=32, sample_size=768)


@pytest.mark.slow
def test_sd21_variant_has_every_diffusers_tensor():
    """The full-size "2.1" variant asks for exactly SD2.1's tensors (names and shapes)."""
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**SD21_UNET)
        vae = diffusers.AutoencoderKL(**SD21_VAE)
    want_unet = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    want_vae = {k: tuple(v.shape) for k, v in vae.state_dict().items()
                if k.startswith(("encoder.", "quant_conv."))}
    enc = nnx.eval_shape(lambda: sd.create("2.1", rngs=nnx.Rngs(0)))

    def ours(module):
        return {sd._torch_name(p): sd._torch_shape(tuple(v.shape))
                for p, v in nnx.iter_graph(module) if isinstance(v, nnx.Param)}

    got_unet, got_vae = ours(enc.unet), ours(enc.vae)
    # use_linear_projection: proj_in/proj_out are Linear in SD2.1, so no 1x1 squeeze is involved.
    assert got_unet == want_unet
    assert got_vae == want_vae
    assert sum(math.prod(s) for s in got_unet.values()) == 865_910_724  # SD2.1 UNet size
