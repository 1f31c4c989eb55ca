"""Pieces the families' PyTorch references share.

Every family module has ``reference(src, px, config)``: the features Cambrian takes, computed by
the checkpoint's own library (transformers, timm, open_clip, diffusers) from the native checkpoint
``src``, as float32[B, h, w, C] numpy for NCHW torch pixels ``px`` already normalised for the
family. ``convert --verify`` and the parity tests both call it. The references need torch and the
reference libraries (the ``dev`` extra): this module is imported only inside them, and imports
torch only inside its functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cambrian.models import weights


def to_numpy(t) -> np.ndarray:
    return t.detach().float().numpy()


def pick(hidden, last, config):
    """``hidden[config.layer]`` (HF ``hidden_states`` indexing), or ``last`` for ``layer=None``."""
    return last if config.layer is None else hidden[config.layer]


def to_grid(tokens, num_prefix: int, px, patch: int) -> np.ndarray:
    """float[B, P + h*w, C] -> float32[B, h, w, C] for the patch grid of ``px``."""
    b, _, h, w = px.shape
    return to_numpy(tokens[:, num_prefix:]).reshape(b, h // patch, w // patch, -1)


def tensors(reader, prefix: str, keep: Callable[[str], bool],
            rename: Callable[[str], str] = lambda k: k) -> dict:
    """torch tensors of the names under ``prefix`` (prefix removed, then ``rename``d) that
    ``keep`` accepts; other tensors are never read."""
    import torch

    out = {}
    for k in reader:
        if k.startswith(prefix) and keep(name := rename(k[len(prefix):])):
            out[name] = torch.from_numpy(np.array(reader[k]))
    return out


def load_state(model, state_dict: dict, src: str, optional: tuple[str, ...] = ("head.",)):
    """Loads ``state_dict`` into ``model``; every model tensor outside ``optional`` (the heads
    Cambrian does not use) must be in it."""
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state_dict and not k.startswith(optional)]
    if missing:
        raise weights.CheckpointError(f"{src}: the reference model needs tensors the checkpoint "
                                      f"lacks: {', '.join(missing[:5])}")
    model.load_state_dict({k: v for k, v in state_dict.items() if k in wanted}, strict=False)
    return model


def timm_state(src: str, probe: str, prefixes: tuple[str, ...], model,
               rename: Callable[[str], str] = lambda k: k,
               optional: tuple[str, ...] = ("head.",)):
    """``model`` (a timm module) loaded from the state dict in ``src`` under the first of
    ``prefixes`` that holds ``probe``."""
    from cambrian.models.encoders import layout

    reader = weights.open_checkpoint(src)
    pre = layout.find_prefix(reader, probe, prefixes)
    return load_state(model, tensors(reader, pre, model.state_dict().__contains__, rename), src,
                      optional)


def timm_tokens(model, px, config):
    """Tokens of a timm ``VisionTransformer`` at ``config.layer`` (None: after the final norm)."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(px)))
    hidden = [x]
    for blk in model.blocks:
        hidden.append(blk(hidden[-1]))
    return pick(hidden, model.norm(hidden[-1]), config)


def hf_model(src: str, **kw):
    """The HF model saved in ``src`` (its vision tower where it has one), in eval mode."""
    import transformers

    model = transformers.AutoModel.from_pretrained(src, **kw).eval()
    return getattr(model, "vision_model", model)
