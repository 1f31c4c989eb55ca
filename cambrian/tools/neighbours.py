"""k nearest neighbours by cosine similarity: exact for small sets, an HNSW index for large ones.

The approximate index is ``usearch`` (extra ``.[mining]``). Why it over the other well-known
choices: it is one small wheel (~2 MB, no BLAS or OpenMP runtime to match), released monthly, builds
and queries an HNSW graph on all cores from numpy batches, and stores vectors in f32/f16/i8 with an
index that can be saved and memory-mapped, so tens of millions of embeddings fit one host.
``faiss-cpu`` is the reference library but an ~18 MB wheel whose fast indexes (IVF-PQ) need a
training pass and tuning; ``hnswlib`` has the same algorithm but its last release is from 2023.
HNSW recall is high but not 1: a true neighbour can be missed, never invented (every returned
similarity is recomputed exactly by the caller).
"""

from __future__ import annotations

import numpy as np

INDEXES = ("auto", "exact", "hnsw")
EXACT_MAX = 20_000  # "auto" searches exactly up to this many vectors (N^2 D flops)


def normalise(x: np.ndarray) -> np.ndarray:
    """float[N, D] -> float32[N, D] of unit rows (a zero row stays zero)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _drop_self(keys: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Removes each row's own index from its k+1 results (wherever a tie put it)."""
    n = len(keys)
    is_self = keys == np.arange(n)[:, None]
    # rows where self was not returned (ties of duplicates) drop their last entry instead
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return keys[keep].reshape(n, k), sims[keep].reshape(n, k)


def exact(x: np.ndarray, k: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(int64[N, k] neighbour indices, float32[N, k] cosines), best first, self excluded; ``x``
    unit rows. Blocked matmul: memory block x N."""
    n = len(x)
    k1 = min(k + 1, n)
    keys = np.empty((n, k1), np.int64)
    sims = np.empty((n, k1), np.float32)
    for s in range(0, n, block):
        sim = x[s:s + block] @ x.T
        part = np.argpartition(-sim, k1 - 1, axis=1)[:, :k1] if k1 < n else np.tile(
            np.arange(n), (len(sim), 1))
        ps = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-ps, axis=1, kind="stable")
        keys[s:s + block] = np.take_along_axis(part, order, axis=1)
        sims[s:s + block] = np.take_along_axis(ps, order, axis=1)
    return _drop_self(keys, sims, k1 - 1)


def hnsw(x: np.ndarray, k: int, *, connectivity: int = 16, expansion_add: int = 128,
         expansion_search: int = 128, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """As ``exact``, from an HNSW graph (usearch); missing neighbours come back as -1 / -inf."""
    try:
        from usearch.index import Index
    except ImportError as e:
        raise ImportError("the approximate index needs usearch: pip install -e '.[mining]' (or "
                          "--index exact for small sets)") from e
    n, d = x.shape
    k1 = min(k + 1, n)
    index = Index(ndim=d, metric="cos", dtype="f32", connectivity=connectivity,
                  expansion_add=expansion_add, expansion_search=max(expansion_search, k1))
    index.add(np.arange(n, dtype=np.uint64), x, threads=threads)
    found = index.search(x, k1, threads=threads)
    keys = np.asarray(found.keys, np.int64).reshape(n, k1)
    sims = (1.0 - np.asarray(found.distances, np.float32)).reshape(n, k1)
    counts = np.asarray(found.counts).reshape(n)
    missing = np.arange(k1)[None, :] >= counts[:, None]
    keys[missing], sims[missing] = -1, -np.inf
    return _drop_self(keys, sims, k1 - 1)


def neighbours(x: np.ndarray, k: int, index: str = "auto",
               exact_max: int = EXACT_MAX) -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours of every row of unit-row ``x`` under cosine; returns (keys, sims,
    the index used). ``index``: "exact", "hnsw", or "auto" (exact up to ``exact_max`` rows)."""
    if index not in INDEXES:
        raise ValueError(f"unknown index {index!r}; expected one of {', '.join(INDEXES)}")
    if index == "auto":
        index = "exact" if len(x) <= exact_max else "hnsw"
    search = exact if index == "exact" else hnsw
    keys, sims = search(x, k)
    return keys, sims, index
