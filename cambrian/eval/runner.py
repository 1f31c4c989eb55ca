"""Batched, batch-invariant, resumable evaluation of a model on a benchmark suite.

For each benchmark: prompts are built with the run's chat template, sorted by length and decoded
greedily in fixed-size batches (left padding, bucketed lengths, so one compiled program serves the
whole suite), data-parallel over this process's devices. Every prediction is appended to
``<workdir>/predictions/<benchmark>.jsonl`` as soon as its batch finishes (the file is rewritten in
item order when the benchmark ends); a rerun skips the ids already there. ``eval.vision=off``
evaluates with no visual tokens (the paper's "who's answering" check) into
``predictions_vision_off/``.

Several processes (hosts) split each benchmark's remaining items between them: every host takes
every ``process_count``-th item of the length-sorted list and appends its predictions to its own
part file ``<benchmark>.jsonl.part<k>-of-<n>``. Once all hosts are done, process 0 merges the parts
into ``<benchmark>.jsonl``. The decode loop has no cross-host collective, so hosts may run different
numbers of batches; the parameters are gathered onto every host once, before it (each host then
holds a full copy, replicated over its devices, as in a one-host eval). The workdir must be shared
by all hosts (as for checkpoints). The merged file lists the benchmark's items in their load order,
whatever the number of hosts, batch size or interruptions, and a rerun after an interruption (with
any number of hosts) decodes only the ids that no file holds yet.
"""

from __future__ import annotations

import json
import logging
import time

import fsspec
import jax
import ml_collections as mlc
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from cambrian import fileio, sharding
from cambrian.data import chat_templates, conversation, loader
from cambrian.eval import attention
from cambrian.eval import suite as suite_lib
from cambrian.eval.benchmarks import synthetic
from cambrian.models import vlm

log = logging.getLogger("cambrian")

LENGTH_BUCKET = 32
PART = ".part{k}-of-{n}"


def _read_done(path: str) -> tuple[dict[str, dict], bool]:
    """({id: record}, whether the file lacks its final newline) of a predictions file.

    A cut last line is what a process killed in the middle of an append leaves behind; its item
    is decoded again. Any other malformed line is an error.
    """
    if not fileio.exists(path):
        return {}, False
    with fileio.open_file(path) as fh:
        lines = fh.read().split("\n")
    done = {}
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):
                log.warning("%s: ignoring the unfinished last line %d", path, i)
                break
            raise ValueError(f"{path}:line {i}: malformed JSON ({e.msg}); delete the line to "
                             "decode that item again") from e
        done[str(rec["id"])] = rec
    return done, bool(lines[-1].strip())


def _part_files(path: str) -> list[str]:
    """Part files of ``path`` left by any number of hosts, sorted by name."""
    fs, p = fsspec.core.url_to_fs(path)
    folder = path.rsplit("/", 1)[0]
    return [fileio.join(folder, f.rsplit("/", 1)[-1])
            for f in sorted(fs.glob(p + PART.format(k="*", n="*")))]


def _read_all(path: str) -> dict[str, dict]:
    """Every saved prediction of one benchmark: the merged file and all part files."""
    done: dict[str, dict] = {}
    for f in [path, *_part_files(path)]:
        done.update(_read_done(f)[0])
    return done


def _merge(path: str, done: dict[str, dict], ids: list[str]) -> None:
    """Writes ``done`` to ``path`` in the order of ``ids`` (then any other saved ids), atomically,
    and removes the part files."""
    fs, p = fsspec.core.url_to_fs(path)
    parts = _part_files(path)
    order = list(dict.fromkeys([*ids, *done]))  # this run's items first, then older extras
    tmp = path + ".tmp"
    with fileio.open_file(tmp, "w") as fh:
        for i in order:
            if i in done:
                fh.write(json.dumps(done[i], default=_json_default) + "\n")
    fs.mv(p + ".tmp", p)
    for f in parts:
        fs.rm(fsspec.core.url_to_fs(f)[1])


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


def _strip_stop(text: str, template) -> str:
    return text.split(template.stop)[0].strip()


def make_batch(prompts: list[np.ndarray], images: list[np.ndarray | None], size: int,
               batch_size: int, pad_color) -> dict:
    """Left-padded prompt batch, padded to ``batch_size`` rows and a bucketed length."""
    t = max(len(p) for p in prompts)
    t = -(-t // LENGTH_BUCKET) * LENGTH_BUCKET
    b = batch_size
    tokens = np.zeros((b, t), np.int32)
    seg = np.zeros((b, t), np.int32)
    img = np.zeros((b, size, size, 3), np.uint8)
    box = np.tile(np.asarray([0, 0, 1, 1], np.float32), (b, 1))
    for i, (p, im) in enumerate(zip(prompts, images)):
        tokens[i, t - len(p):] = p
        seg[i, t - len(p):] = 1
        if im is not None:
            img[i], box[i] = loader.square_image(im, size, pad_color)
    return {"tokens": tokens, "segment_ids": seg, "image": img, "image_box": box}


def evaluate(model: vlm.Cambrian, config: mlc.ConfigDict, tokenizer, workdir: str) -> dict:
    """Runs the configured suite; returns ``{benchmark: {"score", "n", ...}}`` per vision mode.

    Every process of a multi-host run calls it; each decodes its share and all return the same
    scores.
    """
    template = chat_templates.get(config.model.template)
    eos = _stop_ids(tokenizer, template)
    benches = suite_lib.get(config.eval.suite)
    root = config.eval.root
    if config.eval.suite == "synthetic" and not root:
        root = synthetic.root(config.cache_dir, config.data.synthetic.to_dict())
    modes = {"on": [True], "off": [False], "both": [True, False]}[config.eval.vision]
    host, hosts = jax.process_index(), jax.process_count()
    graphdef, state = nnx.split(model)
    # Data-parallel decoding over this process's devices: params replicated, batch rows sharded.
    mesh = Mesh(np.asarray(jax.local_devices()).reshape(-1, 1, 1), sharding.MESH_AXES)
    state = jax.device_put(_local_copy(state), sharding.replicated(mesh))
    size, pad_color = model.host_image_size(config.data.image_size), model.pad_color
    bs = config.eval.batch_size
    shard_rows = mesh.devices.size > 1 and bs % mesh.devices.size == 0
    attn = attention.Saver(graphdef, state, config, image_size=size, pad_color=pad_color,
                           batch_size=bs) if config.eval.save_attention else None
    results: dict[str, dict] = {}
    for vision in modes:
        sub = "predictions" if vision else "predictions_vision_off"
        fileio.makedirs(fileio.join(workdir, sub))
        for bench in benches:
            t0 = time.time()
            samples = bench.load(root, limit=config.eval.limit or None)
            path = fileio.join(workdir, sub, f"{bench.NAME}.jsonl")
            done = _read_all(path)
            tag = f"eval {sub}/{bench.NAME}"
            _barrier(f"{tag} read")  # no host appends before every host has read the same set
            todo = [s for s in samples if str(s["id"]) not in done]
            max_new = config.eval.max_new_tokens or bench.MAX_NEW_TOKENS
            generate = _generate_fn(graphdef, max_new, eos, vision)
            prompts = [conversation.encode_prompt(
                s["prompt"], template, tokenizer, model.num_image_tokens,
                with_image=vision and s.get("image") is not None,
                system=config.model.system_prompt) for s in todo]
            # Every host gets the same mix of lengths; predictions do not depend on the batch.
            order = np.argsort([len(p) for p in prompts], kind="stable")[host::hosts]
            writer = _PredictionWriter(path + (PART.format(k=host, n=hosts) if hosts > 1 else ""))
            for i in tqdm(range(0, len(order), bs), desc=f"eval {bench.NAME}"
                          + ("" if vision else " (vision off)"), leave=False, disable=host != 0):
                idx = order[i:i + bs]
                batch = make_batch([prompts[j] for j in idx],
                                   [todo[j].get("image") if vision else None for j in idx],
                                   size, bs, pad_color)
                if shard_rows:
                    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
                toks, lens = jax.device_get(generate(state, batch))
                new = []
                for r, j in enumerate(idx):
                    text = tokenizer.decode(toks[r, : lens[r]], skip_special_tokens=False)
                    rec = {k: v for k, v in todo[j].items() if k != "image"}
                    rec["prediction"] = _strip_stop(text, template)
                    new.append(rec)
                writer.add(new)
            _barrier(f"{tag} decoded")
            ids = [str(s["id"]) for s in samples]
            done = _read_all(path) if todo else done
            _barrier(f"{tag} merged")  # every host has read the parts before they are removed
            if host == 0 and (todo or _part_files(path)):
                _merge(path, done, ids)
            res = bench.score([done[i] for i in ids], config.eval.profile)
            res.update(group=bench.GROUP, seconds=round(time.time() - t0, 2))
            results[bench.NAME if vision else f"{bench.NAME}/vision_off"] = res
            if attn and vision and host == 0:
                attn.save(bench.NAME, samples, workdir)
    _barrier("eval done")  # the merged files are complete when any host returns
    return results


class _PredictionWriter:
    """Saves one file's predictions as each batch finishes: appended locally; on gs:// (no
    appends) the file is rewritten."""

    def __init__(self, path: str):
        self.path = path
        self.records, torn = _read_done(path)
        self.remote = fileio.is_remote(path)
        if torn:  # rewrite without the cut line, or the next append would be glued to it
            self._write(self.records.values(), "w")

    def add(self, records: list[dict]) -> None:
        for rec in records:
            self.records[str(rec["id"])] = rec
        if self.remote:
            self._write(self.records.values(), "w")
        else:
            self._write(records, "a")

    def _write(self, rows, mode: str) -> None:
        with fileio.open_file(self.path, mode) as fh:
            for rec in rows:
                fh.write(json.dumps(rec, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")
