"""The built dataset on disk: TFDS ArrayRecord shards that need no TensorFlow to write or read.

Layout of a build directory ``OUT``::

    OUT/<name>/<version>/            a TFDS dataset directory (dataset_info.json, features.json,
                                     <name>-train.array_record-00000-of-000NN, ...)
    OUT/manifest.json                recipe hash, counts per source / category / drop reason,
                                     shard and content hashes
    OUT/summary.md, composition.png  the same counts as a table and a figure
    OUT/.build/                      resumable state (plan, finished-shard markers, image cache)

Read it with ``open_dataset(OUT)``, ``tfds.data_source(name, data_dir=OUT)`` or
``tfds.builder_from_directory(OUT/<name>/<version>)`` and feed it to grain. One example::

    id            bytes                       record id in its source
    source        bytes                       recipe source name
    category      bytes
    conversations {"from": [bytes], "value": [bytes]}   turns; answer-format prompts included
    image         [uint8[H, W, 3]]            0..n images, in <image> order (original bytes kept
                                              when RGB JPEG / PNG, else converted to RGB PNG)
    image_path    [bytes]                     where each image came from

``open_dataset(OUT, raw_images=True)`` returns the encoded image bytes instead of decoded arrays
(TFDS's own ``SkipDecoding`` does not support sequences in numpy data sources).
TensorFlow is not needed: examples are serialised with TFDS's own protos and written with
``array_record``; ``tfds.folder_dataset.write_metadata`` writes the metadata.
"""

from __future__ import annotations

import hashlib
import os

SPLIT = "train"


def features():
    import tensorflow_datasets as tfds

    text = tfds.features.Text()
    return tfds.features.FeaturesDict({
        "id": text,
        "source": text,
        "category": text,
        "conversations": tfds.features.Sequence({"from": text, "value": text}),
        "image": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3))),
        "image_path": tfds.features.Sequence(text),
    })


def dataset_dir(out: str, name: str, version: str) -> str:
    return os.path.join(out, name, version)


def shard_path(out: str, name: str, version: str, index: int, num_shards: int) -> str:
    fname = f"{name}-{SPLIT}.array_record-{index:05d}-of-{num_shards:05d}"
    return os.path.join(dataset_dir(out, name, version), fname)


class ShardWriter:
    """Serialises examples into one ArrayRecord shard, written atomically (tmp file + rename)."""

    def __init__(self, path: str, feats=None):
        from array_record.python import array_record_module
        from tensorflow_datasets.core import example_serializer

        self.path, self._tmp = path, path + ".tmp"
        self._features = feats if feats is not None else features()
        self._serializer = example_serializer.ExampleSerializer(
            self._features.get_serialized_info())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # group_size:1 is what TFDS uses: every record is individually addressable.
        self._writer = array_record_module.ArrayRecordWriter(self._tmp, "group_size:1")
        self.examples, self.num_bytes = 0, 0

    def write(self, example: dict) -> None:
        blob = self._serializer.serialize_example(self._features.encode_example(example))
        self._writer.write(blob)
        self.examples += 1
        self.num_bytes += len(blob)

    def close(self) -> str:
        """Finishes the shard; returns its sha256."""
        self._writer.close()
        h = hashlib.sha256()
        with open(self._tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        os.replace(self._tmp, self.path)
        return h.hexdigest()


def write_metadata(out: str, name: str, version: str, shard_lengths: list[int], num_bytes: int,
                   description: str) -> None:
    """dataset_info.json + features.json for the finished shards."""
    import tensorflow_datasets as tfds

    split = tfds.core.SplitInfo(name=SPLIT, shard_lengths=list(shard_lengths),
                                num_bytes=int(num_bytes), filename_template=None)
    tfds.folder_dataset.write_metadata(
        data_dir=dataset_dir(out, name, version), features=features(), split_infos=[split],
        version=version, check_data=False, description=description)


def _raw_bytes_decoder():
    import tensorflow_datasets as tfds

    class RawBytes(tfds.decode.Decoder):
        """Leaves encoded images as bytes."""

        def decode_example(self, serialized_example):
            return serialized_example

        def decode_example_np(self, serialized_example):
            return serialized_example

        def decode_batch_example_np(self, serialized_example):
            return list(serialized_example)

    return RawBytes()


def open_dataset(out: str, split: str = SPLIT, raw_images: bool = False, **kwargs):
    """The built dataset as a random-access data source (grain-compatible), without TensorFlow.

    ``raw_images`` keeps images as their stored (JPEG / PNG) bytes.
    """
    import tensorflow_datasets as tfds

    if raw_images:
        kwargs["decoders"] = {**kwargs.get("decoders", {}), "image": _raw_bytes_decoder()}

    names = [d for d in sorted(os.listdir(out)) if not d.startswith(".")
             and os.path.isdir(os.path.join(out, d))]
    for d in names:
        for v in sorted(os.listdir(os.path.join(out, d))):
            if os.path.exists(os.path.join(out, d, v, "dataset_info.json")):
                builder = tfds.builder_from_directory(os.path.join(out, d, v))
                return builder.as_data_source(split=split, **kwargs)
    raise FileNotFoundError(f"no built dataset under {out}; run data_recipes/build.py first")
