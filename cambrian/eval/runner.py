"""Batched, batch-invariant, resumable evaluation of a model on a benchmark suite.

For each benchmark (read from its own folder, ``suite.folder``): prompts are built with the run's
chat template, sorted by length and decoded greedily in fixed-size batches (left padding, bucketed
lengths, so one compiled program serves the whole suite), data-parallel over this process's
devices, turned into text exactly as Cambrian-1's eval scripts do (``decoded.py``), then scored.
Predictions are saved and resumed as ``predictions.py`` describes
(``<workdir>/predictions/<benchmark>.jsonl``); ``eval.vision=off`` evaluates with no visual tokens
(the paper's "who's answering" check) into ``predictions_vision_off/``.

Several processes (hosts) split each benchmark's remaining items between them: every host takes
every ``process_count``-th item of the length-sorted list and appends to its own part file. The
decode loop has no cross-host collective, so hosts may run different numbers of batches; the
parameters are gathered onto every host once, before it (each host then holds a full copy,
replicated over its devices, as in a one-host eval). The workdir must be shared by all hosts (as
for checkpoints). The merged file lists the benchmark's items in their load order, whatever the
number of hosts, batch size or interruptions.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from cambrian import fileio, sharding
from cambrian.data import chat_templates, conversation
from cambrian.eval import attention, decoded, predictions
from cambrian.eval import suite as suite_lib
from cambrian.models import vlm

log = logging.getLogger("cambrian")

LENGTH_BUCKET = 32


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _local_copy(state):
    """Parameters -> arrays this process can address: one gather of any leaf sharded over other
    hosts, so that decoding never waits on another host."""
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.sharding.is_fully_replicated:
            return x.addressable_data(0)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, state)


def _llm_in_compute_dtype(state, dtype: str):
    """The LLM's floating-point weights stored in its compute dtype: the LLM casts every weight
    to that dtype where it uses it, so the outputs are the same and a bf16 run's replicated eval
    copy takes half the memory of its fp32 training masters."""
    if dtype == "float32":
        return state
    state["llm"] = jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, state["llm"])
    return state


_DECODERS: list[tuple] = []  # (graphdef, settings, jitted decoder), most recent last


def _generate_fn(graphdef, max_new_tokens: int, eos_ids: tuple[int, ...], vision: bool):
    """One jitted decoder per model structure and setting, so later runs in the same process (a
    resumed or repeated evaluation) reuse its compiled programs. (GraphDefs compare equal but
    do not hash, hence the list.)"""
    settings = (max_new_tokens, eos_ids, vision)
    for g, s, fn in _DECODERS:
        if s == settings and g == graphdef:
            return fn
    fn = vlm.generate_fn(graphdef, max_new_tokens=max_new_tokens, eos_ids=eos_ids, vision=vision)
    _DECODERS[:] = [*_DECODERS[-7:], (graphdef, settings, fn)]
    return fn


def _stop_ids(tokenizer, template) -> tuple[int, ...]:
    ids = {tokenizer.eos_token_id}
    stop = tokenizer.convert_tokens_to_ids(template.stop)
    if isinstance(stop, int) and stop != tokenizer.unk_token_id:
        ids.add(stop)
    return tuple(sorted(i for i in ids if i is not None))


def make_batch(prompts: list[np.ndarray], images: list[np.ndarray | None], host_images,
               batch_size: int) -> dict:
    """Left-padded prompt batch, padded to ``batch_size`` rows and a bucketed length, with each
    encoder's own image (``host_images``: the model's ``host_images()``)."""
    t = max(len(p) for p in prompts)
    t = -(-t // LENGTH_BUCKET) * LENGTH_BUCKET
    b = batch_size
    tokens = np.zeros((b, t), np.int32)
    seg = np.zeros((b, t), np.int32)
    for i, p in enumerate(prompts):
        tokens[i, t - len(p):] = p
        seg[i, t - len(p):] = 1
    pixels = host_images.batch(list(images), b)
    return {"tokens": tokens, "segment_ids": seg, "image": pixels["image"],
            "letterbox": pixels["letterbox"]}


@dataclasses.dataclass
class _Decoder:
    """Greedy decoding of prompts on this process's devices: what does not change between
    benchmarks."""

    graphdef: nnx.GraphDef
    state: nnx.State
    mesh: Mesh
    tokenizer: object
    config: mlc.ConfigDict
    num_image_tokens: int
    host_images: object  # the model's host_images()

    def __call__(self, todo: list[dict], *, vision: bool, max_new_tokens: int,
                 writer: predictions.Writer, desc: str) -> None:
        """Decodes this host's share of ``todo``, handing each batch's records to ``writer``."""
        template = chat_templates.get(self.config.model.template)
        stop_ids = _stop_ids(self.tokenizer, template)
        generate = _generate_fn(self.graphdef, max_new_tokens, stop_ids, vision)
        host, hosts, bs = jax.process_index(), jax.process_count(), self.config.eval.batch_size
        shard_rows = self.mesh.devices.size > 1 and bs % self.mesh.devices.size == 0
        prompts = [conversation.encode_prompt(
            s["prompt"], template, self.tokenizer, self.num_image_tokens,
            with_image=vision and s.get("image") is not None,
            system=self.config.model.system_prompt) for s in todo]
        # Every host gets the same mix of lengths; predictions do not depend on the batch.
        order = np.argsort([len(p) for p in prompts], kind="stable")[host::hosts]
        for i in tqdm(range(0, len(order), bs), desc=desc, leave=False, disable=host != 0):
            idx = order[i:i + bs]
            batch = make_batch([prompts[j] for j in idx],
                               [todo[j].get("image") if vision else None for j in idx],
                               self.host_images, bs)
            if shard_rows:
                batch = jax.device_put(batch, sharding.batch_sharding(self.mesh))
            toks, lens = jax.device_get(generate(self.state, batch))
            new = []
            for r, j in enumerate(idx):
                rec = {k: v for k, v in todo[j].items() if k != "image"}
                # row by row, from the row's own tokens: batch-invariant like the tokens
                rec["prediction"] = decoded.prediction_text(self.tokenizer, toks[r, : lens[r]],
                                                            stop_ids)
                new.append(rec)
            writer.add(new)


def evaluate(model: vlm.Cambrian, config: mlc.ConfigDict, tokenizer, workdir: str) -> dict:
    """Runs the configured suite; returns ``{benchmark: {"score", "n", ...}}`` per vision mode.

    Every process of a multi-host run calls it; each decodes its share and all return the same
    scores.
    """
    benches = suite_lib.get(config.eval.suite)
    modes = {"on": [True], "off": [False], "both": [True, False]}[config.eval.vision]
    host, hosts = jax.process_index(), jax.process_count()
    graphdef, state = nnx.split(model)
    # Data-parallel decoding over this process's devices: params replicated, batch rows sharded.
    mesh = Mesh(np.asarray(jax.local_devices()).reshape(-1, 1, 1), sharding.MESH_AXES)
    state = _llm_in_compute_dtype(_local_copy(state), config.model.dtype)
    state = jax.device_put(state, sharding.replicated(mesh))
    host_images = model.host_images()
    decode = _Decoder(graphdef, state, mesh, tokenizer, config, model.num_image_tokens,
                      host_images)
    attn = None
    if config.eval.save_attention:
        attn = attention.Saver(graphdef, state, config, host_images=host_images,
                               batch_size=config.eval.batch_size)
    results: dict[str, dict] = {}
    for vision in modes:
        sub = "predictions" if vision else "predictions_vision_off"
        fileio.makedirs(fileio.join(workdir, sub))
        for bench in benches:
            t0 = time.time()
            samples = bench.load(suite_lib.folder(bench, config), limit=config.eval.limit or None)
            ids = [str(s["id"]) for s in samples]
            path = fileio.join(workdir, sub, f"{bench.NAME}.jsonl")
            done = predictions.saved(path)
            tag = f"eval {sub}/{bench.NAME}"
            _barrier(f"{tag} read")  # no host appends before every host has read the same set
            todo = [s for s in samples if str(s["id"]) not in done]
            run = decode
            if getattr(bench, "SEARCH", False):  # guided visual search (cambrian/tools/vstar.py)
                from cambrian.tools import vstar_model

                run = vstar_model.SearchDecoder(decode)
            run(todo, vision=vision,
                   max_new_tokens=config.eval.max_new_tokens or bench.MAX_NEW_TOKENS,
                   writer=predictions.Writer(predictions.part_path(path, host, hosts)),
                   desc=f"eval {bench.NAME}" + ("" if vision else " (vision off)"))
            _barrier(f"{tag} decoded")
            done = predictions.saved(path) if todo else done
            _barrier(f"{tag} merged")  # every host has read the parts before they are removed
            if host == 0 and (todo or predictions.part_files(path)):
                predictions.merge(path, done, ids)
            res = bench.score([done[i] for i in ids], config.eval.profile)
            res.update(group=bench.GROUP, seconds=round(time.time() - t0, 2))
            results[bench.NAME if vision else f"{bench.NAME}/vision_off"] = res
            if attn and vision and host == 0:
                attn.save(bench.NAME, samples, workdir)
    _barrier("eval done")  # the merged files are complete when any host returns
    return results
