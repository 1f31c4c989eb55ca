"""The training input pipeline: LLaVA records -> fixed-shape host batches, with grain.

Deterministic given the seed (shuffle over all repeats of the data), host-sharded (each process
reads every ``process_count``-th example), and resumable (the iterator state is a small dict saved
with each checkpoint). Batches::

    image      uint8[B, S, S, 3]   pad-to-square, resized to data.image_size on host
    image_box  float32[B, 4]       valid region (top, left, height, width) as fractions of S
    has_image  bool[B]
    tokens     int32[B, T]         IMAGE_TOKEN marks the visual-token slots
    loss_mask  bool[B, T]          True on assistant tokens
    segment_ids int32[B, T]        1 on real tokens, 0 on padding

or, packed (``PackedBatches``), B rows of several examples each with K image slots per row.
``data.num_workers`` grain worker processes decode and tokenise (0 = in the main process); the
example order is the same for every worker count.
"""

from __future__ import annotations

import collections
import copy
import io
import logging
import os

import fsspec
import grain
import jax
import numpy as np
from PIL import Image

from cambrian import fileio
from cambrian.data import conversation, packing, readers, synthetic
from cambrian.data.chat_templates import Template
from cambrian.data.readers import BadRecord, DataError
from cambrian.data.records import parse, single_image
from cambrian.models.encoders.preprocess import pad_to_square

log = logging.getLogger(__name__)


def resolve(path: str, image_root: str, cache_dir: str, synthetic_sizes: dict | None = None
            ) -> tuple[str, str]:
    """``synthetic:<split>`` -> the generated files; a built dataset on ``gs://`` -> its copy in
    the host's cache (``fileio.local_copy``); other paths are returned as they are."""
    if path.startswith("synthetic:"):
        root = synthetic.ensure(cache_dir, synthetic_sizes)
        return os.path.join(root, path.split(":", 1)[1] + ".json"), root
    if not path:
        raise DataError("a training stage has steps > 0 but no data path: set "
                        "--config.stages.<stage>.data=/path/to/data.json(l)")
    if fileio.is_remote(path) and fileio.isdir(path):
        path = fileio.local_copy(path, cache_dir)
    return path, image_root


def load_records(path: str):
    """A random-access sequence of ``(record, where)``: a dataset built by
    ``data_recipes/build.py`` (its output directory, local or ``gs://``; read without
    TensorFlow), or LLaVA JSON / JSONL.

    JSON records are checked as the builder checks them (``records.parse``, one image per
    sample) before training starts; one that fails -- a malformed JSON line included -- stays
    in the list as ``(BadRecord, where)``, which ``examples`` reports or skips (``skip_bad``).
    """
    if fileio.isdir(path):
        return BuiltRecords(fileio.local_copy(path))
    return [(_checked(rec, where), where) for rec, where in readers.iter_records(path, "llava")]


def _checked(rec, where: str):
    if isinstance(rec, BadRecord):
        return rec
    try:
        single_image(parse(rec, where), where)
    except BadRecord as e:
        return e
    if isinstance(rec.get("image"), list):  # one image, given as a list
        rec = {**rec, "image": rec["image"][0] if rec["image"] else None}
    return rec


def usable(recs, skip_bad: bool):
    """``recs`` without its ``BadRecord`` entries: with ``skip_bad`` they are logged (counts per
    reason and every file:line), otherwise the first stops the run before it starts."""
    if not isinstance(recs, list):
        return recs
    bad = [r for r, _ in recs if isinstance(r, BadRecord)]
    if not bad:
        return recs
    counts = ", ".join(f"{k} {v}" for k, v in collections.Counter(b.reason for b in bad).items())
    if not skip_bad:
        raise DataError(f"{bad[0]}: {len(bad)} bad record(s) in the training data ({counts}; "
                        f"{', '.join(b.where for b in bad[:5])}{' ...' if len(bad) > 5 else ''})"
                        "; fix them, or set --config.data.skip_bad=True to skip and count them")
    log.warning("skipping %d bad records (%s): %s", len(bad), counts,
                " ".join(b.where for b in bad))
    return [(r, w) for r, w in recs if not isinstance(r, BadRecord)]


class BuiltRecords:
    """The builder's TFDS ArrayRecord output as LLaVA records with decoded images."""

    def __init__(self, out: str):
        from cambrian.data import output

        self.out, self.source = out, output.open_dataset(out)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[dict, str]:
        ex = self.source[int(i)]
        conv = [{"from": f.decode(), "value": v.decode()}
                for f, v in zip(ex["conversations"]["from"], ex["conversations"]["value"])]
        images = ex["image"]
        if len(images) > 1:  # builds made before the builder rejected them
            raise DataError(f"{self.out}#{i}: {len(images)} images; one image per sample is "
                            "supported (as Cambrian-1): rebuild with data_recipes/build.py, "
                            "which rejects and counts such records")
        rec = {"id": ex["id"].decode(), "conversations": conv,
               "image": np.asarray(images[0]) if len(images) else None}
        return rec, f"{self.out}#{i}"


def read_image(image_root: str, rel: str, where: str) -> np.ndarray:
    path = os.path.join(image_root, rel)
    try:
        with fsspec.open(path, "rb") as f:
            img = Image.open(io.BytesIO(f.read()))
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as e:
        raise DataError(f"{where}: image file not found: {path}") from e
    except OSError as e:
        raise DataError(f"{where}: image {path} does not decode ({e})") from e


def square_image(img: np.ndarray, size: int, pad_color) -> tuple[np.ndarray, np.ndarray]:
    """uint8[H, W, 3] -> (uint8[size, size, 3], float32[4] valid box as fractions)."""
    sq, (top, left, h, w) = pad_to_square(img, pad_color)
    s = sq.shape[0]
    out = np.asarray(Image.fromarray(sq).resize((size, size), Image.BICUBIC))
    return out, np.asarray([top / s, left / s, h / s, w / s], np.float32)


class Encoder:
    """Turns one (record, where) into padded arrays; picklable for grain workers."""

    def __init__(self, *, template: Template, tokenizer, num_image_tokens: int, max_len: int,
                 image_size: int, image_root: str, pad_color, skip_bad: bool,
                 system: str | None = None):
        self.template, self.tokenizer = template, tokenizer
        self.num_image_tokens, self.max_len = num_image_tokens, max_len
        self.image_size, self.image_root = image_size, image_root
        self.pad_color, self.skip_bad, self.system = pad_color, skip_bad, system

    def __call__(self, item):
        record, where = item
        try:
            enc = conversation.encode_record(record, where, self.template, self.tokenizer,
                                             self.num_image_tokens, self.max_len, self.system)
            image = record.get("image")
            if isinstance(image, np.ndarray) or image:
                if not isinstance(image, np.ndarray):
                    image = read_image(self.image_root, image, where)
                img, box = square_image(image, self.image_size, self.pad_color)
                has = True
            else:
                img = np.zeros((self.image_size,) * 2 + (3,), np.uint8)
                box, has = np.asarray([0, 0, 1, 1], np.float32), False
        except DataError as e:
            if not self.skip_bad:
                raise
            log.warning("skipping bad record: %s", e)
            return None
        return pad_example(enc, self.max_len) | {"image": img, "image_box": box,
                                                  "has_image": np.bool_(has)}


def pad_example(enc: dict, max_len: int) -> dict:
    n = len(enc["tokens"])
    tokens = np.zeros(max_len, np.int32)
    mask = np.zeros(max_len, bool)
    seg = np.zeros(max_len, np.int32)
    tokens[:n], mask[:n], seg[:n] = enc["tokens"], enc["loss_mask"], 1
    return {"tokens": tokens, "loss_mask": mask, "segment_ids": seg}


def examples(records, encoder: Encoder, *, seed: int, num_examples: int | None = None,
             process_index: int | None = None, process_count: int | None = None,
             num_workers: int = 0):
    """A grain IterDataset of this process's encoded examples.

    With ``num_examples`` (per process): at least that many, one seeded shuffle over enough
    repeats of ``records``. Without: endless, each pass over ``records`` its own seeded
    permutation, so the order does not depend on how many are drawn (packed batches draw a
    varying number). Process ``p`` of ``n`` takes examples p, p + n, ... With ``num_workers`` > 0,
    grain worker processes decode and tokenise, each every ``num_workers``-th example, and the main
    process interleaves them back in order; skipped bad records stay in the stream until after
    that, so the order does not depend on the worker count.
    """
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    records = usable(records, encoder.skip_bad)
    if not records:
        raise DataError("the training data holds no records")
    ds = grain.MapDataset.source(records)
    if num_examples is None:
        ds = ds.seed(seed).shuffle().repeat()
    else:
        epochs = -(-num_examples * pc // len(records)) + 1  # +1: room for skipped bad records
        ds = ds.repeat(epochs).seed(seed).shuffle()
    ds = ds.slice(slice(pi, None, pc)).map(_Boxed(encoder)).to_iter_dataset()
    if num_workers > 0:
        _absl_flags_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ds.filter(_kept).map(_unbox)


class _Boxed:
    """``(example or None,)``: grain drops a bare None inside the worker that made it, which
    would shift the round-robin interleave of the workers' outputs."""

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def __call__(self, item):
        return (self.encoder(item),)


def _kept(boxed) -> bool:
    return boxed[0] is not None


def _unbox(boxed):
    return boxed[0]


def _absl_flags_parsed() -> None:
    # grain 0.2.18's mp_prefetch reads an absl flag, which raises unless flags were parsed
    # (google/grain#1355); programs not started by absl.app never parse them.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def dataset(records: list, encoder: Encoder, *, batch_size: int, num_batches: int, seed: int,
            process_index: int | None = None, process_count: int | None = None,
            num_workers: int = 0, pack: bool = False, max_images_per_row: int = 1):
    """A grain IterDataset of global batches (this process's share), at least ``num_batches``.

    ``pack``: each batch holds ``batch_size`` rows of ``encoder.max_len`` tokens, each packed
    with as many examples as fit (see ``PackedBatches``; the stream is endless); otherwise one
    example per row.
    """
    pc = jax.process_count() if process_count is None else process_count
    if batch_size % pc:
        raise ValueError(f"batch size {batch_size} is not divisible by {pc} processes")
    rows = batch_size // pc
    ds = examples(records, encoder, seed=seed, num_examples=None if pack else num_batches * rows,
                  process_index=process_index, process_count=pc, num_workers=num_workers)
    if pack:
        return PackedBatches(ds, rows=rows, seq_len=encoder.max_len,
                             num_image_tokens=encoder.num_image_tokens,
                             max_images=max_images_per_row)
    return ds.batch(rows, drop_remainder=True)


# ---------------------------------------------------------------------------------- packing


class PackedBatches(grain.IterDataset):
    """Encoded examples -> batches of ``rows`` packed rows of ``seq_len`` tokens.

    Examples are placed first-fit (``packing.FirstFit``) in stream order until one fits in no
    row; that one opens the next batch. Batches::

        tokens, loss_mask, segment_ids  [rows, seq_len]  segments 1, 2, ... per row; 0 = padding
        image      uint8[rows, K, S, S, 3]   the row's images in segment order; zeros after them
        image_box  float32[rows, K, 4]       zeros on unused slots
        has_image  bool[rows, K]

    K = ``max_images``; an example takes one slot when it has visual-token slots. The iterator
    state is the parent's state before the example that opens the next batch, so a restore
    re-reads that example and continues exactly.
    """

    def __init__(self, parent: grain.IterDataset, *, rows: int, seq_len: int,
                 num_image_tokens: int, max_images: int):
        super().__init__(parent)
        if max_images < 1:
            raise ValueError(f"data.max_images_per_row={max_images}; expected >= 1")
        if max_images * num_image_tokens > seq_len:
            log.warning("data.max_images_per_row=%d images of %d tokens exceed model.max_len=%d;"
                        " at most %d fit in a row", max_images, num_image_tokens, seq_len,
                        seq_len // num_image_tokens)
        self.rows, self.seq_len = rows, seq_len
        self.num_image_tokens, self.max_images = num_image_tokens, max_images

    def __iter__(self):
        return _PackedBatchIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return f"PackedBatches(rows={self.rows}, seq_len={self.seq_len}, K={self.max_images})"


class _PackedBatchIterator(grain.DatasetIterator):
    def __init__(self, parent: grain.DatasetIterator, spec: PackedBatches):
        super().__init__(parent)
        self._spec = spec
        self._carry = None  # (parent state before it, example) of the next batch's first example

    def _pull(self):
        state = copy.deepcopy(self._parent.get_state())
        return state, _unpadded(next(self._parent), self._spec.num_image_tokens)

    def __next__(self) -> dict:
        spec = self._spec
        fit = packing.FirstFit(spec.rows, spec.seq_len, max_images=spec.max_images)
        chosen = []
        while True:
            if self._carry is not None:
                item, self._carry = self._carry, None
            else:
                try:
                    item = self._pull()
                except StopIteration:
                    if chosen:
                        break
                    raise
            ex = item[1]
            if fit.place(len(ex["tokens"]), len(ex["images"])) < 0:
                self._carry = item
                break
            chosen.append(ex)
        return self._assemble(chosen, fit.rows)

    def _assemble(self, chosen: list[dict], rows: list[list[int]]) -> dict:
        spec = self._spec
        out = packing.layout(chosen, rows, spec.seq_len, num_rows=spec.rows)
        size = chosen[0]["image"].shape
        image = np.zeros((spec.rows, spec.max_images, *size), np.uint8)
        box = np.zeros((spec.rows, spec.max_images, 4), np.float32)
        has = np.zeros((spec.rows, spec.max_images), bool)
        for r, members in enumerate(rows):
            slots = [chosen[i] for i in members if chosen[i]["images"]]  # segment order
            for k, ex in enumerate(slots):
                image[r, k], box[r, k], has[r, k] = ex["image"], ex["image_box"], ex["has_image"]
        return {"tokens": out["tokens"], "loss_mask": out["loss_mask"],
                "segment_ids": out["segment_ids"], "image": image, "image_box": box,
                "has_image": has}

    def get_state(self) -> dict:
        if self._carry is not None:
            return copy.deepcopy(self._carry[0])
        return self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._carry = None
        self._parent.set_state(state)


def _unpadded(ex: dict, num_image_tokens: int) -> dict:
    """An ``Encoder`` output with its padding cut off; ``images`` (one entry when it has
    visual-token slots: one image per example, as in unpacked rows) counts its image slots."""
    n = int(ex["segment_ids"].sum())
    tokens = ex["tokens"][:n]
    slots = int((tokens == conversation.IMAGE_TOKEN).sum())
    if slots not in (0, num_image_tokens):
        raise DataError(f"an example has {slots} visual-token slots; packed rows take one image "
                        f"({num_image_tokens} slots) per example. Give each record at most one "
                        "<image> tag or set data.pack=False")
    return {**ex, "tokens": tokens, "loss_mask": ex["loss_mask"][:n],
            "images": [ex["image"]] if slots else []}


# ----------------------------------------------------------------------- efficiency figures


class Peek(grain.DatasetIterator):
    """``parent`` with its first ``n`` elements drawn ahead (``head()``), served first.

    ``get_state`` is the parent's state before the next element to be served, so checkpoints
    taken while the head is being served resume exactly.
    """

    def __init__(self, parent: grain.DatasetIterator, n: int):
        super().__init__(parent)
        self._buf: collections.deque = collections.deque()
        self._states: collections.deque = collections.deque()
        for _ in range(n):
            state = copy.deepcopy(parent.get_state())
            try:
                self._buf.append(next(parent))
            except StopIteration:
                break
            self._states.append(state)

    def head(self) -> list:
        """The drawn elements not yet served."""
        return list(self._buf)

    def __next__(self):
        if self._buf:
            self._states.popleft()
            return self._buf.popleft()
        return next(self._parent)

    def get_state(self) -> dict:
        return copy.deepcopy(self._states[0]) if self._states else self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._buf.clear()
        self._states.clear()
        self._parent.set_state(state)


def examples_in(batch: dict) -> int:
    """Conversations in a host batch: segments are numbered 1..m in each row (0 = padding)."""
    return int(np.asarray(batch["segment_ids"]).max(axis=1).sum())


def efficiency(batches: list[dict]) -> dict:
    """How full host batches are: ``token_efficiency`` (real tokens / row slots),
    ``supervised_efficiency`` (loss-masked tokens / row slots), ``examples_per_row`` and
    ``image_slot_use`` (images / image slots)."""
    if not batches:
        return {"batches": 0}
    seg = np.concatenate([b["segment_ids"] for b in batches])
    mask = np.concatenate([b["loss_mask"] for b in batches]) & (seg > 0)
    has = np.concatenate([np.asarray(b["has_image"]).reshape(len(b["tokens"]), -1)
                          for b in batches])
    rows, row_len = seg.shape
    n_examples = sum(examples_in(b) for b in batches)
    return {"batches": len(batches), "rows": rows, "row_len": row_len,
            "examples": n_examples, "examples_per_row": n_examples / rows,
            "token_efficiency": float((seg > 0).mean()),
            "supervised_efficiency": float(mask.mean()),
            "image_slot_use": float(has.mean())}
