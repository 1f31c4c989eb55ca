"""A released Cambrian-1 model, read from its hub layout, answering questions about images.

    r = release.load("cambrian-8b", towers_root="towers")
    r.next_token_logits(image, "What is it?")   # float32[vocab]: the first answer token's logits
    r.answer(image, "What is it?")              # greedy, as upstream's eval scripts decode

``load`` reads ``config.json`` (``config.read``), the tokenizer and the shards (safetensors +
``model.safetensors.index.json`` or ``pytorch_model-*.bin`` + index): the LLM through
``vlm.Cambrian`` (a release directory is an LLM checkpoint to it), the SVA through
``connectors.sva.load``; the towers from ``towers`` / ``towers_root`` in their hub layouts. The
prompt is the eval scripts' (``"<image>\\n" + question`` as the user turn of ``conv_mode``'s
template); the image is letter-boxed and cropped as upstream's GPU eval (``vlm`` module doc).
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from cambrian.data import chat_templates, conversation
from cambrian.data import tokenizer as tokenizer_lib
from cambrian.eval import decoded
from cambrian.models import vlm
from cambrian.models.connectors import sva
from cambrian.release import config as RC

log = logging.getLogger(__name__)
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(eq=False)
class Release:
    """A loaded release: ``config`` (``ReleaseConfig``), ``model`` (``vlm.Cambrian``), its
    tokenizer."""

    config: RC.ReleaseConfig
    model: vlm.Cambrian
    tokenizer: object

    def __post_init__(self):
        self._told = False
        self._graphdef, self._state = nnx.split(self.model)
        self._host = self.model.host_images()
        graphdef = self._graphdef

        def logits(state, batch):
            out, _ = nnx.merge(graphdef, state)(batch, packed=False)
            return out[0, -1].astype(jnp.float32)

        self._logits = jax.jit(logits)
        self._generate: dict[int, object] = {}  # max_new_tokens -> jitted greedy decoding

    # ----------------------------------------------------------------------------- inputs

    def conv_mode(self, conv_mode: str | None) -> str:
        if conv_mode:
            return conv_mode
        if not self._told:  # once per model: every later call uses the same
            log.info("conv_mode %s (upstream's eval for %s; pass conv_mode= to change)",
                     self.config.template, self.config.upstream.get("_name_or_path"))
            self._told = True
        return self.config.template

    def batch(self, image, question: str, conv_mode: str | None = None) -> dict:
        """One prompt row: ``tokens`` int32[1, T] with the image's slots, its host images."""
        template = chat_templates.get(self.conv_mode(conv_mode))
        ids = conversation.encode_prompt(question, template, self.tokenizer,
                                         num_image_tokens=self.model.num_image_tokens)
        return {"tokens": ids[None], "segment_ids": np.ones((1, len(ids)), np.int32),
                **self._host.batch([as_uint8(image)])}

    # ----------------------------------------------------------------------------- outputs

    def next_token_logits(self, image, question: str, conv_mode: str | None = None
                          ) -> np.ndarray:
        """float32[vocab]: the logits of the first answer token."""
        return np.asarray(self._logits(self._state, self.batch(image, question, conv_mode)))

    def answer(self, image, question: str, conv_mode: str | None = None,
               max_new_tokens: int = 128) -> str:
        """Greedy answer until an eos id of ``generation_config.json``; special tokens skipped,
        cleaned as the tokenizer config says, stripped (upstream's eval: ``eval.decoded``)."""
        batch = self.batch(image, question, conv_mode)
        if max_new_tokens not in self._generate:
            self._generate[max_new_tokens] = vlm.generate_fn(
                self._graphdef, max_new_tokens=max_new_tokens, eos_ids=self.config.eos_token_ids)
        run = self._generate[max_new_tokens]
        toks, n = jax.device_get(run(self._state, batch))
        return decoded.prediction_text(self.tokenizer, toks[0, :int(n[0])],
                                       self.config.eos_token_ids)


def as_uint8(image) -> np.ndarray:
    """A PIL image (any mode) or uint8[H, W, 3] -> uint8[H, W, 3] RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"image: expected a PIL image or uint8[H, W, 3], got {a.dtype}"
                         f"{list(a.shape)}")
    return a


def model_config(checkpoint: str, *, towers_root: str | None = None,
                 towers: dict[str, str] | None = None, dtype: str = "float32",
                 conv_mode: str | None = None) -> RC.ReleaseConfig:
    """``config.read`` with the compute dtype of LLM and towers set (``dtype``)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {DTYPES}")
    rc = RC.read(checkpoint, towers_root=towers_root, towers=towers, conv_mode=conv_mode)
    rc.model.dtype = rc.model.encoder_dtype = dtype
    return rc


def load(checkpoint: str, *, towers_root: str | None = None,
         towers: dict[str, str] | None = None, dtype: str = "float32") -> Release:
    """A release directory (nyu-visionx/cambrian-8b, -13b or -34b as the hub ships it) and its
    towers (``towers[name]`` or ``towers_root/<hub repo>``) -> ``Release``. ``dtype``: compute
    dtype of LLM and towers (weights stay float32)."""
    rc = model_config(checkpoint, towers_root=towers_root, towers=towers, dtype=dtype)
    tok = tokenizer_lib.load(checkpoint)
    model = vlm.Cambrian(rc.model, vocab_size=len(tok), rngs=nnx.Rngs(0))
    # the SVA built above is random: replace it with the release's own
    model.connector = sva.load(
        checkpoint, encoder_channels=[model.encoders[a].out_channels for a in model.order],
        encoder_grids=model.grids, llm_dim=model.llm.config.hidden_size,
        llm_num_layers=model.llm.config.num_layers, **rc.model.connector.options.to_dict())
    return Release(rc, model, tok)
