"""SVA attention mass per encoder on each benchmark: ``WORKDIR/attention/<benchmark>.json``.

Cambrian-1's analysis of the aggregator (paper Table 22 in v1): which share of the SVA's attention
weight each vision encoder receives, averaged over a benchmark's images. Written by the eval when
``eval.save_attention=True``; the connector must return ``out["attention_mass"]`` float32[B, E]
(the SVA does: averaged over heads, valid queries and its D x G layers before the LLM). The file::

    {"benchmark": "gqa", "encoders": ["siglip", "clip"], "families": ["siglip", "clip"],
     "mass": [0.62, 0.38], "std": [0.03, 0.03], "n": 120}

``mass`` sums to 1 (the mean over images of each image's shares); ``n`` counts the images.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from flax import nnx

from cambrian import config as config_lib
from cambrian import fileio


class Saver:
    """Runs the encoders and connector of the evaluated model on a benchmark's images."""

    def __init__(self, graphdef, state, config, *, host_images, batch_size: int):
        self.state, self.host_images = state, host_images
        self.bs = batch_size
        encoders = config_lib.ordered_encoders(config.model.encoders)
        self.aliases = [a for a, _ in encoders]
        self.families = [e.family for _, e in encoders]

        def mass(state, image, letterbox):
            _, out = nnx.merge(graphdef, state).encode_images(image, letterbox)
            return out["attention_mass"]

        shapes = host_images.shapes(1)
        probe = (jax.tree.map(lambda s: jax.ShapeDtypeStruct(*s), shapes["image"],
                              is_leaf=lambda x: isinstance(x, tuple)),
                 jax.ShapeDtypeStruct(*shapes["letterbox"]))
        try:
            jax.eval_shape(mass, state, *probe)
        except KeyError as e:
            raise ValueError(
                f"eval.save_attention=True, but connector {config.model.connector.name!r} "
                "returns no attention mass (only the SVA does: connectors/sva.py); set "
                "--config.eval.save_attention=False") from e
        self._mass = jax.jit(mass)

    def save(self, name: str, samples: list[dict], workdir: str) -> dict:
        """Writes and returns the record of benchmark ``name`` (items without an image skipped:
        they have no attention)."""
        images = [s["image"] for s in samples if s.get("image") is not None]
        rows = []
        for i in range(0, len(images), self.bs):
            chunk = images[i:i + self.bs]
            pixels = self.host_images.batch(chunk, self.bs)
            rows.append(np.asarray(self._mass(self.state, pixels["image"],
                                              pixels["letterbox"]))[:len(chunk)])
        m = np.concatenate(rows) if rows else np.zeros((0, len(self.aliases)))
        rec = {"benchmark": name, "encoders": self.aliases, "families": self.families,
               "mass": m.mean(0).tolist() if len(m) else None,
               "std": m.std(0).tolist() if len(m) else None, "n": len(m)}
        folder = fileio.join(workdir, "attention")
        fileio.makedirs(folder)
        fileio.write_text(fileio.join(folder, f"{name}.json"), json.dumps(rec, indent=2))
        return rec
