"""TPU generations: chips per slice name, HBM and bf16 peak per chip, chips per host.

Slice names count TensorCores for v4 / v5p (``v4-128`` = 64 chips) and chips for the one-core
generations (``v5e-256`` = 256 chips). Kept free of JAX so the launcher can size a slice
before any device exists.
"""

from __future__ import annotations

import dataclasses
import re

GiB = 2**30
# Share of HBM a step may plan for: XLA keeps ~10% for its own buffers.
HBM_MARGIN = 0.9


@dataclasses.dataclass(frozen=True)
class Tpu:
    """One TPU generation: TensorCores counted per chip in the slice name, HBM bytes and
    dense bf16 FLOP/s per chip, chips per host (VM)."""

    cores_per_chip: int
    hbm: int
    peak_bf16: float
    chips_per_host: int


TPUS = {"v4": Tpu(2, 32 * GiB, 275e12, 4), "v5p": Tpu(2, 95 * GiB, 459e12, 4),
        "v5e": Tpu(1, 16 * GiB, 197e12, 4), "v5litepod": Tpu(1, 16 * GiB, 197e12, 4),
        "v6e": Tpu(1, 32 * GiB, 918e12, 4)}


def tpu_generation(name: str) -> tuple[Tpu, int]:
    """``"v4-128"`` -> (the v4 entry of TPUS, 64 chips)."""
    m = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name)
    if not m or m.group(1) not in TPUS:
        raise ValueError(f"topology {name!r}: expected e.g. v4-128, v5p-128, v5e-256 (known "
                         f"generations: {', '.join(TPUS)})")
    gen = TPUS[m.group(1)]
    return gen, int(m.group(2)) // gen.cores_per_chip


def parse_topology(name: str) -> tuple[int, int]:
    """``"v4-128"`` -> (64 chips = JAX devices, 32 GiB HBM each)."""
    gen, chips = tpu_generation(name)
    return chips, gen.hbm


def hosts(name: str) -> int:
    """Workers (VMs) of a slice: ``"v4-128"`` -> 16; single-host slices of up to 8 chips of
    the one-core generations (v5e-8, v6e-8) -> 1."""
    gen, chips = tpu_generation(name)
    if gen.cores_per_chip == 1 and chips <= 8:
        return 1
    return max(1, chips // gen.chips_per_host)


