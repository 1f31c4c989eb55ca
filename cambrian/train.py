"""The one trainer: mesh -> model (born sharded) -> restore -> stage 1 -> stage 2 -> eval -> report.

Each stage trains the parameters its ``trainable`` regex selects (the rest is frozen and has no
optimizer state), on its own data, with AdamW + warmup/cosine. Parameters, optimizer state and
batches are sharded over ``config.mesh`` by the logical-axis rules of ``config.sharding`` from the
moment they are created. A checkpoint is written at the end of every stage, every
``save.every`` steps and on SIGTERM; rerunning the same command resumes from the latest one with
the exact next batch. Every ``log_every`` steps the run record (``runlog``: metrics.jsonl,
TensorBoard) gets a row; a bad record or a non-finite loss stops the run with one line
(``runlog.RunError``), after saving the last good state where one is due. An eval-only run is a
config whose stages have zero steps.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from cambrian import (
    checkpoint,
    distributed,
    fileio,
    optim,
    progress,
    runlog,
    sharding,
    train_data,
)
from cambrian import config as config_lib
from cambrian.data import tokenizer as tokenizer_lib
from cambrian.data.readers import DataError
from cambrian.models import llm, losses, vlm

log = logging.getLogger("cambrian")

DTYPES = ("float32", "bfloat16")  # model.dtype / model.encoder_dtype


# ----------------------------------------------------------------------------------------- model


def build_model(config: mlc.ConfigDict, tokenizer=None, *, load_pretrained: bool = True,
                vocab_size: int | None = None) -> vlm.Cambrian:
    """The configured model with the run's numerics: the LLM computes in ``model.dtype`` (its
    weights stay fp32 masters, cast per use) with ``config.remat``; frozen encoders store and
    run in ``model.encoder_dtype``.

    ``vocab_size`` replaces ``len(tokenizer)`` (abstract models of configs whose tokenizer is
    not on this machine)."""
    dt, edt = config.model.dtype, config.model.encoder_dtype
    if dt not in DTYPES or edt not in DTYPES:
        raise ValueError(f"model.dtype={dt!r} / model.encoder_dtype={edt!r}; expected one of "
                         f"{DTYPES}")
    if config.remat not in ("none", *llm.REMAT_POLICIES):
        raise ValueError(f"config.remat={config.remat!r}; expected none, "
                         f"{', '.join(llm.REMAT_POLICIES)}")
    model = vlm.Cambrian(config.model, vocab_size=vocab_size or len(tokenizer),
                         rngs=nnx.Rngs(config.seed), load_pretrained=load_pretrained,
                         remat=config.remat)
    return model


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
    # Converters read checkpoints into host memory: build there, not on accelerator 0 (an 8B
    # model does not fit one chip), then each process puts only its own shards on its devices.
    with jax.default_device(jax.local_devices(backend="cpu")[0]):
        model = build_model(config, tokenizer)
    graphdef, params = nnx.split(model, nnx.Param)
    shardings = sharding.state_shardings(params, mesh, rules)
    # params holds Variables where shardings holds NamedShardings: map over the Variables
    params = jax.tree.map(lambda v, s: v.replace(sharding.put_host_array(np.asarray(v[...]), s)),
                          params, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable))
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
    (``losses.chunked_loss_fn``) instead of from whole float32[B, T, V] logits. ``packed=False``
    promises one conversation per row, which lets fused attention drop its mask. ``mesh`` +
    ``rules`` switch on the activation sharding constraints; ``shardings`` = (trainable, opt)
    shardings pins the outputs to the inputs' layout.
    """

    def sums(trainable, frozen, batch):
        def f(tr):
            model = nnx.merge(graphdef, tr, frozen, copy=True)
            logits, out = model(batch, with_logits=not loss_chunk, packed=packed)
            if loss_chunk:
                lm = model.llm
                path = ("llm", lm.output_name)
                loss, n = losses.chunked_loss_fn(
                    lm.logits, out["hidden"], lm.output_weight(), batch, out["segment_ids"],
                    loss_chunk, weight_grad=_entry(trainable, path) is not None,
                    weight_sharding=_entry(shardings[0], path) if shardings else None)
            else:
                loss, n = losses.loss_fn(logits, batch, out["segment_ids"])
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
    """What training produced: the model split as ``graphdef, params`` and per-stage losses
    (the loss at each logged step, those before a resume included)."""

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
    # ------------------------------------------------------------------- eval hooks
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
    main = jax.process_index() == 0
    if main:
        fileio.write_text(fileio.join(workdir, "config.json"), config_lib.to_json(config))

    # ------------------------------------------------------------------- mesh
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.Rules.from_config(config)
    log.info("mesh %s over %d devices (%d processes), sharding %s", dict(mesh.shape),
             mesh.devices.size, jax.process_count(), config.sharding)

    # ------------------------------------------------------------------- run records
    mngr = checkpoint.manager(workdir, config.save.keep, asynchronous=config.save.asynchronous)
    resume = checkpoint.Resume.latest(mngr)
    recorder = runlog.Recorder(config, workdir, restored_step=resume.step if resume else 0,
                               main=main, devices=mesh.devices.size,
                               device_kind=mesh.devices.flat[0].device_kind)

    # ------------------------------------------------------------------- model, born sharded
    tok = tokenizer or tokenizer_lib.load(config.model.tokenizer, config.cache_dir)
    graphdef, params = init_params(config, tok, mesh, rules)
    log.info("model: %s params", f"{vlm.num_params(params):,}")

    # ------------------------------------------------------------------- restore
    # Where each stage starts, first match wins:
    # 1. a stage this workdir finished is skipped; when the latest checkpoint is its end, its
    #    params are restored for the next stage;
    # 2. the stage the latest checkpoint interrupted restores params, optimizer state and the
    #    data position from it (train_stage) and continues with the exact next batch;
    # 3. without a checkpoint here, config.checkpoint (another run's workdir) gives the params;
    # 4. else the params as initialised above.
    done = dict(resume.done_stages) if resume else {}
    if resume:
        log.info("resuming from %s step %d (%s)", workdir, resume.step, resume.stage)
    elif config.checkpoint:
        params = checkpoint.init_from(config.checkpoint, params)

    # ------------------------------------------------------------------- stages
    watch = distributed.PreemptionWatch()
    try:
        for name, stage in config.stages.items():
            if stage.steps <= 0:
                continue
            if name in done:
                if resume.step == done[name]:
                    params = checkpoint.restore_params(mngr, resume.step, params)
                continue
            params, done = train_stage(
                config, name, workdir, mesh=mesh, graphdef=graphdef, params=params,
                tokenizer=tok, mngr=mngr, done_stages=done,
                resume=resume if resume and resume.stage == name else None, watch=watch,
                recorder=recorder)
    finally:
        watch.close()
        mngr.wait_until_finished()
        recorder.close()
    losses = {n: recorder.losses(n)[1] for n, st in config.stages.items() if st.steps > 0}
    return Fit(graphdef, params, max(done.values(), default=0), losses, mesh)


def _notes(config) -> list[str]:
    notes = []
    rand = [a for a, e in config.model.encoders.items() if e.init == "random"]
    if rand or config.model.llm.init == "random":
        notes.append("random-init (not pretrained): " + ", ".join(
            rand + (["llm"] if config.model.llm.init == "random" else [])))
    return notes


# ----------------------------------------------------------------------------------------- stage


def train_stage(config: mlc.ConfigDict, name: str, workdir: str, *, mesh, graphdef, params,
                tokenizer, mngr, done_stages: dict[str, int], resume: checkpoint.Resume | None,
                watch: distributed.PreemptionWatch, recorder: runlog.Recorder):
    """Trains stage ``name`` from its start, or from ``resume`` (a checkpoint it wrote);
    returns (params, done_stages with this stage added)."""
    stage = config.stages[name]
    first_step = max(done_stages.values(), default=0)  # global step before the stage's first
    rules = sharding.Rules.from_config(config)
    main = jax.process_index() == 0

    # ------------------------------------------------------------------- trainable / frozen
    model = nnx.merge(graphdef, params)
    trainable_filter = optim.trainable_filter(stage.trainable)
    gd, trainable, frozen = nnx.split(model, trainable_filter, ...)
    if not jax.tree.leaves(trainable):
        raise ValueError(f"stages.{name}.trainable={stage.trainable!r} matches no parameter")

    # ------------------------------------------------------------------- optimizer, born sharded
    tx = optim.make(stage, trainable)
    tr_sh = sharding.state_shardings(trainable, mesh, rules)
    opt_sh = sharding.state_shardings(jax.eval_shape(tx.init, trainable), mesh, rules)
    opt_state = jax.jit(tx.init, out_shardings=opt_sh)(trainable)

    # ------------------------------------------------------------------- data
    try:
        it = train_data.stage_data(config, name, model, tokenizer, mesh, workdir)
    except DataError as e:
        raise runlog.RunError(f"{name} data: {e}; {train_data.FIX}") from e

    # ------------------------------------------------------------------- restore
    # One read of the checkpoint: 1. params, 2. optimizer state, 3. the data iterator's
    # position, 4. the stage step to continue from (its meta).
    start = 0
    if resume is not None:
        target = checkpoint.abstract({"params": nnx.to_pure_dict(params), "opt": opt_state})
        state, meta = checkpoint.restore(mngr, resume.step, target, it)
        nnx.replace_by_pure_dict(params, state["params"])
        opt_state = state["opt"]
        gd, trainable, frozen = nnx.split(nnx.merge(graphdef, params), trainable_filter, ...)
        start = meta["stage_step"]
    log.info("%s: %s trainable params, %d steps, batch %d (x%d accumulation)", name,
             f"{vlm.num_params(trainable):,}", stage.steps, stage.batch_size, stage.grad_accum)

    # ------------------------------------------------------------------- loop
    step_fn = make_train_step(gd, tx, grad_accum=stage.grad_accum, loss_chunk=config.loss_chunk,
                              packed=config.data.pack, mesh=mesh, rules=rules,
                              shardings=(tr_sh, opt_sh))
    counts = jax.jit(train_data.batch_counts, out_shardings=sharding.replicated(mesh))
    groups = optim.lr_groups(trainable, stage)
    optim.learning_rates(stage, groups, 1)  # compiles the schedule's ops outside the timing
    flops = None  # of one step, counted where a peak makes it useful
    pending = []  # (stage step, device metrics) since the last synchronisation
    t_sync = time.time()
    chash = config_lib.config_hash(config)

    def meta(s: int) -> dict:  # of a checkpoint at stage step s (done_stages as it is then)
        return {"stage": name, "stage_step": s, "done_stages": done_stages, "config_hash": chash}

    # the bar closes on errors too, so a one-line error starts a line of its own
    with progress.Bar(name, start, stage.steps, enabled=main) as bar:
        for s in range(start, stage.steps):  # s steps done; this iteration runs step s + 1
            data_state = it.get_state()
            try:
                host = next(it)
            except DataError as e:
                _synced(name, first_step, pending, mngr, stage)  # a NaN state is not worth saving
                saved = _save_last_good(mngr, first_step + s, s > start, functools.partial(
                    _save, mngr, first_step + s, gd, trainable, frozen, opt_state, meta(s),
                    data_state=data_state))
                raise runlog.RunError(f"{name} step {s + 1} (global step {first_step + s + 1}): "
                                      f"{e}; {saved}; {train_data.FIX}") from e
            batch = sharding.put_batch(host, mesh)
            trainable, opt_state, m = step_fn(trainable, frozen, opt_state, batch)
            pending.append((s + 1, {**m, **counts(batch["segment_ids"])}))
            if s == start and recorder.peak:  # counted while the device runs the first step
                flops = step_flops(gd, tx, trainable, frozen, opt_state, batch,
                                   packed=config.data.pack)
            last = s + 1 == stage.steps
            preempted = not last and watch.reached(first_step + s + 1)
            save = last or preempted or bool(config.save.every and (s + 1) % config.save.every == 0)
            logged = last or (s + 1) % config.log_every == 0
            if logged or save or s == start:  # s == start: time the compilation apart
                synced = _synced(name, first_step, pending, mngr, stage)
                now = time.time()
                if logged:
                    recorder.log_step(name, first_step + s + 1, s + 1, synced, now - t_sync,
                                      optim.learning_rates(stage, groups, s + 1), flops)
                bar.sync(s + 1, synced[-1]["loss"])
                pending, t_sync = [], now
            if save:
                if last:
                    done_stages = {**done_stages, name: first_step + s + 1}
                _save(mngr, first_step + s + 1, gd, trainable, frozen, None if last else opt_state,
                      meta(s + 1), data_iter=it)
            if preempted:
                mngr.wait_until_finished()
                raise distributed.Preempted(first_step + s + 1)
    if main:
        steps, losses = recorder.losses(name)
        fileio.write_text(fileio.join(workdir, f"{name}_losses.json"),
                          json.dumps({"stage_steps": steps, "losses": losses}))
    return nnx.state(nnx.merge(gd, trainable, frozen), nnx.Param), done_stages


def _synced(name: str, first_step: int, pending: list, mngr, stage) -> list[dict]:
    """Waits for the pending steps; their metrics as floats. A non-finite loss or gradient norm
    stops the run before anything saves that state."""
    out = []
    for s, m in zip([s for s, _ in pending], jax.device_get([m for _, m in pending])):
        m = {k: float(v) for k, v in m.items()}
        if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
            mngr.wait_until_finished()
            latest = checkpoint.latest(mngr)
            resume = (f"it resumes from the latest checkpoint, step {latest}"
                      if latest is not None else "no checkpoint was written, it starts over")
            raise runlog.RunError(
                f"{name} step {s} (global step {first_step + s}): loss {m['loss']}, gradient "
                f"norm {m['grad_norm']}; this state is not saved. Lower the learning rate "
                f"(stages.{name}.lr={stage.lr:g}), keep stages.{name}.grad_clip > 0 (now "
                f"{stage.grad_clip:g}) or check the data, then rerun the same command: {resume}")
        out.append(m)
    return out


def _save_last_good(mngr, step: int, new: bool, save) -> str:
    """Calls ``save`` (of the state after global ``step``) unless ``new`` is False (nothing
    trained since the restore) or a checkpoint holds it; says where a rerun resumes."""
    mngr.wait_until_finished()
    latest = checkpoint.latest(mngr)
    # With several processes the others are still stepping: none can save alone.
    if new and latest != step and jax.process_count() == 1:
        save()
        mngr.wait_until_finished()
        return f"checkpoint written at step {step}, the last good state"
    return f"the latest checkpoint is step {latest}" if latest is not None else "no checkpoint yet"


def _save(mngr, step: int, graphdef, trainable, frozen, opt_state, meta: dict, *,
          data_iter=None, data_state=None) -> None:
    """Checkpoints the params (and ``opt_state`` unless None: a finished stage needs none)."""
    params = nnx.state(nnx.merge(graphdef, trainable, frozen), nnx.Param)
    state = {"params": nnx.to_pure_dict(params)}
    if opt_state is not None:
        state["opt"] = opt_state
    checkpoint.save(mngr, step, state, meta, data_iter, data_state=data_state)


def step_flops(graphdef, tx: optax.GradientTransformation, trainable, frozen, opt_state, batch,
               *, packed: bool = True) -> float | None:
    """XLA's FLOP count of one training step on ``batch`` (all devices together, remat
    recomputation included), or None if XLA gives none.

    Counted on a loop-free twin of the step (the whole batch at once, whole logits): XLA's
    cost analysis counts a loop body once, so the trainer's own step would be undercounted by
    its microbatch (``grad_accum``) and cross-entropy (``loss_chunk``) loops. Only traced and
    lowered, never compiled or run.
    """
    twin = make_train_step(graphdef, tx, packed=packed)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                          (trainable, frozen, opt_state, batch))
    cost = twin.lower(*shapes).cost_analysis()
    if isinstance(cost, list):
        cost = cost[0] if cost else None
    return float((cost or {}).get("flops", 0.0)) or None
