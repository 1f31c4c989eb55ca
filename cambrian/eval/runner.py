"""Batched, batch-invariant, resumable evaluation of a model on a benchmark suite.

For each benchmark: prompts are built with the run's chat template, sorted by length and decoded
greedily in fixed-size batches (left padding, bucketed lengths, so one compiled program serves the
whole suite), data-parallel over the local devices of ``config.mesh``. Every prediction is
appended to ``<workdir>/predictions/<benchmark>.jsonl`` as soon as its batch finishes; a rerun
skips the ids already there. ``eval.vision=off`` evaluates with no
visual tokens (the paper's "who's answering" check) into ``predictions_vision_off/``.
"""

from __future__ import annotations

import json
import time

import jax
import ml_collections as mlc
import numpy as np
from flax import nnx
from tqdm import tqdm

from cambrian import fileio, sharding
from cambrian.data import chat_templates, conversation, loader
from cambrian.eval import suite as suite_lib
from cambrian.eval.benchmarks import synthetic
from cambrian.models import vlm

LENGTH_BUCKET = 32


def _read_done(path: str) -> dict[str, dict]:
    if not fileio.exists(path):
        return {}
    done = {}
    with fileio.open_file(path) as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                done[str(rec["id"])] = rec
    return done


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
    """Runs the configured suite; returns ``{benchmark: {"score", "n", ...}}`` per vision mode."""
    template = chat_templates.get(config.model.template)
    eos = _stop_ids(tokenizer, template)
    benches = suite_lib.get(config.eval.suite)
    root = config.eval.root
    if config.eval.suite == "synthetic" and not root:
        root = synthetic.root(config.cache_dir, config.data.synthetic.to_dict())
    modes = {"on": [True], "off": [False], "both": [True, False]}[config.eval.vision]
    graphdef, state = nnx.split(model)
    # Data-parallel decoding over the local devices: params replicated, batch rows sharded.
    mesh = sharding.make_mesh(config.mesh) if jax.process_count() == 1 else None
    if mesh is not None and mesh.devices.size > 1:
        state = jax.device_put(state, sharding.replicated(mesh))
    size, pad_color = model.host_image_size(config.data.image_size), model.pad_color
    fns: dict = {}
    results: dict[str, dict] = {}
    for vision in modes:
        sub = "predictions" if vision else "predictions_vision_off"
        fileio.makedirs(fileio.join(workdir, sub))
        for bench in benches:
            t0 = time.time()
            samples = bench.load(root, limit=config.eval.limit or None)
            path = fileio.join(workdir, sub, f"{bench.NAME}.jsonl")
            done = _read_done(path)
            todo = [s for s in samples if str(s["id"]) not in done]
            max_new = config.eval.max_new_tokens or bench.MAX_NEW_TOKENS
            key = (max_new, vision)
            if key not in fns:
                fns[key] = vlm.generate_fn(graphdef, max_new_tokens=max_new, eos_ids=eos,
                                           vision=vision)
            prompts = [conversation.encode_prompt(
                s["prompt"], template, tokenizer, model.num_image_tokens,
                with_image=vision and s.get("image") is not None,
                system=config.model.system_prompt) for s in todo]
            order = np.argsort([len(p) for p in prompts], kind="stable")
            bs = config.eval.batch_size
            writer = _PredictionWriter(path, done)
            for i in tqdm(range(0, len(order), bs), desc=f"eval {bench.NAME}"
                          + ("" if vision else " (vision off)"), leave=False):
                idx = order[i:i + bs]
                batch = make_batch([prompts[j] for j in idx],
                                   [todo[j].get("image") if vision else None for j in idx],
                                   size, bs, pad_color)
                if mesh is not None and mesh.devices.size > 1 and \
                        bs % sharding.batch_divisor(mesh) == 0:
                    batch = sharding.put_batch(batch, mesh)
                toks, lens = jax.device_get(fns[key](state, batch))
                new = []
                for r, j in enumerate(idx):
                    text = tokenizer.decode(toks[r, : lens[r]], skip_special_tokens=False)
                    rec = {k: v for k, v in todo[j].items() if k != "image"}
                    rec["prediction"] = _strip_stop(text, template)
                    new.append(rec)
                writer.add(new)
            records = [done[str(s["id"])] for s in samples]
            res = bench.score(records, config.eval.profile)
            res.update(group=bench.GROUP, seconds=round(time.time() - t0, 2))
            results[bench.NAME if vision else f"{bench.NAME}/vision_off"] = res
    return results


class _PredictionWriter:
    """Saves predictions as each batch finishes: appended locally; on gs:// (no appends) the
    file is rewritten. Only process 0 writes."""

    def __init__(self, path: str, done: dict[str, dict]):
        self.path, self.done = path, done
        self.write = jax.process_index() == 0

    def add(self, records: list[dict]) -> None:
        for rec in records:
            self.done[str(rec["id"])] = rec
        if not self.write:
            return
        remote = fileio.is_remote(self.path)
        rows = self.done.values() if remote else records
        with fileio.open_file(self.path, "w" if remote else "a") as fh:
            for rec in rows:
                fh.write(json.dumps(rec, default=_json_default) + "\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"cannot serialise {type(x).__name__}")
