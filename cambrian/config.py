"""Experiment configs: loading, ``:arg`` strings, ``--config.x=y`` overrides, validation.

A config file under ``configs/`` defines ``get_config(arg: str | None) -> ConfigDict``. It starts
from :func:`base_config` (every default lives there, nowhere else) and changes what its experiment
needs. ``arg`` is the text after ``:`` in ``--config encoders/dinov2.py:runlocal,res=518``; parse it
with :func:`parse_arg`. The resolved config is locked: reading or setting an unknown key is an error
that names the key.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections as mlc

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


class ConfigError(ValueError):
    """A config file, ``:arg`` string or override is invalid; the message says which and why."""


def parse_arg(arg: str | None, **defaults: Any) -> mlc.ConfigDict:
    """big_vision-style ``"runlocal,res=518"`` -> ConfigDict(runlocal=True, res=518).

    Every allowed knob must appear in ``defaults`` (bare words are booleans); values take the
    type of their default.
    """
    out = mlc.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, eq, value = item.partition("=")
        if key not in defaults:
            known = ", ".join(defaults) or "none"
            raise ConfigError(f"unknown config argument {key!r}; known: {known}")
        if not eq:
            out[key] = True
        else:
            out[key] = _coerce(value, defaults[key], key)
    return out


def _coerce(text: str, like: Any, name: str) -> Any:
    if isinstance(like, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"{name}: expected a boolean, got {text!r}")
    if isinstance(like, str):
        return text
    if isinstance(like, int | float) and not isinstance(like, bool):
        try:
            return type(like)(ast.literal_eval(text))
        except (ValueError, SyntaxError) as e:
            raise ConfigError(f"{name}: expected {type(like).__name__}, got {text!r}") from e
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # None-valued or free-form fields take strings as they are


def base_config() -> mlc.ConfigDict:
    """Every config key with its default. Experiment files override, never add."""
    c = mlc.ConfigDict()
    c.name = ""  # filled by load(): config file + arg
    c.seed = 0
    c.workdir = ""
    c.cache_dir = os.path.expanduser(os.environ.get("CAMBRIAN_CACHE", "~/.cache/cambrian"))

    c.model = mlc.ConfigDict()
    # alias -> encoder settings (encoder()); each entry's `order` is its position (SVA: encoder 0
    # gives the global context). A ConfigDict iterates its keys sorted, so read them with
    # ordered_encoders() and add them with add_encoder(), which sets `order`.
    c.model.encoders = mlc.ConfigDict()
    c.model.connector = mlc.ConfigDict({"name": "mlp2x_gelu", "options": mlc.ConfigDict()})
    c.model.llm = mlc.ConfigDict()
    c.model.llm.checkpoint = ""  # HF safetensors dir (config.json + *.safetensors)
    c.model.llm.init = "pretrained"  # or "random" (only for :runlocal / tests)
    c.model.llm.random = mlc.ConfigDict({  # architecture used when init == "random"
        "vocab_size": 0, "hidden_size": 128, "intermediate_size": 256, "num_layers": 2,
        "num_heads": 4, "num_kv_heads": 2, "head_dim": 32, "rope_theta": 10000.0,
    })
    # attention of the training forward: "einsum" (the kernel generation always uses), or
    # jax.nn.dot_product_attention's "xla" / "cudnn" (flash attention: GPU, bf16)
    c.model.llm.attention = "einsum"
    c.model.tokenizer = ""  # HF tokenizer dir; "synthetic" = the embedded runlocal tokenizer
    c.model.template = "vicuna_v1"  # chat template (cambrian/data/chat_templates.py)
    c.model.system_prompt = None  # None = the template's own system prompt
    c.model.max_len = 2048
    c.model.dtype = "float32"  # compute dtype of trained modules
    c.model.encoder_dtype = "float32"  # frozen encoders may run in bfloat16
    # unfrozen towers recompute each block in the backward pass (big towers; frozen ones keep
    # no activations for a backward pass, so this never applies to them)
    c.model.encoder_remat = False
    # root of precomputed frozen-tower features (cambrian/feature_cache.py); "" = run the towers
    c.model.feature_cache = ""

    c.data = mlc.ConfigDict()
    c.data.num_workers = 0  # grain worker processes decoding + tokenising; 0 = in-process
    c.data.skip_bad = False
    # Sequence packing: several conversations per model.max_len row (segment ids keep attention
    # and positions per conversation); stages.*.batch_size then counts rows, not conversations.
    c.data.pack = False
    c.data.max_images_per_row = 3  # image slots per packed row (encoders run on all of them)
    # first batches of each stage measured for the run log's packing figures (drawn ahead, then
    # trained on as usual)
    c.data.efficiency_batches = 4
    # sizes of the embedded synthetic splits ("synthetic:<split>" data and the synthetic suite)
    c.data.synthetic = mlc.ConfigDict({"align": 3000, "train": 6000, "eval": 120})

    def stage(steps: int, lr: float, trainable: str, warmup: float) -> mlc.ConfigDict:
        return mlc.ConfigDict({
            "steps": steps, "batch_size": 512, "lr": lr, "warmup_ratio": warmup,
            "weight_decay": 0.0, "b1": 0.9, "b2": 0.999, "grad_clip": 1.0,
            "trainable": trainable,  # regex over param paths; the rest is frozen (no opt state)
            "lr_multipliers": mlc.ConfigDict(),  # regex -> multiplier of lr
            "data": "", "image_root": "",  # LLaVA JSON/JSONL + image folder (or synthetic:<split>)
            "epochs": 1,
            "grad_accum": 1,  # microbatches per step: batch_size rows in grad_accum pieces
        })

    c.stages = mlc.ConfigDict()
    c.stages.stage1 = stage(0, 1e-3, r"connector", 0.06)
    c.stages.stage2 = stage(0, 2e-5, r"connector|llm", 0.03)

    # Per-slice mesh sizes (-1 = the remaining devices) and, for multi-slice pods, the number of
    # slices along each axis (cambrian/sharding.py).
    c.mesh = mlc.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1,
                             "dcn": mlc.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1})})
    c.sharding = "fsdp"  # rule preset in cambrian/sharding.py: dp | fsdp | fsdp_tp
    # (logical_name, mesh_axis or None) pairs overriding the preset's weight rules, e.g.
    # --config.sharding_rules="(('vocab', 'tensor'),)"
    c.sharding_rules = ()
    c.remat = "none"  # LLM decoder-layer rematerialisation: none | dots | full
    # Cross-entropy over this many positions at a time, each piece's gradients taken while its
    # logits are at hand (losses.chunked_loss_fn): float32[batch, max_len, vocab] never exists.
    # 0 = whole-sequence logits.
    c.loss_chunk = 512

    # A run directory (or its checkpoints/ folder) whose latest params initialise this run; with
    # all stage steps at 0 this is an eval-only run.
    c.checkpoint = ""
    # Checkpoint every N steps (+ stage ends and on SIGTERM), keep the last `keep`; async writes
    # overlap the next steps.
    c.save = mlc.ConfigDict({"every": 0, "keep": 2, "asynchronous": True})
    c.log_every = 10
    # What a run records beside WORKDIR/metrics.jsonl (cambrian/runlog.py): TensorBoard event
    # files in WORKDIR/tensorboard/; a Weights & Biases project ("" = none; needs `pip install
    # wandb`); the per-device peak TFLOP/s behind mfu (0 = runlog.PEAK_FLOPS by device kind).
    c.log = mlc.ConfigDict({"tensorboard": True, "wandb": "", "peak_tflops": 0.0})

    from cambrian.eval import suite  # the benchmark names (here: nothing runs on import)

    c.eval = mlc.ConfigDict()
    c.eval.suite = "cambrian"  # suite name in cambrian/eval/suite.py
    # one folder per benchmark: eval.root/<name>/ holds the snapshot of that benchmark's hub repo
    # (its module's SOURCE; README, "Benchmarks"); eval.roots.<name> points one elsewhere
    c.eval.root = ""
    c.eval.roots = mlc.ConfigDict({name: "" for name in suite.DOWNLOADED})
    c.eval.batch_size = 16
    c.eval.limit = 0  # max samples per benchmark; 0 = all
    c.eval.max_new_tokens = 0  # 0 = each benchmark's own value
    c.eval.vision = "on"  # "on" | "off" | "both" (the paper's who's-answering check)
    c.eval.profile = "cambrian"
    # SVA attention mass per encoder on each benchmark -> WORKDIR/attention/<benchmark>.json
    c.eval.save_attention = False
    # Guided visual search (V*) of the vstar_search benchmark (cambrian/tools/vstar.py): mode
    # "always" | "when_unresolved" (the global view's P(yes) for a target below `trigger`) |
    # "off"; descent stops at P(yes) >= threshold, max_depth, budget crops scored per target, or
    # children under min_size pixels (the paper: 224); the answer sees the global view + up to
    # max_crops crops.
    c.eval.vstar = mlc.ConfigDict({
        "mode": "when_unresolved", "trigger": 0.5, "threshold": 0.8, "max_depth": 3,
        "budget": 12, "overlap": 0.25, "min_size": 224, "max_crops": 2,
        "target": "",  # target name for items that name none
    })
    return c


def encoder(family: str, variant: str, *, checkpoint: str = "", image_size: int = 0,
            layer: int | None = None, tokens: int = 0, init: str = "pretrained",
            frozen: bool = True, pos_interp: str = "", order: int = -1) -> mlc.ConfigDict:
    """One entry of ``config.model.encoders`` (add it with ``add_encoder``).

    image_size 0 = the variant's native resolution; tokens 0 = the native grid, else bilinear
    interpolation to that many (square) tokens; layer None = the family's default layer;
    pos_interp "" = the checkpoint library's own rule for resizing a ViT's position table to
    another grid, else a ``cambrian.models.encoders.common.RESAMPLERS`` name (the released
    Cambrian-1 models ran DINOv2 with "bicubic_scale", transformers 4.37's rule); order: the
    encoder's position (-1 = after the ordered ones, by alias).
    """
    return mlc.ConfigDict({
        "family": family, "variant": variant, "checkpoint": checkpoint, "init": init,
        "image_size": image_size, "layer": layer, "tokens": tokens, "frozen": frozen,
        "pos_interp": pos_interp, "order": order,
    }, type_safe=False)


def add_encoder(model: mlc.ConfigDict, alias: str, enc: mlc.ConfigDict) -> None:
    """Appends ``enc`` to ``model.encoders`` as the next encoder in order."""
    if alias in model.encoders:
        raise ConfigError(f"model.encoders.{alias}: already set; pick another alias")
    enc.order = len(model.encoders)
    model.encoders[alias] = enc


def ordered_encoders(encoders) -> list[tuple[str, Any]]:
    """``(alias, entry)`` pairs of ``config.model.encoders`` (a ConfigDict, or the dict of a saved
    ``config.json``) in encoder order: by ``order``, then entries with order -1 by alias. Runs
    saved before ``order`` existed had their encoders in alias order, which is what this gives
    them."""
    items = list(encoders.items())
    return sorted(items, key=lambda kv: (_order(kv[1]) < 0, _order(kv[1]), kv[0]))


def _order(entry) -> int:
    return entry["order"] if "order" in entry else -1


CHECKPOINTS = os.environ.get("CAMBRIAN_CHECKPOINTS", "checkpoints")
DATA = os.environ.get("CAMBRIAN_DATA", "data")


def encoder_probe(alias: str, enc: mlc.ConfigDict) -> mlc.ConfigDict:
    """Cambrian-1's encoder-sweep protocol (paper Table 13): one frozen encoder, a 2-layer MLP
    projector, Vicuna-1.5-7B, 1.2M adapter data (stage 1) then the 737K instruction mix (stage 2).
    Paths default to ``$CAMBRIAN_CHECKPOINTS`` / ``$CAMBRIAN_DATA`` (``checkpoints/``,
    ``data/``), laid out as ``python -m cambrian.fetch --config FILE`` writes them:

    * stage 1: ShareGPT4V-PT, ``share-captioner_coco_lcs_sam_1246k_1107.json`` of the Hub dataset
      Lin-Chen/ShareGPT4V (1,246K captions), with its images in ShareGPT4V's layout in the same
      folder (``llava/llava_pretrain/images``, ``coco/train2017``, ``sam/images``);
    * stage 2: the ``data_recipes/cambrian_737k.py`` recipe as ``data_recipes/build.py`` writes it
      (a directory; images inside).
    """
    c = base_config()
    add_encoder(c.model, alias, enc)
    c.model.connector.name = "mlp2x_gelu"
    c.model.llm.checkpoint = os.path.join(CHECKPOINTS, "lmsys/vicuna-7b-v1.5")
    c.model.tokenizer = c.model.llm.checkpoint
    c.model.template = "vicuna_v1"
    c.stages.stage1.update(dict(
        steps=2344, batch_size=512, lr=1e-3, image_root=os.path.join(DATA, "sharegpt4v"),
        data=os.path.join(DATA, "sharegpt4v", "share-captioner_coco_lcs_sam_1246k_1107.json")))
    c.stages.stage2.update(dict(steps=1440, batch_size=512, lr=2e-5, image_root="",
                                data=os.path.join(DATA, "built", "cambrian_737k")))
    c.eval.root = os.path.join(DATA, "benchmarks")
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    return c


def single_encoder_probe(arg: str | None, family: str, variant: str, *, res: int,
                         checkpoint: str, tokens: int = 0, layer: int | None = None,
                         alias: str | None = None) -> mlc.ConfigDict:
    """The whole config of a one-encoder probe file: args ``runlocal``, ``res=N`` and a TPU
    slice (``v4-128``: cambrian/slices.py); ``checkpoint`` is relative to
    ``$CAMBRIAN_CHECKPOINTS``."""
    a = probe_arg(arg, res=res)
    c = encoder_probe(alias or family, encoder(
        family, variant, image_size=a.res, tokens=tokens, layer=layer,
        checkpoint=os.path.join(CHECKPOINTS, checkpoint)))
    if a.runlocal:
        runlocal_common(c)
    apply_slice(c, a)
    return c


def probe_arg(arg: str | None, **knobs: Any) -> mlc.ConfigDict:
    """``parse_arg`` for probe files: ``runlocal``, the TPU slice words of cambrian/slices.py
    (``v4-128``, ...) and the file's own ``knobs``."""
    from cambrian import slices

    return parse_arg(arg, runlocal=False, **knobs, **slices.arg_defaults())


def apply_slice(c: mlc.ConfigDict, a: mlc.ConfigDict) -> None:
    """Applies the slice settings named in ``probe_arg``'s result (last step of a probe file)."""
    from cambrian import slices

    slices.apply(c, slices.chosen(a))


def connector_probe(connector: str, options: dict, encoders: dict[str, mlc.ConfigDict]
                    ) -> mlc.ConfigDict:
    """Cambrian-1's connector study (paper Table 1): several frozen encoders, Vicuna-1.5-7B,
    1.2M adapter data then the 737K instruction mix, the connector under test."""
    (alias, first), *rest = encoders.items()
    c = encoder_probe(alias, first)
    for alias, enc in rest:
        add_encoder(c.model, alias, enc)
    c.model.connector.name = connector
    c.model.connector.options = mlc.ConfigDict(options)
    return c


def table1_encoders() -> dict[str, mlc.ConfigDict]:
    """The four towers of the connector study: SigLIP-SO400M@384, CLIP-L/14@336,
    DINOv2-L/14@518, ConvNeXt-XXL@1024 (the first gives SVA its global context)."""
    ck = CHECKPOINTS
    return {
        "siglip": encoder("siglip", "So400m/14-384", tokens=576,
                          checkpoint=os.path.join(ck, "timm/ViT-SO400M-14-SigLIP-384")),
        "clip": encoder("clip", "L/14-336", layer=-2,
                        checkpoint=os.path.join(ck, "openai/clip-vit-large-patch14-336")),
        "dinov2": encoder("dinov2", "L/14", image_size=518, tokens=576,
                          checkpoint=os.path.join(ck, "facebook/dinov2-large")),
        "convnext": encoder(
            "convnext", "XXL@1024-multi-stage", tokens=9216, checkpoint=os.path.join(
                ck, "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup")),
    }


def runlocal_connector(c: mlc.ConfigDict, **options) -> None:
    """:runlocal for multi-encoder connector configs: tiny towers, tiny connector options."""
    multi = [a for a, e in c.model.encoders.items() if e.variant.endswith("multi-stage")]
    runlocal_common(c)
    for a in multi:
        c.model.encoders[a].variant = "runlocal-multi-stage"
    c.model.connector.options.update(options)


def runlocal_common(c: mlc.ConfigDict) -> None:
    """Shrinks a config to CPU size on the embedded synthetic data (shared by every :runlocal)."""
    for enc in c.model.encoders.values():
        enc.variant, enc.init, enc.checkpoint, enc.tokens = "runlocal", "random", "", 0
        enc.image_size = 0  # the runlocal variant's own resolution
    c.model.llm.init = "random"
    c.model.llm.checkpoint = ""
    # 4 layers: at the answer position one layer gathers what is asked, the next reads it off the
    # image, the rest map it to the answer or option letter (2 layers learn little but priors)
    c.model.llm.random.update(dict(hidden_size=128, intermediate_size=384, num_layers=4,
                                   num_heads=4, num_kv_heads=2, head_dim=32))
    c.model.tokenizer = "synthetic"
    c.model.template = "vicuna_v1"
    c.model.system_prompt = ""  # keeps synthetic sequences short
    c.model.max_len = 128
    c.loss_chunk = 0  # whole logits: at vocab 512 x 128 tokens there is nothing to save
    c.stages.stage1.update(dict(steps=50, batch_size=16, lr=2e-3, data="synthetic:align",
                                image_root=""))
    c.stages.stage2.update(dict(steps=2900, batch_size=16, lr=2e-3, data="synthetic:mix",
                                image_root="", trainable=r"connector|llm"))
    c.mesh.update(dict(data=-1, fsdp=1, tensor=1))
    c.eval.suite = "synthetic"
    c.eval.root = ""
    c.eval.batch_size = 32
    c.eval.limit = 0
    c.log_every = 50


# ------------------------------------------------------------------------------- loading


def resolve_path(path: str) -> str:
    """A config path as typed by the user: absolute, relative to cwd, or relative to configs/."""
    for cand in (path, os.path.join(CONFIGS_DIR, path)):
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    raise ConfigError(f"config file not found: {path!r} (looked in the current directory and "
                      f"{CONFIGS_DIR}); list them with `ls configs/encoders`")


def load(spec: str, overrides: Sequence[str] = ()) -> mlc.ConfigDict:
    """``"encoders/dinov2.py:runlocal"`` + ``["model.max_len=512", ...]`` -> locked ConfigDict."""
    path, _, arg = spec.partition(":")
    full = resolve_path(path)
    modname = "cambrian_config_" + hashlib.md5(full.encode()).hexdigest()[:8]
    spec_ = importlib.util.spec_from_file_location(modname, full)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{full}: defines no get_config(arg) function")
    config = module.get_config(arg or None)
    config.name = os.path.relpath(full, CONFIGS_DIR) + (f":{arg}" if arg else "")
    validate(config)
    config.lock()
    for item in overrides:
        apply_override(config, item)
    return config


def apply_override(config: mlc.ConfigDict, item: str) -> None:
    """``"a.b=value"`` (leading ``--config.`` / ``config.`` allowed) applied in place."""
    item = item.removeprefix("--").removeprefix("config.")
    key, eq, value = item.partition("=")
    if not eq:
        raise ConfigError(f"override {item!r} must look like --config.key=value")
    parts = key.split(".")
    node = config
    for i, p in enumerate(parts[:-1]):
        if p not in node:
            raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r} in override "
                              f"{item!r}")
        node = node[p]
    leaf = parts[-1]
    if leaf not in node:
        if not node.is_locked:  # free-form option dicts (e.g. connector.options) accept new keys
            node[leaf] = _coerce(value, None, key)
            return
        known = ", ".join(sorted(node.keys()))
        raise ConfigError(f"unknown config key {key!r} (known at this level: {known})")
    old = node[leaf]
    node[leaf] = _coerce(value, old, key) if old is not None else _coerce(value, None, key)


def validate(config: mlc.ConfigDict) -> None:
    """Keys missing from base_config are errors; so are structurally wrong entries."""
    _same_keys(config, base_config(), "")
    if config.loss_chunk < 0:
        raise ConfigError(f"loss_chunk={config.loss_chunk}: positions per cross-entropy piece "
                          "must be >= 0 (0 = whole sequences)")
    ref = encoder("x", "x")
    for alias, enc in config.model.encoders.items():
        extra = set(enc.keys()) - set(ref.keys())
        missing = set(ref.keys()) - set(enc.keys())
        if extra or missing:
            raise ConfigError(f"model.encoders.{alias}: unknown keys {sorted(extra)} / missing "
                              f"{sorted(missing)}; build entries with cambrian.config.encoder()")
        if enc.init not in ("pretrained", "random"):
            raise ConfigError(f"model.encoders.{alias}.init must be 'pretrained' or 'random'")
    check_order(config.model.encoders)


def check_order(encoders) -> None:
    """The ``order`` values that are set (>= 0) must be 0, 1, ..., m - 1, each once."""
    got = sorted((e.order, a) for a, e in encoders.items() if e.order >= 0)
    if [o for o, _ in got] != list(range(len(got))):
        listed = ", ".join(f"{a}={o}" for o, a in got)
        raise ConfigError(
            f"model.encoders: order values {listed} are not 0..{len(got) - 1}, each once; add "
            "encoders with cambrian.config.add_encoder() or set --config.model.encoders.<alias>"
            ".order so that they are")


_FREE_FORM = {"model.encoders", "model.connector.options", "stages.stage1.lr_multipliers",
              "stages.stage2.lr_multipliers"}


def _same_keys(cfg: mlc.ConfigDict, ref: mlc.ConfigDict, prefix: str) -> None:
    for k in cfg.keys():
        path = f"{prefix}{k}"
        if k not in ref:
            raise ConfigError(f"unknown config key {path!r} (not in cambrian.config.base_config())")
        if path in _FREE_FORM:
            continue
        if isinstance(ref[k], mlc.ConfigDict):
            if not isinstance(cfg[k], mlc.ConfigDict):
                raise ConfigError(f"config key {path!r} must be a dict of settings")
            _same_keys(cfg[k], ref[k], path + ".")


def adopt_model(config: mlc.ConfigDict) -> None:
    """An eval-only config (no encoders) takes ``model`` and ``data`` from the run it evaluates:
    ``config.checkpoint``'s saved ``config.json``."""
    if config.model.encoders or not config.checkpoint:
        if not config.model.encoders:
            raise ConfigError("model.encoders is empty: a probe needs at least one encoder, or "
                              "set --config.checkpoint=RUN_DIR to evaluate a trained run")
        return
    import fsspec

    path = os.path.join(config.checkpoint.removesuffix("/checkpoints"), "config.json")
    try:
        with fsspec.open(path, "rt") as fh:
            saved = json.load(fh)
    except FileNotFoundError as e:
        raise ConfigError(f"config.checkpoint: {path} not found; point it at a run's "
                          "workdir") from e
    with config.unlocked():
        # today's defaults under the saved values: runs saved before a key existed still load
        model = mlc.ConfigDict(config.model.to_dict(), type_safe=False)
        model.update({k: v for k, v in saved["model"].items() if k != "encoders"})
        model.encoders = _saved_encoders(saved["model"]["encoders"])
        data = mlc.ConfigDict(config.data.to_dict(), type_safe=False)
        data.update({k: v for k, v in saved["data"].items() if k in data})
        config.model, config.data = model, data
        config.cache_dir = saved.get("cache_dir", config.cache_dir)


def _saved_encoders(saved: dict) -> mlc.ConfigDict:
    """A saved run's encoders with today's defaults for keys it predates, in the order the run
    used (``ordered_encoders``: runs saved before ``order`` existed used alias order)."""
    out = mlc.ConfigDict(type_safe=False)
    for k, (alias, e) in enumerate(ordered_encoders(saved)):
        entry = encoder(e["family"], e["variant"])
        entry.update(e)
        entry.order = k
        out[alias] = entry
    return out


def to_json(config: mlc.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def config_hash(config: mlc.ConfigDict) -> str:
    """Content hash of the resolved config without run-location fields."""
    d = config.to_dict()
    d.pop("workdir", None)
    d.pop("cache_dir", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]
