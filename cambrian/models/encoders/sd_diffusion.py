"""Stable Diffusion 2.1 features as a vision encoder (Cambrian's "Diffusion" tower).

The recipe follows Cambrian's ``DiffusionVisionTower.extract_features``:

1. pixels in [-1, 1] -> VAE encoder -> ``latents = scaling_factor * posterior mean``. Cambrian
   takes ``latent_dist.mode()``, the mean of the diagonal Gaussian, so this step is deterministic.
2. ``noisy = sqrt(abar_t) * latents + sqrt(1 - abar_t) * noise`` at ``t = 250`` (DDIM ``add_noise``;
   ``abar`` from the scheduler's "scaled_linear" beta schedule).
3. One UNet pass at ``t`` with the empty-prompt text embedding as cross-attention context.
4. Up-block outputs 0..3 bilinear-resized to ``(H / 16, W / 16)`` and channel-concatenated:
   1280 + 1280 + 640 + 320 = 3520 channels on a 32x32 grid at 512px.

Noise: Cambrian draws ``torch.randn_like(latents)`` on every call, so its features are not
reproducible. Here one noise map float32[1, h, w, 4] is drawn from ``jax.random.key(noise_seed)``
and shared by every image of a batch: features are reproducible and do not depend on the batch.

Checkpoint (diffusers layout, e.g. a local copy of ``stabilityai/stable-diffusion-2-1``)::

    vae/config.json, vae/*.safetensors          AutoencoderKL (only the encoder is read)
    unet/config.json, unet/*.safetensors        UNet2DConditionModel
    scheduler/scheduler_config.json             optional; SD2.1's DDIM settings otherwise
    empty_prompt_embedding.npy                  float32[1, 77, 1024]

The architecture is read from the two ``config.json`` files; the variant supplies the recipe
(resolution, feature stride, timestep, up blocks). ``empty_prompt_embedding.npy`` is what
``StableDiffusionPipeline.encode_prompt([""])`` returns: the CLIP text encoder's last hidden state
for the empty prompt padded to the tokenizer's max length. Produce it once from the checkpoint's
``tokenizer/`` and ``text_encoder/`` (needs torch + transformers, not needed afterwards)::

    python -m cambrian.models.encoders.sd_diffusion /path/to/stable-diffusion-2-1

The VAE encoder and UNet modules live in ``sd_unet``; this module holds the recipe, the variants,
the diffusers config / checkpoint reading and the preprocessing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from cambrian.models.encoders import common
from cambrian.models.encoders.features import resize_grid
from cambrian.models.encoders.preprocess import CLIP_MEAN, HALF, PreprocessSpec
from cambrian.models.encoders.sd_unet import UNet, UNetConfig, VAEConfig, VAEEncoder
from cambrian.models.weights import CheckpointError, open_checkpoint, take

PROMPT_FILE = "empty_prompt_embedding.npy"


# --------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"


# diffusers config fields whose non-default values this implementation does not cover.
_UNET_FIXED = {
    "act_fn": "silu", "center_input_sample": False, "class_embed_type": None,
    "addition_embed_type": None, "encoder_hid_dim": None, "time_embedding_type": "positional",
    "time_embedding_dim": None, "time_embedding_act_fn": None, "timestep_post_act": None,
    "time_cond_proj_dim": None, "resnet_time_scale_shift": "default", "num_attention_heads": None,
    "dual_cross_attention": False, "only_cross_attention": False, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "downsample_padding": 1, "mid_block_scale_factor": 1,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "attention_type": "default",
    "cross_attention_norm": None, "class_embeddings_concat": False,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "reverse_transformer_layers_per_block": None,
}
_VAE_FIXED = {"act_fn": "silu", "shift_factor": None}
_SCHED_FIXED = {"trained_betas": None, "rescale_betas_zero_snr": False}
_DOWN_TYPES = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP_TYPES = ("CrossAttnUpBlock2D", "UpBlock2D")


def _check_fixed(cfg: dict, fixed: dict, source: str) -> None:
    for key, want in fixed.items():
        got = cfg.get(key, want)
        if got != want:
            raise CheckpointError(
                f"{source}: field {key!r} is {got!r}; this implementation supports only {want!r}")


def _per_block(value, n: int, field: str, source: str) -> tuple:
    if isinstance(value, (int, float)):
        return (value,) * n
    if len(value) != n:
        raise CheckpointError(f"{source}: field {field!r} has {len(value)} entries, expected {n}")
    return tuple(value)


def unet_config_from_diffusers(cfg: dict, source: str = "unet/config.json") -> UNetConfig:
    """UNetConfig from a diffusers UNet2DConditionModel config dict; unsupported fields raise."""
    _check_fixed(cfg, _UNET_FIXED, source)
    n = len(cfg["block_out_channels"])
    for field, allowed in (("down_block_types", _DOWN_TYPES), ("up_block_types", _UP_TYPES)):
        bad = [t for t in cfg[field] if t not in allowed]
        if bad:
            raise CheckpointError(f"{source}: {field} contains {bad}; supported: {allowed}")
    kw = {f.name: cfg[f.name] for f in dataclasses.fields(UNetConfig) if f.name in cfg}
    for field in ("block_out_channels", "down_block_types", "up_block_types"):
        kw[field] = tuple(cfg[field])
    kw["attention_head_dim"] = _per_block(cfg["attention_head_dim"], n, "attention_head_dim",
                                          source)
    for field in ("layers_per_block", "cross_attention_dim", "transformer_layers_per_block"):
        if field in cfg:
            vals = _per_block(cfg[field], n, field, source)
            if len(set(vals)) != 1:
                raise CheckpointError(f"{source}: per-block {field} {cfg[field]} is not supported")
            kw[field] = vals[0]
    for c, heads in zip(kw["block_out_channels"], kw["attention_head_dim"]):
        if c % heads:
            raise CheckpointError(f"{source}: {c} channels do not split into {heads} heads")
    return UNetConfig(**kw)


def vae_config_from_diffusers(cfg: dict, source: str = "vae/config.json") -> VAEConfig:
    """VAEConfig from a diffusers ``AutoencoderKL`` config dict; unsupported fields raise."""
    _check_fixed(cfg, _VAE_FIXED, source)
    bad = [t for t in cfg.get("down_block_types", ()) if t != "DownEncoderBlock2D"]
    if bad:
        raise CheckpointError(f"{source}: down_block_types contains {bad}; supported: "
                              "DownEncoderBlock2D")
    kw = {f.name: cfg[f.name] for f in dataclasses.fields(VAEConfig) if f.name in cfg}
    kw["block_out_channels"] = tuple(cfg["block_out_channels"])
    return VAEConfig(**kw)


def scheduler_config_from_diffusers(cfg: dict, source: str) -> SchedulerConfig:
    _check_fixed(cfg, _SCHED_FIXED, source)
    kw = {f.name: cfg[f.name] for f in dataclasses.fields(SchedulerConfig) if f.name in cfg}
    if kw.get("beta_schedule", "scaled_linear") not in ("linear", "scaled_linear"):
        raise CheckpointError(f"{source}: beta_schedule {kw['beta_schedule']!r} is not supported; "
                              "expected 'linear' or 'scaled_linear'")
    return SchedulerConfig(**kw)


def alphas_cumprod(cfg: SchedulerConfig) -> np.ndarray:
    """float32[T] cumulative products of ``1 - beta`` in float32, as diffusers' DDIM scheduler."""
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "scaled_linear":
        betas = np.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, n, dtype=np.float32) ** 2
    else:
        betas = np.linspace(cfg.beta_start, cfg.beta_end, n, dtype=np.float32)
    return np.cumprod(np.float32(1.0) - betas, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class SDConfig:
    """Cambrian's SD feature recipe (module doc) on the given networks.

    patch_size: feature stride in pixels (the output grid is ``image_size // patch_size``).
    up_blocks: the UNet up blocks whose outputs are resized and concatenated.
    prompt_len: tokens of the empty-prompt embedding (77 for SD's CLIP tokenizer).
    noise_seed: seed of the one noise map shared by every image.
    dtype: parameter and compute dtype ("float32" | "bfloat16"); the features are float32.
    """

    vae: VAEConfig
    unet: UNetConfig
    image_size: int
    patch_size: int
    timestep: int
    up_blocks: tuple[int, ...]
    prompt_len: int
    scheduler: SchedulerConfig = SchedulerConfig()
    noise_seed: int = 0
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "up_blocks", tuple(self.up_blocks))

    def check(self) -> SDConfig:
        common.check_dtype(self)
        n_up = len(self.unet.block_out_channels)
        if any(not 0 <= i < n_up for i in self.up_blocks):
            raise ValueError(f"up blocks {self.up_blocks} out of range: the UNet has {n_up} up "
                             "blocks")
        if not 0 <= self.timestep < self.scheduler.num_train_timesteps:
            raise ValueError(f"timestep {self.timestep} outside "
                             f"[0, {self.scheduler.num_train_timesteps})")
        return self


VARIANTS: dict[str, dict] = {
    # Cambrian: stabilityai/stable-diffusion-2-1 at 512px, t=250, up blocks 0..3, stride 16.
    "2.1": dict(vae=VAEConfig(), unet=UNetConfig(), scheduler=SchedulerConfig(), image_size=512,
                patch_size=16, timestep=250, up_blocks=(0, 1, 2, 3), prompt_len=77),
    # Random weights only: CPU smoke runs and tests.
    "runlocal": dict(
        vae=VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4),
        unet=UNetConfig(block_out_channels=(16, 32, 32),
                        down_block_types=("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
                        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2,
                        layers_per_block=1, attention_head_dim=(2, 4, 4), cross_attention_dim=24,
                        norm_num_groups=4),
        scheduler=SchedulerConfig(), image_size=32, patch_size=4, timestep=250,
        up_blocks=(0, 1, 2), prompt_len=8),
}
DEFAULT_VARIANT = "2.1"
# None = Cambrian's recipe (the variant's up blocks, concatenated); an int selects one up block.
DEFAULT_LAYER: int | None = None


def preprocessing(variant: str = DEFAULT_VARIANT) -> PreprocessSpec:
    """Resize(shortest) + centre crop + [-1, 1], as Cambrian's torchvision transform.

    Cambrian wraps it in a ProcessorWrapper whose default mean (CLIP's) is the pad colour.
    """
    return PreprocessSpec(image_size=_variant(variant)["image_size"], mean=HALF, std=HALF,
                          resize="shortest", interpolation="bilinear", pad_color=CLIP_MEAN)


def _variant(variant: str) -> dict:
    if variant not in VARIANTS:
        raise ValueError(f"unknown sd_diffusion variant {variant!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


# --------------------------------------------------------------------------- the encoder


def feature_channels(unet: UNetConfig, up_blocks: tuple[int, ...]) -> int:
    """Channels of the concatenated up-block maps (up block i has the i-th reversed width)."""
    rch = unet.block_out_channels[::-1]
    return sum(rch[i] for i in up_blocks)


class PromptEmbedding(nnx.Variable):
    """A fixed input (the empty-prompt text embedding); not a trainable parameter."""


_PROMPT_INIT = common.Init(std=1.0)


def noise_map(seed: int, h: int, w: int, channels: int) -> jax.Array:
    """float32[1, h, w, channels]: the fixed latent noise of ``seed``, shared by every image."""
    return jax.random.normal(jax.random.key(seed), (1, h, w, channels))


class StableDiffusionEncoder(nnx.Module):
    """Cambrian's SD feature recipe (module doc).

    ``feats, out = enc(pixels)``: pixels float32[B, H, W, 3] in [-1, 1]; feats float32[B, H/p, W/p,
    out_channels] with p = ``patch_size``; ``out`` holds ``latents``, ``noisy_latents`` (both
    float[B, H/8, W/8, 4]) and every computed up block ``up_i`` at its native resolution.
    """

    def __init__(self, config: SDConfig, *, rngs: nnx.Rngs):
        cfg = self.config = config.check()
        self.vae = VAEEncoder(cfg.vae, rngs=rngs)
        self.unet = UNet(cfg.unet, rngs=rngs)
        shape = (1, cfg.prompt_len, cfg.unet.cross_attention_dim)
        self.prompt_embedding = PromptEmbedding(_PROMPT_INIT(rngs.params(), shape),
                                                init=_PROMPT_INIT)
        abar = alphas_cumprod(cfg.scheduler)[cfg.timestep]
        self.sqrt_alpha = float(np.sqrt(abar))
        self.sqrt_one_minus_alpha = float(np.sqrt(np.float32(1.0) - abar))
        self.up_blocks = cfg.up_blocks
        self.out_channels = feature_channels(cfg.unet, cfg.up_blocks)
        self.grid = (cfg.image_size // cfg.patch_size, cfg.image_size // cfg.patch_size)

    def noise(self, h: int, w: int) -> jax.Array:
        """float32[1, h, w, latent_channels]: the fixed noise map, shared by every image."""
        return noise_map(self.config.noise_seed, h, w, self.config.vae.latent_channels)

    def add_noise(self, latents: jax.Array, noise: jax.Array) -> jax.Array:
        return self.sqrt_alpha * latents + self.sqrt_one_minus_alpha * noise

    def __call__(self, pixels: jax.Array, noise: jax.Array | None = None):
        cfg = self.config
        b, hgt, wid, _ = pixels.shape
        latents = cfg.vae.scaling_factor * self.vae(pixels.astype(cfg.dtype))
        if noise is None:
            noise = self.noise(*latents.shape[1:3])
        noisy = self.add_noise(latents.astype(jnp.float32), noise).astype(cfg.dtype)
        context = jnp.broadcast_to(self.prompt_embedding[...].astype(cfg.dtype),
                                   (b, *self.prompt_embedding.shape[1:]))
        _, ups = self.unet.up_features(noisy, cfg.timestep, context, last_up=max(cfg.up_blocks))
        grid = (hgt // cfg.patch_size, wid // cfg.patch_size)
        feats = jnp.concatenate([resize_grid(ups[f"up_{i}"], grid) for i in cfg.up_blocks], -1)
        return feats.astype(jnp.float32), {"latents": latents, "noisy_latents": noisy, **ups}


def _config(variant: str, image_size: int | None, layer: int | None, dtype: str) -> SDConfig:
    v = dict(_variant(variant), dtype=dtype)
    if image_size is not None:
        v["image_size"] = image_size
    if layer is not None:
        v["up_blocks"] = (layer,)
    return SDConfig(**v)


def create(variant: str = DEFAULT_VARIANT, *, image_size: int | None = None,
           layer: int | None = None, rngs: nnx.Rngs,
           dtype: str = "float32") -> StableDiffusionEncoder:
    """Randomly initialised encoder (and random prompt embedding); never pretrained."""
    return common.random_init(StableDiffusionEncoder, _config(variant, image_size, layer, dtype),
                              rngs=rngs)


# --------------------------------------------------------------------------- checkpoints

# Our attribute name -> diffusers module path.
_RENAME = {"downsample": "downsamplers.0.conv", "upsample": "upsamplers.0.conv",
           "to_out": "to_out.0", "ff_in": "ff.net.0.proj", "ff_out": "ff.net.2"}
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}
# Older VAE checkpoints use the pre-0.14 attention names (diffusers converts them on load).
_LEGACY = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}


def _torch_name(path: tuple) -> str:
    parts = [str(p) for p in path if p != "attn"]  # VAEAttention.attn is inlined in diffusers
    parts = [_RENAME.get(p, p) for p in parts[:-1]] + [_LEAF[parts[-1]]]
    return ".".join(parts)


def _torch_shape(shape: tuple) -> tuple:
    """Our kernel shape -> the diffusers (torch) one: [kh, kw, I, O] -> [O, I, kh, kw]; [I, O] ->
    [O, I]."""
    if len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(reversed(shape)) if len(shape) == 2 else tuple(shape)


def _squeeze_1x1(x: np.ndarray) -> np.ndarray:
    # proj_in/proj_out are 1x1 convs in checkpoints without use_linear_projection.
    return x[:, :, 0, 0] if x.ndim == 4 and x.shape[2:] == (1, 1) else x


def _to_jax(x: np.ndarray) -> np.ndarray:
    return x.transpose(2, 3, 1, 0) if x.ndim == 4 else x.T if x.ndim == 2 else x


def _fill(module: nnx.Module, reader, dtype: str) -> None:
    """Sets every nnx.Param of ``module`` from ``reader`` (diffusers names), stored in ``dtype``,
    checking shapes in the checkpoint's own layout."""
    for path, var in list(nnx.iter_graph(module)):
        if not isinstance(var, nnx.Param):
            continue
        name = _torch_name(path)
        if name not in reader:
            for new, old in _LEGACY.items():
                if new in name and name.replace(new, old) in reader:
                    name = name.replace(new, old)
        shape = tuple(var.shape)
        value = take(reader, name, _torch_shape(shape), _squeeze_1x1 if len(shape) == 2 else None)
        var.set_value(jnp.asarray(_to_jax(value), dtype))


def _read_json(path: str, what: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: {what} not found; expected a diffusers checkpoint "
                              "directory with vae/ and unet/ subfolders (config.json + "
                              "*.safetensors)")
    with open(path) as f:
        return json.load(f)


def read_prompt_embedding(checkpoint: str, dim: int) -> np.ndarray:
    """float32[1, length, dim]: ``<checkpoint>/empty_prompt_embedding.npy``, checked."""
    path = os.path.join(checkpoint, PROMPT_FILE)
    if not os.path.exists(path):
        raise CheckpointError(
            f"{path} not found; create it once with "
            f"`python -m cambrian.models.encoders.sd_diffusion {checkpoint}` (needs text_encoder/ "
            "and tokenizer/ in the checkpoint directory)")
    prompt = np.load(path).astype(np.float32)
    if prompt.ndim == 2:
        prompt = prompt[None]
    if prompt.ndim != 3 or prompt.shape[0] != 1 or prompt.shape[2] != dim:
        raise CheckpointError(f"{path}: shape {prompt.shape}, expected (1, length, {dim}) (the "
                              "UNet's cross_attention_dim)")
    return prompt


def load(checkpoint: str, *, variant: str | None = None, image_size: int | None = None,
         layer: int | None = None, dtype: str = "float32",
         noise_seed: int = 0) -> StableDiffusionEncoder:
    """Loads SD weights from a diffusers-layout directory (module doc); the architecture comes from
    its config.json files, the recipe (resolution, stride, timestep, up blocks) from ``variant``."""
    checkpoint = os.fspath(checkpoint)
    if not os.path.isdir(checkpoint):
        raise CheckpointError(f"SD checkpoint directory not found: {checkpoint}")
    cfg = _config(variant or DEFAULT_VARIANT, image_size, layer, dtype)
    vae_json = os.path.join(checkpoint, "vae", "config.json")
    unet_json = os.path.join(checkpoint, "unet", "config.json")
    vae_cfg = vae_config_from_diffusers(_read_json(vae_json, "VAE config"), vae_json)
    unet_cfg = unet_config_from_diffusers(_read_json(unet_json, "UNet config"), unet_json)
    sched_json = os.path.join(checkpoint, "scheduler", "scheduler_config.json")
    sched = (scheduler_config_from_diffusers(_read_json(sched_json, "scheduler config"), sched_json)
             if os.path.exists(sched_json) else cfg.scheduler)

    prompt = read_prompt_embedding(checkpoint, unet_cfg.cross_attention_dim)
    cfg = dataclasses.replace(cfg, vae=vae_cfg, unet=unet_cfg, scheduler=sched,
                              prompt_len=prompt.shape[1], noise_seed=noise_seed)
    enc = common.abstract(StableDiffusionEncoder, cfg)
    _fill(enc.vae, open_checkpoint(os.path.join(checkpoint, "vae")), dtype)
    _fill(enc.unet, open_checkpoint(os.path.join(checkpoint, "unet")), dtype)
    enc.prompt_embedding.set_value(jnp.asarray(prompt))
    return enc


def reference(src: str, px, config: SDConfig) -> np.ndarray:
    """Cambrian's ``DiffusionVisionTower.extract_features`` with diffusers: VAE posterior mode,
    DDIM ``add_noise`` with this recipe's noise map (``config.noise_seed``), one UNet pass on the
    checkpoint's empty-prompt embedding, up-block outputs bilinear to the feature grid."""
    import diffusers
    import torch

    from cambrian.models.encoders import reference as ref

    vae = diffusers.AutoencoderKL.from_pretrained(os.path.join(src, "vae")).eval()
    unet = diffusers.UNet2DConditionModel.from_pretrained(os.path.join(src, "unet")).eval()
    sched_dir = os.path.join(src, "scheduler")
    sched = (diffusers.DDIMScheduler.from_pretrained(sched_dir) if os.path.isdir(sched_dir)
             else diffusers.DDIMScheduler(**dataclasses.asdict(config.scheduler)))
    prompt = torch.from_numpy(read_prompt_embedding(src, unet.config.cross_attention_dim))
    ups = {}
    hooks = [blk.register_forward_hook(lambda m, a, o, i=i: ups.__setitem__(i, o))
             for i, blk in enumerate(unet.up_blocks)]
    try:
        latents = vae.config.scaling_factor * vae.encode(px).latent_dist.mode()
        _, c, h, w = latents.shape
        noise = torch.from_numpy(np.array(noise_map(config.noise_seed, h, w, c)))
        t = torch.tensor(config.timestep, dtype=torch.long)
        noisy = sched.add_noise(latents, noise.permute(0, 3, 1, 2).expand_as(latents), t)
        unet(noisy, t, encoder_hidden_states=prompt.repeat(len(px), 1, 1))
    finally:
        for hook in hooks:
            hook.remove()
    size = (px.shape[2] // config.patch_size, px.shape[3] // config.patch_size)
    maps = [torch.nn.functional.interpolate(ups[i], size=size, mode="bilinear",
                                            align_corners=False) for i in config.up_blocks]
    return ref.to_numpy(torch.cat(maps, dim=1).permute(0, 2, 3, 1))


def write_empty_prompt_embedding(checkpoint: str) -> str:
    """Saves ``StableDiffusionPipeline.encode_prompt([""])``, float32[1, max_length, D], computed
    from ``tokenizer/`` and ``text_encoder/``, as ``<checkpoint>/empty_prompt_embedding.npy``.

    Returns the file's path.
    """
    import torch
    from transformers import CLIPTextModel, CLIPTokenizer

    for sub in ("tokenizer", "text_encoder"):
        if not os.path.isdir(os.path.join(checkpoint, sub)):
            raise CheckpointError(f"{os.path.join(checkpoint, sub)} not found: the empty-prompt "
                                  "embedding is computed from the checkpoint's CLIP text encoder")
    tok = CLIPTokenizer.from_pretrained(os.path.join(checkpoint, "tokenizer"))
    text = CLIPTextModel.from_pretrained(os.path.join(checkpoint, "text_encoder"),
                                         torch_dtype=torch.float32).eval()
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    mask = None
    if getattr(text.config, "use_attention_mask", False):
        mask = (ids != tok.pad_token_id).long()
    with torch.no_grad():
        emb = text(ids, attention_mask=mask)[0].float().numpy()
    path = os.path.join(checkpoint, PROMPT_FILE)
    np.save(path, emb.astype(np.float32))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m cambrian.models.encoders.sd_diffusion CHECKPOINT_DIR")
    print(write_empty_prompt_embedding(sys.argv[1]))
