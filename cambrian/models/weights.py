"""Reading public checkpoints tensor by tensor.

``open_checkpoint(path)`` gives a read-only mapping name -> numpy array over a safetensors file, a
directory of safetensors shards (with or without ``model.safetensors.index.json``; preferred when a
folder has both), or PyTorch state-dict files (``.bin``, ``.pt``, ``.pth``, ``.pth.tar``, or the
shards of ``pytorch_model.bin.index.json``; unwrapped from ``state_dict`` / ``model`` keys). Both
are memory-mapped and read one tensor at a time, so converting a model never holds the whole
checkpoint twice in host memory. ``path`` may be a ``gs://`` URL (copied once into the local
cache, ``fileio.local_copy``).

Pickled files are read with torch's weights-only unpickler: a file that would run code when
loaded, or holds any type beyond tensors, plain containers and ``SAFE_TYPES``, is refused with an
error naming the file and the type, unless that type is named in ``$CAMBRIAN_PICKLE_ALLOW``.

``take(reader, name, shape)`` is the single place that checks a tensor: a missing name or a wrong
shape raises ``CheckpointError`` naming the tensor, the expected and the found shape.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from cambrian import fileio


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


# Types public pickled checkpoints carry besides tensors and plain containers (which torch's
# weights-only unpickler allows already); none of them runs code when unpickled. The argparse
# Namespace is the training arguments some research releases store beside the weights.
SAFE_TYPES = (argparse.Namespace,)
PICKLE_ALLOW = "CAMBRIAN_PICKLE_ALLOW"  # env: extra "module.Type" names the user trusts


def _allowed_types() -> list:
    out = list(SAFE_TYPES)
    for name in filter(None, (n.strip() for n in os.environ.get(PICKLE_ALLOW, "").split(","))):
        module, _, attr = name.rpartition(".")
        try:
            out.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError, ValueError) as e:
            raise CheckpointError(f"{PICKLE_ALLOW}: {name!r} names no importable type; expected "
                                  "module.Type, e.g. numpy.dtype") from e
    return out


def torch_load(path: str):
    """``torch.load`` without running code: tensors, plain containers and ``SAFE_TYPES`` only,
    plus the types named in ``$CAMBRIAN_PICKLE_ALLOW``. Anything else raises ``CheckpointError``
    naming the file and the type."""
    import pickle

    import torch

    with torch.serialization.safe_globals(_allowed_types()):
        try:
            # mmap: tensors stay on disk until read, so converting never holds the file twice
            return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # pre-zip format
        except pickle.UnpicklingError as e:
            raise CheckpointError(_refusal(path, e)) from None


def _refusal(path: str, err: Exception) -> str:
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: fall back to the name in torch's message
        names = re.findall(r"GLOBAL ([\w.]+)", str(err))[:1]
    what = ", ".join(names) or "an object torch cannot load without running code"
    allow = ",".join(names) or "module.Type"
    return (f"{path}: refusing to unpickle {what}: loading a pickled checkpoint can run code, "
            "and this type is not one the public checkpoints carry. If you trust the file, "
            f"allow exactly this type with {PICKLE_ALLOW}={allow}, or convert the file to "
            "safetensors")


class _TorchStateDict(Mapping):
    """PyTorch state-dict files (one, or the shards of a ``*.bin.index.json``) as one mapping."""

    def __init__(self, files: list[str],
                 prefix_keys=("state_dict", "model", "module", "target_encoder", "encoder")):
        self._where: dict[str, dict] = {}
        for f in files:
            sd = torch_load(f)
            for k in prefix_keys:
                if isinstance(sd, dict) and k in sd and isinstance(sd[k], dict):
                    sd = sd[k]
            if not isinstance(sd, dict):
                raise CheckpointError(f"{f}: holds a {type(sd).__name__}, not a state dict of "
                                      "tensors")
            self._where.update(dict.fromkeys(sd, sd))
        self.source = files[0] if len(files) == 1 else os.path.dirname(files[0])

    def __getitem__(self, name: str) -> np.ndarray:
        t = self._where[name][name]
        return t.detach().float().numpy() if t.is_floating_point() else t.numpy()

    def __iter__(self):
        return iter(self._where)

    def __len__(self):
        return len(self._where)


_PICKLES = (".bin", ".pt", ".pth", ".pth.tar")


def _index_files(path: str, index: str) -> list[str]:
    with open(os.path.join(path, index)) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    missing = [x for x in files if not os.path.exists(os.path.join(path, x))]
    if missing:
        raise CheckpointError(
            f"{path}: {index} lists {len(files)} shards but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing; download the checkpoint again "
            "(python -m cambrian.fetch --checkpoints NAME resumes where it stopped)")
    return [os.path.join(path, x) for x in files]


def open_checkpoint(path: str) -> Mapping[str, np.ndarray]:
    """A lazy name -> array mapping over a checkpoint file or directory (see module doc)."""
    path = fileio.local_copy(os.fspath(path))
    if not os.path.exists(path):
        raise CheckpointError(
            f"checkpoint not found: {path}. Download the public checkpoint to this path "
            "(python -m cambrian.fetch; README, 'Running a real probe') or set the config's "
            "checkpoint field to where it lives.")
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        if "model.safetensors.index.json" in names:
            return _Safetensors(_index_files(path, "model.safetensors.index.json"))
        st = [x for x in names if x.endswith(".safetensors")]
        if st:
            return _Safetensors([os.path.join(path, x) for x in st])
        if "pytorch_model.bin.index.json" in names:
            return _TorchStateDict(_index_files(path, "pytorch_model.bin.index.json"))
        pt = [x for x in names if x.endswith(_PICKLES)]
        if pt:
            return _TorchStateDict([os.path.join(path, pt[0])])
        raise CheckpointError(f"{path}: no *.safetensors or PyTorch state-dict file in this "
                              "directory")
    if path.endswith(".safetensors"):
        return _Safetensors([path])
    return _TorchStateDict([path])


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


# Files of an HF checkpoint folder needed to build the model's structure (no weights).
CONFIG_FILES = ("config.json", "*_config.json", "model_index.json")


def with_local_checkpoints(model_config, *, weights: bool = True):
    """``model_config`` (a config's ``model`` section) with every ``gs://`` checkpoint of a
    pretrained encoder or LLM replaced by its copy in the host's cache (``fileio.local_copy``);
    ``weights=False`` copies only the LLM's config files (enough to build the structure)."""
    import copy

    remote = [e for e in model_config.encoders.values()
              if e.init == "pretrained" and fileio.is_remote(e.checkpoint)]
    llm = model_config.llm
    llm_remote = llm.init == "pretrained" and fileio.is_remote(llm.checkpoint)
    if not remote and not llm_remote:
        return model_config
    out = copy.deepcopy(model_config)
    if weights:
        for e in out.encoders.values():
            if e.init == "pretrained":
                e.checkpoint = fileio.local_copy(e.checkpoint)
    if llm_remote:
        out.llm.checkpoint = fileio.local_copy(llm.checkpoint,
                                               only=() if weights else CONFIG_FILES)
    return out
