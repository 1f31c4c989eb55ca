"""The one trainer: mesh -> model (born sharded) -> restore -> stage 1 -> stage 2 -> eval -> report.

Each stage trains the parameters its ``trainable`` regex selects (the rest is frozen and has no
optimizer state), on its own data, with AdamW + warmup/cosine. Parameters, optimizer state and
batches are sharded over ``config.mesh`` by the logical-axis rules of ``config.sharding`` from the
moment they are created. A checkpoint is written at the end of every stage, every
``save.every`` steps and on SIGTERM; rerunning the same command resumes from the latest one with
the exact next batch. An eval-only run is a config whose stages have zero steps.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import math
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from tqdm import tqdm

from cambrian import checkpoint, distributed, fileio, optim, sharding
from cambrian import config as config_lib
from cambrian.data import chat_templates, loader
from cambrian.data import tokenizer as tokenizer_lib
from cambrian.models import vlm

log = logging.getLogger("cambrian")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# ----------------------------------------------------------------------------------------- model


def build_model(config: mlc.ConfigDict, tokenizer=None, *, load_pretrained: bool = True,
                vocab_size: int | None = None) -> vlm.Cambrian:
    """The configured model with the run's numerics (compute dtypes, remat) applied.

    ``vocab_size`` replaces ``len(tokenizer)`` (abstract models of configs whose tokenizer is
    not on this machine)."""
    model = vlm.Cambrian(config.model, vocab_size=vocab_size or len(tokenizer),
                         rngs=nnx.Rngs(config.seed), load_pretrained=load_pretrained)
    _apply_dtypes(model, config)
    _apply_remat(model, config.remat)
    return model


def _apply_dtypes(model: vlm.Cambrian, config: mlc.ConfigDict) -> None:
    """``model.dtype``: LLM compute dtype (weights stay fp32 masters, cast per use);
    ``model.encoder_dtype``: frozen encoders store and run in that dtype."""
    dt = config.model.dtype
    if dt not in _DTYPES or config.model.encoder_dtype not in _DTYPES:
        raise ValueError(f"model.dtype={dt!r} / model.encoder_dtype="
                         f"{config.model.encoder_dtype!r}; expected one of {sorted(_DTYPES)}")
    if model.llm.cfg.dtype != dt:
        model.llm.cfg = dataclasses.replace(model.llm.cfg, dtype=dt)
    edt = config.model.encoder_dtype
    if edt == "float32":
        return
    for alias, enc in model.encoders.items():
        if not config.model.encoders[alias].frozen:
            continue
        for attr in ("config", "cfg"):
            c = getattr(enc, attr, None)
            if dataclasses.is_dataclass(c) and hasattr(c, "dtype"):
                setattr(enc, attr, dataclasses.replace(c, dtype=edt))
        for _, p in nnx.iter_graph(enc):
            if isinstance(p, nnx.Param) and jnp.issubdtype(p.value.dtype, jnp.floating):
                p.value = p.value.astype(_DTYPES[edt])


REMAT_POLICIES = {
    "full": None,  # keep only each layer's input; recompute everything in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls
}


@functools.cache
def _remat_class(cls: type, policy: str) -> type:
    # Python-bool flags (batch_invariant) must be static for the checkpoint; the layer's call
    # passes them positionally.
    names = list(inspect.signature(cls.__call__).parameters)
    static = tuple(i for i, n in enumerate(names) if n == "batch_invariant")
    call = nnx.remat(cls.__call__, policy=REMAT_POLICIES[policy], static_argnums=static)
    return type(cls.__name__, (cls,), {"__call__": call, "__module__": cls.__module__,
                                       "__qualname__": cls.__qualname__})


def _apply_remat(model: vlm.Cambrian, policy: str) -> None:
    """Rematerialises each LLM decoder layer (``config.remat``); parameter paths are unchanged."""
    if policy == "none":
        return
    if policy not in REMAT_POLICIES:
        raise ValueError(f"config.remat={policy!r}; expected none, {', '.join(REMAT_POLICIES)}")
    for layer in model.llm.layers:
        layer.__class__ = _remat_class(type(layer), policy)


def _has_pretrained(config: mlc.ConfigDict) -> bool:
    return (config.model.llm.init == "pretrained"
            or any(e.init == "pretrained" for e in config.model.encoders.values()))


def init_params(config: mlc.ConfigDict, tokenizer, mesh, rules: sharding.Rules):
    """(graphdef, params State): every parameter born on its sharding.

    Random-init models are created inside ``jit`` with ``out_shardings`` (no host copy ever
    exists); pretrained parts are read by their converters on the host, then each process
    places only its own shards on its devices.
    """
    abstract = nnx.eval_shape(lambda: build_model(config, tokenizer, load_pretrained=False))
    graphdef, abs_params, rest = nnx.split(abstract, nnx.Param, ...)
    if len(jax.tree.leaves(rest)):
        raise ValueError("model holds non-parameter state; the trainer expects parameters only")
    shardings = sharding.state_shardings(abs_params, mesh, rules)
    if not _has_pretrained(config):
        make = lambda: nnx.state(build_model(config, tokenizer, load_pretrained=False),  # noqa: E731
                                 nnx.Param)
        init = jax.jit(make, out_shardings=shardings).lower()
        # LLVM's optimiser spends ~10 s on a run-once RNG program on CPU; level 0 takes ~1 s.
        opts = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
        return graphdef, init.compile(compiler_options=opts)()
    model = build_model(config, tokenizer)
    graphdef, params = nnx.split(model, nnx.Param)
    shardings = sharding.state_shardings(params, mesh, rules)
    # the shardings' leaves sit where params has its Variables: replace each one's value
    params = jax.tree.map(
        lambda s, v: v.replace(sharding.put_host_array(jax.device_get(v[...]), s)),
        shardings, params, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return graphdef, params


# ------------------------------------------------------------------------------------ train step


def _entry(tree, path: tuple[str, ...]):
    """``tree[path[0]][path[1]]...`` of a State (or of its shardings), or None if absent."""
    for key in path:
        try:
            tree = tree[key]
        except (KeyError, TypeError, IndexError):
            return None
    return tree


def make_train_step(graphdef, tx: optax.GradientTransformation, *, grad_accum: int = 1,
                    loss_chunk: int = 0, packed: bool = True, mesh=None,
                    rules: sharding.Rules | None = None, shardings=None):
    """(trainable, frozen, opt_state, batch) -> (trainable, opt_state, metrics); jitted, donating.

    The loss is the token-weighted mean over the whole batch; with ``grad_accum`` k the batch
    is split into k strided microbatches (each spread over all devices) whose gradient sums are
    accumulated in a scan, so k microbatches of b rows equal one batch of k*b rows.
    ``loss_chunk`` > 0 computes the cross-entropy ``loss_chunk`` positions at a time
    (``vlm.chunked_loss_fn``) instead of from whole float32[B, T, V] logits. ``packed=False``
    promises one conversation per row, which lets fused attention drop its mask. ``mesh`` +
    ``rules`` switch on the activation sharding constraints; ``shardings`` = (trainable, opt)
    shardings pins the outputs to the inputs' layout.
    """

    def sums(trainable, frozen, batch):
        def f(tr):
            model = nnx.merge(graphdef, tr, frozen)
            logits, out = model(batch, with_logits=not loss_chunk, packed=packed)
            if loss_chunk:
                lm = model.llm
                path = ("llm", lm.output_name)
                loss, n = vlm.chunked_loss_fn(
                    lm.logits, out["hidden"], lm.output_weight(), batch, out["segment_ids"],
                    loss_chunk, weight_grad=_entry(trainable, path) is not None,
                    weight_sharding=_entry(shardings[0], path) if shardings else None)
            else:
                loss, n = vlm.loss_fn(logits, batch, out["segment_ids"])
            return loss * n, n  # token-weighted sums add up across microbatches

        (s, n), g = jax.value_and_grad(f, has_aux=True)(trainable)
        return s, n, g

    def accumulate(trainable, frozen, batch):
        if grad_accum == 1:
            return sums(trainable, frozen, batch)

        def split(x):
            x = x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]).swapaxes(0, 1)
            if mesh is not None:
                x = jax.lax.with_sharding_constraint(
                    x, NamedSharding(mesh, PartitionSpec(None, sharding.BATCH)))
            return x

        def body(carry, mb):
            # Tied to the microbatch, the weights are loop-variant for the compiler: it cannot
            # hoist their FSDP all-gathers out of the loop (all layers' full weights at once).
            tr, fr, mb = jax.lax.optimization_barrier((trainable, frozen, mb))
            s, n, g = sums(tr, fr, mb)
            return (carry[0] + s, carry[1] + n, jax.tree.map(jnp.add, carry[2], g)), None

        zero = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32),
                jax.tree.map(jnp.zeros_like, trainable))
        out, _ = jax.lax.scan(body, zero, jax.tree.map(split, batch))
        return out

    def step(trainable, frozen, opt_state, batch):
        if mesh is not None and rules is not None:
            with rules.activations(mesh):
                s, n, g = accumulate(trainable, frozen, batch)
        else:
            s, n, g = accumulate(trainable, frozen, batch)
        denom = jnp.maximum(n, 1).astype(jnp.float32)
        grads = jax.tree.map(lambda x: x / denom, g)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        return trainable, opt_state, {"loss": s / denom, "tokens": n,
                                      "grad_norm": optax.global_norm(grads)}

    kw = {}
    if shardings is not None and mesh is not None:
        kw["out_shardings"] = (*shardings, sharding.replicated(mesh))
    return jax.jit(step, donate_argnums=(0, 2), **kw)


# ------------------------------------------------------------------------------------------- run


@dataclasses.dataclass
class Fit:
    """What training produced: the model split as ``graphdef, params`` and per-stage losses."""

    graphdef: object
    params: object
    step: int
    losses: dict
    mesh: object

    @property
    def model(self) -> vlm.Cambrian:
        return nnx.merge(self.graphdef, self.params)


def run(config: mlc.ConfigDict, workdir: str, *, evaluate: bool = True) -> dict:
    """Trains and evaluates ``config``; returns the report dict (also written to ``workdir``)."""
    from cambrian.eval import report as report_lib
    from cambrian.eval import runner

    t_start = time.time()
    tok = tokenizer_lib.load(config.model.tokenizer, config.cache_dir)
    fit_ = fit(config, workdir, tokenizer=tok)
    if not evaluate:
        return {"step": fit_.step, "losses": fit_.losses}
    t_eval = time.time()
    results = runner.evaluate(fit_.model, config, tok, workdir)
    rep = report_lib.build(
        results, config_name=config.name, config_hash=config_lib.config_hash(config),
        step=fit_.step,
        decode={"greedy": True, "batch_size": config.eval.batch_size,
                "max_new_tokens": config.eval.max_new_tokens or "per benchmark",
                "template": config.model.template, "profile": config.eval.profile},
        wall_seconds=time.time() - t_start,
        notes=_notes(config) + [f"eval took {time.time() - t_eval:.1f}s"])
    if jax.process_index() == 0:
        report_lib.write(rep, workdir)
        print(report_lib.table(rep))
    return rep


def fit(config: mlc.ConfigDict, workdir: str, *, tokenizer=None, devices=None) -> Fit:
    """Runs (or resumes) every stage of ``config`` in ``workdir``; ``devices`` defaults to all."""
    chash = config_lib.config_hash(config)
    if jax.process_index() == 0:
        fileio.write_text(fileio.join(workdir, "config.json"), config_lib.to_json(config))

    # ------------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.Rules.from_config(config)
    log.info("mesh %s over %d devices (%d processes), sharding %s", dict(mesh.shape),
             mesh.devices.size, jax.process_count(), config.sharding)

    # ------------------------------------------------------------------- model, born sharded
    tok = tokenizer or tokenizer_lib.load(config.model.tokenizer, config.cache_dir)
    graphdef, params = init_params(config, tok, mesh, rules)
    log.info("model: %s params", f"{vlm.num_params(params):,}")

    # ------------------------------------------------------------------- restore
    mngr = checkpoint.manager(workdir, config.save.keep, asynchronous=config.save.asynchronous)
    done_stages: dict[str, int] = {}
    step0 = checkpoint.latest(mngr)
    resume = None
    if step0 is not None:
        meta = checkpoint.restore_meta(mngr, step0)
        done_stages = meta["done_stages"]
        resume = (step0, meta)
        log.info("resuming from %s step %d (%s)", workdir, step0, meta["stage"])
    if config.checkpoint and resume is None:
        params = _init_from(config.checkpoint, params)

    # ------------------------------------------------------------------- stages
    global_step, losses = 0, {}
    watch = distributed.PreemptionWatch()
    try:
        for name, stage in config.stages.items():
            if stage.steps <= 0:
                continue
            if name in done_stages:
                global_step = done_stages[name]
                if resume and resume[0] == global_step:
                    params = _restore_params(mngr, global_step, params)
                continue
            ctx = _StageCtx(name, stage, config, mesh, rules, graphdef, tok, mngr, chash,
                            workdir, watch)
            params, global_step, losses[name], done_stages = ctx.train(
                params, global_step, done_stages, resume)
            resume = None
    finally:
        watch.close()
        mngr.wait_until_finished()
    return Fit(graphdef, params, global_step, losses, mesh)


def _notes(config) -> list[str]:
    notes = []
    rand = [a for a, e in config.model.encoders.items() if e.init == "random"]
    if rand or config.model.llm.init == "random":
        notes.append("random-init (not pretrained): " + ", ".join(
            rand + (["llm"] if config.model.llm.init == "random" else [])))
    return notes


def _init_from(path: str, params):
    """Params from the latest checkpoint of another run (``path``: its workdir)."""
    src = checkpoint.manager(path.removesuffix("/checkpoints"), keep=1, read_only=True)
    step = checkpoint.latest(src)
    if step is None:
        raise FileNotFoundError(f"config.checkpoint={path}: no checkpoint found there; point it "
                                "at a run's workdir (the folder holding checkpoints/)")
    log.info("initialising params from %s step %d", path, step)
    return _restore_params(src, step, params)


def _restore_params(mngr, step, params):
    state, _ = checkpoint.restore(mngr, step,
                                  {"params": checkpoint.abstract(nnx.to_pure_dict(params))})
    nnx.replace_by_pure_dict(params, state["params"])
    return params


@dataclasses.dataclass
class _StageCtx:
    name: str
    stage: mlc.ConfigDict
    config: mlc.ConfigDict
    mesh: object
    rules: sharding.Rules
    graphdef: object
    tok: object
    mngr: object
    chash: str
    workdir: str
    watch: distributed.PreemptionWatch

    def data(self, model: vlm.Cambrian):
        config, stage = self.config, self.stage
        div = sharding.batch_divisor(self.mesh) * stage.grad_accum
        if stage.batch_size % div:
            raise ValueError(
                f"stages.{self.name}.batch_size={stage.batch_size} must be a multiple of "
                f"{div} (mesh data*fsdp={sharding.batch_divisor(self.mesh)} x "
                f"grad_accum={stage.grad_accum})")
        path, image_root = loader.resolve(stage.data, stage.image_root, config.cache_dir,
                                          config.data.synthetic.to_dict())
        enc = loader.Encoder(
            template=chat_templates.get(config.model.template), tokenizer=self.tok,
            num_image_tokens=model.num_image_tokens, max_len=config.model.max_len,
            image_size=model.host_image_size(config.data.image_size), image_root=image_root,
            pad_color=model.pad_color, skip_bad=config.data.skip_bad,
            system=config.model.system_prompt)
        data = config.data
        ds = loader.dataset(loader.load_records(path), enc, batch_size=stage.batch_size,
                            num_batches=stage.steps,
                            seed=config.seed * 1000 + list(config.stages).index(self.name),
                            num_workers=data.num_workers, pack=data.pack,
                            max_images_per_row=data.max_images_per_row)
        it = loader.Peek(iter(ds), min(data.efficiency_batches, stage.steps))
        self._log_efficiency(loader.efficiency(it.head()))
        return it

    def _log_efficiency(self, eff: dict) -> None:
        """Logs how full the stage's first batches are; writes ``<stage>_data.json``."""
        eff = {"pack": self.config.data.pack, **eff}
        if eff["batches"]:
            log.info("%s data (first %d batches, %s): %.1f%% of token slots real, %.1f%% "
                     "supervised, %.2f examples/row, %.1f%% of image slots used", self.name,
                     eff["batches"], "packed" if eff["pack"] else "one example per row",
                     100 * eff["token_efficiency"], 100 * eff["supervised_efficiency"],
                     eff["examples_per_row"], 100 * eff["image_slot_use"])
        if jax.process_index() == 0:
            fileio.write_text(fileio.join(self.workdir, f"{self.name}_data.json"),
                              json.dumps(eff, indent=2))

    def train(self, params, global_step: int, done_stages: dict, resume):
        name, stage, config, mesh = self.name, self.stage, self.config, self.mesh
        model = nnx.merge(self.graphdef, params)
        gd, trainable, frozen = nnx.split(model, optim.trainable_filter(stage.trainable), ...)
        if not jax.tree.leaves(trainable):
            raise ValueError(f"stages.{name}.trainable={stage.trainable!r} matches no parameter")
        tx = optim.make(stage, trainable)
        tr_sh = sharding.state_shardings(trainable, mesh, self.rules)
        opt_sh = sharding.state_shardings(jax.eval_shape(tx.init, trainable), mesh, self.rules)
        opt_state = jax.jit(tx.init, out_shardings=opt_sh)(trainable)
        it = self.data(model)

        start = 0
        if resume is not None and resume[1]["stage"] == name:
            step, _ = resume
            target = checkpoint.abstract({"params": nnx.to_pure_dict(params), "opt": opt_state})
            state, meta = checkpoint.restore(self.mngr, step, target, it)
            nnx.replace_by_pure_dict(params, state["params"])
            opt_state = state["opt"]
            gd, trainable, frozen = nnx.split(nnx.merge(self.graphdef, params),
                                              optim.trainable_filter(stage.trainable), ...)
            start = meta["stage_step"]
        log.info("%s: %s trainable params, %d steps, batch %d (x%d accumulation)", name,
                 f"{vlm.num_params(trainable):,}", stage.steps, stage.batch_size,
                 stage.grad_accum)

        step_fn = make_train_step(gd, tx, grad_accum=stage.grad_accum,
                                  loss_chunk=self.config.loss_chunk,
                                  packed=self.config.data.pack, mesh=mesh,
                                  rules=self.rules, shardings=(tr_sh, opt_sh))
        bar = tqdm(range(start, stage.steps), desc=name, initial=start, total=stage.steps,
                   disable=jax.process_index() != 0)
        t0, losses, pending = time.time(), [], []
        seen = 0  # conversations trained on (a packed row holds several)
        for s in bar:
            host = next(it)
            seen += loader.examples_in(host) * jax.process_count()
            batch = sharding.put_batch(host, mesh)
            trainable, opt_state, m = step_fn(trainable, frozen, opt_state, batch)
            pending.append(m["loss"])
            last = s + 1 == stage.steps
            if (s + 1) % config.log_every == 0 or last:
                losses += [float(x) for x in jax.device_get(pending)]
                pending = []
                if not math.isfinite(losses[-1]):
                    raise FloatingPointError(
                        f"{name} step {s + 1}: loss is {losses[-1]}; lower the LR "
                        f"(stages.{name}.lr) or check the data")
                ex_s = seen / (time.time() - t0)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", ex_s=f"{ex_s:.1f}")
                log.info("%s step %d loss %.4f grad_norm %.3f", name, s + 1, losses[-1],
                         float(m["grad_norm"]))
            preempted = not last and self.watch.reached(global_step + s + 1)
            every = config.save.every and (s + 1) % config.save.every == 0
            if last or every or preempted:
                params = nnx.state(nnx.merge(gd, trainable, frozen), nnx.Param)
                if last:
                    done_stages = {**done_stages, name: global_step + stage.steps}
                meta = {"stage": name, "stage_step": s + 1, "done_stages": done_stages,
                        "config_hash": self.chash}
                state = {"params": nnx.to_pure_dict(params)}
                if not last:
                    state["opt"] = opt_state
                checkpoint.save(self.mngr, global_step + s + 1, state, meta, it)
            if preempted:
                self.mngr.wait_until_finished()
                raise distributed.Preempted(global_step + s + 1)
        bar.close()
        if pending:
            losses += [float(x) for x in jax.device_get(pending)]
        if jax.process_index() == 0:
            fileio.write_text(fileio.join(self.workdir, f"{name}_losses.json"),
                              json.dumps(losses))
        params = nnx.state(nnx.merge(gd, trainable, frozen), nnx.Param)
        return params, global_step + stage.steps, losses, done_stages
