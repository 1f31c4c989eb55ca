"""Small files in the real published schemas, for the data tests."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
from PIL import Image

LEVELS = np.array([10, 60, 110, 160, 210, 250], np.uint8)


def block_image(seed: int, scale: int = 6, mode: str = "RGB") -> Image.Image:
    """A 9x8 grid of flat blocks with clearly different neighbours: its dHash is stable under
    re-encoding and resizing, and different seeds give different hashes."""
    rng = np.random.default_rng(seed)
    grid = np.empty((8, 9), np.uint8)
    for r in range(8):
        row = [rng.choice(LEVELS)]
        while len(row) < 9:
            v = rng.choice(LEVELS)
            if v != row[-1]:
                row.append(v)
        grid[r] = row
    tint = rng.integers(0, 40, size=3, dtype=np.uint8)
    rgb = np.clip(grid[..., None].astype(int) + tint, 0, 255).astype(np.uint8)
    img = Image.fromarray(rgb).resize((9 * scale, 8 * scale), Image.Resampling.NEAREST)
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def conv(question: str, answer: str, image: bool = True) -> list[dict]:
    return [{"from": "human", "value": ("<image>\n" if image else "") + question},
            {"from": "gpt", "value": answer}]


def record(i: int, image: str | None, question: str | None = None, **extra) -> dict:
    rec = {"id": str(i), "conversations": conv(question or f"What is shown in picture {i}?",
                                                f"Answer {i}.", image is not None), **extra}
    if image is not None:
        rec["image"] = image
    return rec


def write_json(path: str, records: list) -> str:
    with open(path, "w") as f:
        json.dump(records, f)
    return path


def write_jsonl(path: str, records: list, raw: dict[int, str] | None = None) -> str:
    """One record per line; ``raw`` replaces line i (0-based) with the given text."""
    with open(path, "w") as f:
        for i, r in enumerate(records):
            f.write((raw or {}).get(i, json.dumps(r)) + "\n")
    return path


def image_folder(root: str, names_seeds: dict[str, int], fmt: str = "PNG") -> str:
    for name, seed in names_seeds.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(encode(block_image(seed), fmt))
    return root


def tar_shard(path: str, members: dict[str, bytes], dot_prefix: bool = False) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(("./" if dot_prefix else "") + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def parquet_file(path: str, rows: list[dict]) -> str:
    """Hugging Face export layout: image struct<bytes, path>, conversations list<struct>."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("id", pa.string()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
    ])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)
    return path
