"""Reading public checkpoints tensor by tensor.

``open_checkpoint(path)`` gives a read-only mapping name -> numpy array over a safetensors file, a
directory of safetensors shards (with or without ``model.safetensors.index.json``), a directory of
PyTorch shards with ``pytorch_model.bin.index.json`` (read with ``weights_only``), or a PyTorch
state-dict file (``.bin``, ``.pt``, ``.pth``, ``.pth.tar``; unwrapped from ``state_dict`` /
``model`` keys). Both are memory-mapped and read one tensor at a time, so converting a model
never holds the whole checkpoint twice in host memory.

``take(reader, name, shape)`` is the single place that checks a tensor: a missing name or a wrong
shape raises ``CheckpointError`` naming the tensor, the expected and the found shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping

import numpy as np


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or has tensors of the wrong shape."""


class _Safetensors(Mapping):
    def __init__(self, files: list[str]):
        from safetensors import safe_open

        self._handles = {}
        self._where: dict[str, str] = {}
        for f in files:
            h = safe_open(f, framework="numpy")
            self._handles[f] = h
            for k in h.keys():
                self._where[k] = f
        self.source = files[0] if len(files) == 1 else os.path.dirname(files[0])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise KeyError(name)
        return self._handles[self._where[name]].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class _TorchStateDict(Mapping):
    def __init__(self, path: str,
                 prefix_keys=("state_dict", "model", "module", "target_encoder", "encoder"),
                 weights_only: bool = False):
        import torch

        # mmap: tensors stay on disk until read, so converting never holds the file twice.
        sd = torch.load(path, map_location="cpu", mmap=True, weights_only=weights_only)
        for k in prefix_keys:
            if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
                sd = sd[k]
        self._sd = sd
        self.source = path

    def __getitem__(self, name: str) -> np.ndarray:
        t = self._sd[name]
        return t.detach().float().numpy() if t.is_floating_point() else t.numpy()

    def __iter__(self):
        return iter(self._sd)

    def __len__(self):
        return len(self._sd)


class _TorchShards(Mapping):
    """HF's sharded ``pytorch_model-*.bin`` through ``pytorch_model.bin.index.json``: plain state
    dicts, so they are unpickled with ``weights_only`` (tensors only, no code)."""

    def __init__(self, directory: str, index: dict):
        self._where = dict(index["weight_map"])
        self._shards = {f: _TorchStateDict(os.path.join(directory, f), prefix_keys=(),
                                           weights_only=True)
                        for f in sorted(set(self._where.values()))}
        self.source = directory

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise KeyError(name)
        return self._shards[self._where[name]][name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _local(path: str) -> str:
    if path.startswith("gs://"):
        raise CheckpointError(
            f"{path}: read gs:// checkpoints by converting them once with "
            "`python -m cambrian.models.encoders.convert` or copying them to local disk first")
    return path


def open_checkpoint(path: str) -> Mapping[str, np.ndarray]:
    """A lazy name -> array mapping over a checkpoint file or directory (see module doc)."""
    path = _local(os.fspath(path))
    if not os.path.exists(path):
        raise CheckpointError(
            f"checkpoint not found: {path}. Download the public checkpoint to this path "
            "(see README, 'Checkpoints') or set the config's checkpoint field to where it lives.")
    if os.path.isdir(path):
        index = os.path.join(path, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
            return _Safetensors([os.path.join(path, x) for x in files])
        index = os.path.join(path, "pytorch_model.bin.index.json")
        if os.path.exists(index):
            with open(index) as f:
                return _TorchShards(path, json.load(f))
        st = sorted(x for x in os.listdir(path) if x.endswith(".safetensors"))
        if st:
            return _Safetensors([os.path.join(path, x) for x in st])
        pt = sorted(x for x in os.listdir(path) if x.endswith((".bin", ".pt", ".pth", ".pth.tar")))
        if pt:
            return _TorchStateDict(os.path.join(path, pt[0]))
        raise CheckpointError(f"{path}: no *.safetensors or PyTorch state-dict file in this "
                              "directory")
    if path.endswith(".safetensors"):
        return _Safetensors([path])
    return _TorchStateDict(path)


def take(reader: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...] | None = None,
         transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Reads tensor ``name``, applies ``transform`` and checks the result has ``shape``."""
    if name not in reader:
        src = getattr(reader, "source", "checkpoint")
        raise CheckpointError(f"{src}: tensor {name!r} is missing (expected shape {shape})")
    x = reader[name]
    if transform is not None:
        x = transform(x)
    if shape is not None and tuple(x.shape) != tuple(shape):
        src = getattr(reader, "source", "checkpoint")
        raise CheckpointError(
            f"{src}: tensor {name!r} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    return np.asarray(x, dtype=np.float32) if x.dtype != np.float32 and x.dtype.kind == "f" else x
