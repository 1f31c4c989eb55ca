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
"""

from __future__ import annotations

import io
import logging
import os

import fsspec
import grain
import jax
import numpy as np
from PIL import Image

from cambrian.data import conversation, readers, synthetic
from cambrian.data.chat_templates import Template
from cambrian.data.readers import DataError
from cambrian.models.encoders.preprocess import pad_to_square

log = logging.getLogger(__name__)


def resolve(path: str, image_root: str, cache_dir: str, synthetic_sizes: dict | None = None
            ) -> tuple[str, str]:
    """``synthetic:<split>`` -> the generated files; other paths are returned as they are."""
    if path.startswith("synthetic:"):
        root = synthetic.ensure(cache_dir, synthetic_sizes)
        return os.path.join(root, path.split(":", 1)[1] + ".json"), root
    if not path:
        raise DataError("a training stage has steps > 0 but no data path: set "
                        "--config.stages.<stage>.data=/path/to/data.json(l)")
    return path, image_root


def load_records(path: str):
    """A random-access sequence of ``(record, where)``: LLaVA JSON/JSONL, or a dataset built by
    ``data_recipes/build.py`` (its output directory; read without TensorFlow)."""
    if os.path.isdir(path):
        return BuiltRecords(path)
    return list(readers.read_llava(path))


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
        if len(images) > 1:
            raise DataError(f"{self.out}#{i}: {len(images)} images; one image per sample is "
                            "supported (as Cambrian)")
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


def dataset(records: list, encoder: Encoder, *, batch_size: int, num_batches: int, seed: int,
            process_index: int | None = None, process_count: int | None = None):
    """A grain IterDataset of global batches (this process's share), at least ``num_batches``."""
    pi = jax.process_index() if process_index is None else process_index
    pc = jax.process_count() if process_count is None else process_count
    if batch_size % pc:
        raise ValueError(f"batch size {batch_size} is not divisible by {pc} processes")
    if not records:
        raise DataError("the training data holds no records")
    need = num_batches * batch_size
    epochs = -(-need // len(records)) + 1  # +1: room for skipped bad records
    ds = grain.MapDataset.source(records).repeat(epochs).seed(seed).shuffle()
    ds = ds.slice(slice(pi, None, pc)).map(encoder).to_iter_dataset()
    return ds.filter(lambda x: x is not None).batch(batch_size // pc, drop_remainder=True)
