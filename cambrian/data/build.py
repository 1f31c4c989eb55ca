"""Builds a recipe into a TFDS dataset: scan -> dedup -> leakage -> quotas -> prompts -> shuffle
-> shards + manifest.

``build(recipe, out)`` is the library entry point (``data_recipes/build.py`` is its CLI):

* **scan** every annotation file once (sources sharing a file split it by their ``match`` rules),
  check each record (``records.parse``) and fully decode each image (``images.inspect``);
* drop exact / perceptual **duplicates** (earlier sources win) and, if the recipe asks, records
  whose image is a **benchmark** image (dHash);
* **allocate** per-source counts (remove, weight, cap, category ratios, total; ``select.py``) and
  draw them with a per-source seeded generator;
* add **answer-format prompts** per source rule; **shuffle** with the recipe seed;
* save the **plan** (every kept example, in order) and write the **shards** from it. A rerun with
  the same recipe reuses the plan and skips finished shards.

A bad record (malformed JSON line, missing or corrupt image, empty or malformed conversation,
``<image>`` count mismatch, several images: training takes one per sample) stops the build with
a message naming file, line and reason; with ``skip_bad=True`` it is skipped and counted by reason
in the manifest, and listed in ``OUT/bad_records.jsonl``. Nothing is dropped without being counted.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import gzip
import hashlib
import itertools
import json
import math
import os
import posixpath

import numpy as np
from tqdm import tqdm

from cambrian.data import output, prompts, select
from cambrian.data.images import (
    FolderImages,
    ImageError,
    ImageRoots,
    TarImages,
    inspect,
    iter_image_files,
    stored_bytes,
)
from cambrian.data.manifest import make_manifest, write_reports
from cambrian.data.readers import BadRecord, DataError, expand, iter_records
from cambrian.data.recipe import Recipe
from cambrian.data.records import InlineImage, parse, single_image

CACHE = "@cache"  # image store of inline (parquet) images, saved under OUT/.build/images
_CHUNK = 256


@dataclasses.dataclass(frozen=True, slots=True)
class ImageRef:
    store: str
    name: str
    sha1: str
    dhash: int
    convert: bool
    origin: str  # the path the record gave (inline images: their own path, if any)


@dataclasses.dataclass(slots=True)
class Item:
    src: int
    seq: int
    where: str
    id: str
    turns: tuple[dict, ...]
    refs: tuple[ImageRef, ...]
    text: bytes


# --- image checks (run in worker processes when workers > 1) ------------------------------------

_STORES: dict = {}


def _init_stores(stores: dict) -> None:
    global _STORES
    _STORES = stores


def _check_image(task: tuple[str, object]):
    store, img = task
    try:
        data = img.data if isinstance(img, InlineImage) else _STORES[store].read(img)
        return inspect(data)
    except ImageError as e:
        return e.reason, str(e)


def _pool(workers: int, stores: dict):
    if workers <= 1:
        _init_stores(stores)
        return None
    return cf.ProcessPoolExecutor(workers, initializer=_init_stores, initargs=(stores,))


# --- scan ---------------------------------------------------------------------------------------

def _new_stats(recipe: Recipe) -> dict:
    keys = ("read", "duplicate_exact", "duplicate_perceptual", "benchmark_leak", "leak_reported",
            "available", "removed", "not_selected", "quota", "requested", "kept", "repeated",
            "prompted")
    return {s.name: {"category": s.category, "cap": s.cap, "bad": collections.Counter(),
                     **dict.fromkeys(keys, 0)} for s in recipe.sources}


class _Scan:
    def __init__(self, recipe: Recipe, stores: dict, skip_bad: bool, cache_dir: str | None,
                 workers: int, progress: bool):
        self.recipe, self.stores, self.skip_bad = recipe, stores, skip_bad
        self.cache_dir, self.workers, self.progress = cache_dir, workers, progress
        self.stats = _new_stats(recipe)
        self.files: dict[str, dict] = {}
        self.bad: list[dict] = []
        self.items: list[Item] = []
        self._seq = 0

    def bad_record(self, e: BadRecord, src: int | None, path: str) -> None:
        name = self.recipe.sources[src].name if src is not None else None
        if not self.skip_bad:
            where = f" (source {name!r})" if name else ""
            raise BadRecord(e.where, e.reason,
                            f"{e.reason}: {e.detail}{where}. Fix or drop the record, or rerun with "
                            "--skip-bad to skip and count records like it")
        counter = self.stats[name]["bad"] if name else self.files[path]["bad"]
        counter[e.reason] += 1
        self.bad.append({"where": e.where, "source": name, "reason": e.reason, "detail": e.detail})

    def run(self) -> None:
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(self.recipe.sources):
            groups.setdefault((s.path, s.format), []).append(i)
        pool = _pool(self.workers, self.stores)
        try:
            for (paths, fmt), members in groups.items():
                for path in expand(paths):
                    if path in self.files:  # its records could be claimed twice
                        names = [self.recipe.sources[i].name for i in members]
                        raise DataError(
                            f"{path} is read by sources {names} and by others with a different "
                            "path list or format; sources sharing a file must list the same paths")
                    self._scan_file(path, fmt, members, pool)
        finally:
            if pool is not None:
                pool.shutdown()
        self.items.sort(key=lambda it: (it.src, it.seq))

    def _scan_file(self, path: str, fmt: str, members: list[int], pool) -> None:
        sources = self.recipe.sources
        self.files[path] = {"read": 0, "unassigned": collections.Counter(),
                            "bad": collections.Counter()}
        pending: list[tuple[int | None, str, object]] = []
        bar = tqdm(desc=f"scan {posixpath.basename(path)}", unit=" rec", disable=not self.progress)
        for rec, where in iter_records(path, fmt):
            self.files[path]["read"] += 1
            bar.update()
            if isinstance(rec, BadRecord):
                pending.append((None, where, rec))
            elif not isinstance(rec, dict):  # no source can claim it: counted for the file
                detail = f"expected a JSON object, got {type(rec).__name__}"
                pending.append((None, where, BadRecord(where, "malformed_record", detail)))
            else:
                src = next((i for i in members if sources[i].claims(rec)), None)
                if src is None:
                    self.files[path]["unassigned"][_tag(rec, sources[members[0]].match_field)] += 1
                    continue
                self.stats[sources[src].name]["read"] += 1
                try:
                    pending.append((src, where, single_image(parse(rec, where), where)))
                except BadRecord as e:
                    pending.append((src, where, e))
            if len(pending) >= _CHUNK:
                self._flush(pending, path, pool)
        self._flush(pending, path, pool)
        bar.close()

    def _flush(self, pending: list, path: str, pool) -> None:
        sources = self.recipe.sources
        tasks = []
        for src, where, sample in pending:
            if isinstance(sample, BadRecord):
                continue
            name = sources[src].name
            for img in sample.images:
                if not isinstance(img, InlineImage) and name not in self.stores:
                    raise DataError(
                        f"{where}: names image {img!r} but source {name!r} lists no image folder "
                        "or tar; set images=... for it in the recipe")
                tasks.append((name, img))
        results = iter(pool.map(_check_image, tasks, chunksize=16) if pool and tasks
                       else map(_check_image, tasks))
        for src, where, sample in pending:
            if isinstance(sample, BadRecord):
                self.bad_record(sample, src, path)
                continue
            infos = [next(results) for _ in sample.images]
            err = next((i for i in infos if isinstance(i, tuple)), None)
            if err is not None:
                self.bad_record(BadRecord(where, err[0], err[1]), src, path)
                continue
            refs = tuple(self._ref(sources[src].name, img, info)
                         for img, info in zip(sample.images, infos))
            self.items.append(Item(src, self._seq, where, sample.id, sample.conversations, refs,
                                   sample.text_key()))
            self._seq += 1
        pending.clear()

    def _ref(self, source: str, img, info) -> ImageRef:
        if not isinstance(img, InlineImage):
            return ImageRef(source, img, info.sha1, info.dhash, info.convert, img)
        if self.cache_dir is not None:
            path = os.path.join(self.cache_dir, info.sha1)
            if not os.path.exists(path):
                with open(path + ".tmp", "wb") as f:
                    f.write(img.data)
                os.replace(path + ".tmp", path)
        return ImageRef(CACHE, info.sha1, info.sha1, info.dhash, info.convert,
                        img.path or "(inline)")


def _tag(rec: dict, field: str) -> str:
    img = rec.get("image")
    first = img[0] if isinstance(img, list) and img else img
    folder = first.split("/")[0] if isinstance(first, str) else "(no image)"
    return f"{rec.get(field)}|{folder}"


# --- selection ----------------------------------------------------------------------------------

def _leakage(recipe: Recipe, items: list[Item], stats: dict) -> tuple[list[Item], dict]:
    cfg = recipe.leakage
    bench, report = [], {}
    for name, path in cfg.benchmarks.items():
        n = unreadable = 0
        for img_name, data in iter_image_files(path):
            try:
                bench.append((inspect(data).dhash, (name, img_name)))
                n += 1
            except ImageError:
                unreadable += 1
        report[name] = {"path": path, "images": n, "unreadable": unreadable,
                        "matched_images": 0, "records": 0}
    hits = select.find_leaks([tuple(r.dhash for r in it.refs) for it in items], bench,
                             cfg.max_distance)
    kept, matched = [], collections.defaultdict(set)
    for it, found in zip(items, hits):
        for b, img in found:
            matched[b].add(img)
        for b in dict.fromkeys(b for b, _ in found):
            report[b]["records"] += 1
        if not found:
            kept.append(it)
            continue
        name = recipe.sources[it.src].name
        stats[name]["benchmark_leak" if cfg.action == "drop" else "leak_reported"] += 1
        if cfg.action == "report":
            kept.append(it)
    for b, imgs in matched.items():
        report[b]["matched_images"] = len(imgs)
    return kept, {"max_distance": cfg.max_distance, "action": cfg.action, "benchmarks": report}


def _select(recipe: Recipe, items: list[Item], stats: dict):
    """Dedup, leakage, allocation and drawing -> (entries in final order, allocation, leakage)."""
    keys = [select.Key(tuple(r.sha1 for r in it.refs), tuple(r.dhash for r in it.refs), it.text)
            for it in items]
    kept = []
    for it, reason in zip(items, select.find_duplicates(keys, recipe.dedup)):
        if reason:
            stats[recipe.sources[it.src].name][reason] += 1
        else:
            kept.append(it)
    leakage = None
    if recipe.leakage is not None:
        kept, leakage = _leakage(recipe, kept, stats)

    pools: dict[int, list[Item]] = collections.defaultdict(list)
    for it in kept:
        pools[it.src].append(it)
    for i, s in enumerate(recipe.sources):
        stats[s.name]["available"] = len(pools[i])
    alloc = select.allocate(recipe, {s.name: stats[s.name]["available"] for s in recipe.sources})

    entries = []
    for i, s in enumerate(recipe.sources):
        st, pool = stats[s.name], pools[i]
        rng = select.source_rng(recipe.seed, s.name)
        removed, chosen = select.choose(len(pool), min(s.remove, len(pool)),
                                        alloc.requested[s.name], rng)
        unique = len(np.unique(chosen))
        st.update(quota=alloc.quota[s.name], requested=alloc.requested[s.name], kept=len(chosen),
                  removed=len(removed), repeated=len(chosen) - unique,
                  not_selected=len(pool) - len(removed) - unique)
        for j in chosen:
            it = pool[j]
            turns, changed = prompts.apply([dict(t) for t in it.turns], s.prompts)
            st["prompted"] += changed
            entries.append((it, turns))
    order = np.random.default_rng(recipe.seed).permutation(len(entries))
    return [entries[k] for k in order], alloc, leakage


def _plan_line(recipe: Recipe, it: Item, turns: list[dict]) -> str:
    s = recipe.sources[it.src]
    return json.dumps({
        "id": it.id, "source": s.name, "category": s.category, "where": it.where,
        "conversations": turns,
        "images": [{"store": r.store, "name": r.name, "sha1": r.sha1, "convert": r.convert,
                    "origin": r.origin} for r in it.refs],
    }, ensure_ascii=False)


# --- writing ------------------------------------------------------------------------------------

def _write_shard(task: tuple[str, list[str]]) -> dict:
    path, lines = task
    writer = output.ShardWriter(path)
    for line in lines:
        e = json.loads(line)
        images = []
        for ref in e["images"]:
            try:
                data = _STORES[ref["store"]].read(ref["name"])
            except ImageError:
                data = None
            if data is None or hashlib.sha1(data).hexdigest() != ref["sha1"]:
                raise DataError(f"{e['where']}: image {ref['name']!r} is gone or changed since the "
                                "build plan was made; delete the output's .build folder to rebuild")
            images.append(stored_bytes(data, ref["convert"]))
        writer.write({"id": e["id"], "source": e["source"], "category": e["category"],
                      "conversations": e["conversations"], "image": images,
                      "image_path": [r["origin"] for r in e["images"]]})
    sha = writer.close()
    return {"file": os.path.basename(path), "examples": writer.examples,
            "bytes": writer.num_bytes, "sha256": sha}


def _shard_tasks(plan_file: str, out: str, recipe: Recipe, num: int, done: dict):
    with gzip.open(plan_file, "rt", encoding="utf-8") as f:
        for i in range(num):
            size = recipe.shard_size if i < num - 1 else None
            lines = [ln.rstrip("\n") for ln in itertools.islice(f, size)]
            if i not in done:
                yield i, (output.shard_path(out, recipe.name, recipe.version, i, num), lines)


def _write_shards(recipe: Recipe, out: str, state: str, num_examples: int, stores: dict,
                  workers: int, progress: bool) -> list[dict]:
    num = math.ceil(num_examples / recipe.shard_size)
    marks = os.path.join(state, "shards")
    os.makedirs(marks, exist_ok=True)
    done = {}
    for i in range(num):
        mark = os.path.join(marks, f"{i:05d}-of-{num:05d}.json")
        shard = output.shard_path(out, recipe.name, recipe.version, i, num)
        if os.path.exists(mark) and os.path.exists(shard):
            with open(mark) as f:
                done[i] = json.load(f)
    bar = tqdm(total=num, initial=len(done), desc="write shards", unit=" shard",
               disable=not progress)

    def finish(i: int, info: dict) -> None:
        with open(os.path.join(marks, f"{i:05d}-of-{num:05d}.json"), "w") as f:
            json.dump(info, f)
        done[i] = info
        bar.update()

    pool = _pool(workers, stores)
    tasks = _shard_tasks(os.path.join(state, "plan.jsonl.gz"), out, recipe, num, done)
    if pool is None:
        for i, task in tasks:
            finish(i, _write_shard(task))
    else:
        with pool:
            inflight = {}
            for i, task in tasks:
                inflight[pool.submit(_write_shard, task)] = i
                if len(inflight) >= 2 * workers:
                    fut = next(cf.as_completed(inflight))
                    finish(inflight.pop(fut), fut.result())
            for fut in cf.as_completed(inflight):
                finish(inflight[fut], fut.result())
    bar.close()
    return [done[i] for i in range(num)]


# --- entry point --------------------------------------------------------------------------------

def _stores(recipe: Recipe, state: str | None) -> dict:
    stores = {s.name: ImageRoots(s.images, s.case_insensitive_images)
              for s in recipe.sources if s.images}
    for roots in stores.values():  # index tars once here, not in every worker
        for st in roots.stores:
            if isinstance(st, TarImages):
                st.index()
    if state is not None:
        stores[CACHE] = FolderImages(os.path.join(state, "images"))
    return stores


def build(recipe: Recipe, out: str | None, *, dry_run: bool = False, skip_bad: bool = False,
          workers: int = 1, progress: bool = False) -> dict:
    """Builds ``recipe`` into ``out`` (see the module docstring); returns the manifest.

    ``dry_run`` scans and selects but writes nothing (``out`` may be None).
    """
    if not dry_run and (out is None or "://" in out):
        raise DataError(f"--out must be a local directory, got {out!r}; copy the result to remote "
                        "storage after the build")
    state = None if dry_run else os.path.join(out, ".build")
    meta_file = state and os.path.join(state, "plan.json")
    if state and os.path.exists(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        if meta["recipe"]["hash"] != recipe.hash():
            raise DataError(f"{out} holds a build of a different recipe (hash "
                            f"{meta['recipe']['hash'][:12]}, this recipe {recipe.hash()[:12]}); "
                            "use another --out or delete it")
        stores = _stores(recipe, state)
    else:
        if state:
            os.makedirs(os.path.join(state, "images"), exist_ok=True)
        stores = _stores(recipe, state)
        scan = _Scan(recipe, stores, skip_bad, state and os.path.join(state, "images"), workers,
                     progress)
        scan.run()
        entries, alloc, leakage = _select(recipe, scan.items, scan.stats)
        meta = make_manifest(recipe, scan.stats, scan.files, alloc, leakage, len(entries))
        if dry_run:
            meta["bad_records"] = scan.bad
            return meta
        if not entries:
            raise DataError(f"recipe {recipe.name!r} selects no records; see the counts with "
                            "--dry-run")
        digest = hashlib.sha256()
        tmp = os.path.join(state, "plan.jsonl.gz.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for it, turns in entries:
                line = _plan_line(recipe, it, turns) + "\n"
                digest.update(line.encode())
                f.write(line)
        os.replace(tmp, os.path.join(state, "plan.jsonl.gz"))
        meta["output"]["content_sha256"] = digest.hexdigest()
        if scan.bad:
            with open(os.path.join(out, "bad_records.jsonl"), "w") as f:
                f.writelines(json.dumps(b, ensure_ascii=False) + "\n" for b in scan.bad)
        with open(meta_file + ".tmp", "w") as f:
            json.dump(meta, f)
        os.replace(meta_file + ".tmp", meta_file)

    shards = _write_shards(recipe, out, state, meta["output"]["examples"], stores, workers,
                           progress)
    output.write_metadata(out, recipe.name, recipe.version, [s["examples"] for s in shards],
                          sum(s["bytes"] for s in shards), recipe.description)
    meta["output"].update(dir=output.dataset_dir(out, recipe.name, recipe.version), shards=shards)
    write_reports(meta, out)
    return meta
