"""The vision towers of released Cambrian-1 models: upstream's names, their hub repos, our encoders.

A release's ``config.json`` names its towers in ``mm_vision_tower_aux_list`` (token counts in
``mm_vision_tower_aux_token_len_list``). Upstream appends ``-interp<token_len>`` to each name
(``multimodal_encoder/builder.py:92``), picks the family by substring in ``builder.py:93-147``'s
order ("openai/clip", "siglip", "clip-convnext", "dinov2", ...) and each family reads its own
suffixes. A release holds no tower weights; each tower is read from its hub repo, laid out under
``towers_root/<repo>`` as the hub ships it:

* ``siglip/CLIP-ViT-SO400M-14-384`` -> ``timm/ViT-SO400M-14-SigLIP-384`` (open_clip layout);
  ``siglip/CLIP-ViT-SO400M-14`` -> ``timm/ViT-SO400M-14-SigLIP`` (224 px).
* ``openai/clip-vit-large-patch14-336`` (any ``openai/clip-vit-*``) -> the name itself (HF).
* ``facebook/dinov2-giant-res378`` -> ``facebook/dinov2-giant`` (HF): the name up to its suffixes
  (``-small``, ``-base``, ``-large``, ``-giant``, ``-giant-imagenet1k-1-layer``).
* ``clip-convnext-XXL-multi-stage`` -> ``laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup``
  (open_clip); ``clip-convnext-L...`` ->
  ``laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup``.

Suffixes, as upstream makes them mean (``-`` separated parts of the name + ``-interp<N>``):

* ``interp<N>``: the tower's tokens are resized (bilinear, align_corners=False, float32) to a
  sqrt(N) x sqrt(N) grid when its native count differs; every release tower carries one.
* ``res<N>``: DINOv2 runs at N px (crop size and shortest edge of its processor; position table
  resized by transformers 4.37's rule), default its config's 518 (``dino_encoder.py:30-33``,
  ``:85-96``).
  ConvNeXt runs at N px, default 1024 (``clip_convnext_encoder.py:28-33, :53``). SigLIP parses it,
  but the loaded trunk's own size wins (``siglip_encoder.py:59``); CLIP has none (a ``-res`` part
  would become part of the repo name).
* ``multi-stage`` (ConvNeXt): all four stage maps, each resized to the token grid, channels
  concatenated; otherwise the last stage only (``clip_convnext_encoder.py:50, :121-144``).

Padding colour for pad-to-square is the processor's ``image_mean``: the HF processors' own (CLIP
mean for CLIP, ImageNet mean for DINOv2); the open_clip towers report the CLIP mean whatever they
normalise with (``base_encoder.py:13``).
"""

from __future__ import annotations

import dataclasses
import os

from cambrian.models.encoders.preprocess import CLIP_MEAN, IMAGENET_MEAN


class TowerError(ValueError):
    """A tower name or path that the release loader cannot serve; the message says why."""


@dataclasses.dataclass(frozen=True)
class Tower:
    """One upstream tower, as our encoder config needs it.

    name: as in ``config.json``; repo: hub repo id (its files under ``towers_root/<repo>``);
    layout: "hf" | "open_clip"; family / variant: ``cambrian.models.encoders`` family and a key of
    its ``VARIANTS``; image_size: input pixels (None: the variant's own); tokens: output token
    count; layer: the family's feature layer (None: its default); pad_color: the fill of
    pad-to-square in [0, 1] per channel; pos_resize: how a DINOv2 position table is resized to
    ``image_size`` ("scale_factor": transformers 4.37, which the releases ran; None: n/a).
    """

    name: str
    repo: str
    layout: str
    family: str
    variant: str
    image_size: int | None
    tokens: int
    layer: int | None = None
    pad_color: tuple[float, float, float] = CLIP_MEAN
    pos_resize: str | None = None


_SIGLIP = {  # siglip_encoder.py:10-15, first matching prefix wins
    "siglip/CLIP-ViT-SO400M-14-384": ("timm/ViT-SO400M-14-SigLIP-384", "So400m/14-384"),
    "timm/ViT-SO400M-14-SigLIP-384": ("timm/ViT-SO400M-14-SigLIP-384", "So400m/14-384"),
    "siglip/CLIP-ViT-SO400M-14": ("timm/ViT-SO400M-14-SigLIP", "So400m/14"),
    "timm/ViT-SO400M-14-SigLIP": ("timm/ViT-SO400M-14-SigLIP", "So400m/14"),
}
_CLIP = {"openai/clip-vit-large-patch14-336": "L/14-336", "openai/clip-vit-large-patch14": "L/14",
         "openai/clip-vit-base-patch16": "B/16", "openai/clip-vit-base-patch32": "B/32"}
_DINOV2 = {  # dino_encoder.py:12-18 (the 1-layer giant before the plain giant)
    "facebook/dinov2-small": "S/14", "facebook/dinov2-base": "B/14",
    "facebook/dinov2-large": "L/14", "facebook/dinov2-giant-imagenet1k-1-layer": "g/14",
    "facebook/dinov2-giant": "g/14"}
DINOV2_CONFIG_SIZE = 518  # image_size in every facebook/dinov2-* config.json
_CONVNEXT = {  # clip_convnext_encoder.py:12-15
    "clip-convnext-L": ("laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup", "L"),
    "clip-convnext-XXL": ("laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup", "XXL")}
# builder.py:93-147's dispatch order; the release loader serves the first four families.
DISPATCH = ("maws", "openai/clip", "apple/dfn", "siglip", "eva/clip", "clip-convnext", "dinov2",
            "mae", "moco", "ijepa", "supervised-vit", "hybridmodel", "diffusion", "midas", "sam")
SUPPORTED = ("openai/clip", "siglip", "clip-convnext", "dinov2")

# timm trunks named by the open_clip towers' ``open_clip_config.json``: our family and variant,
# and the MLP activation timm builds (vit_so400m_patch14_siglip_* leave timm's default: exact erf
# GELU, unlike HF SigLIP's tanh approximation).
TIMM_ARCHITECTURES = {
    "vit_so400m_patch14_siglip_384": ("siglip", "So400m/14-384", "gelu"),
    "vit_so400m_patch14_siglip_224": ("siglip", "So400m/14", "gelu"),
    "convnext_xxlarge": ("convnext", "XXL", "gelu"),
    "convnext_large_d_320": ("convnext", "L", "gelu"),
}


def _parts(name: str) -> tuple[int | None, int | None]:
    """(res, interp) from ``-res<N>`` / ``-interp<N>`` parts, as every family parses them."""
    res = interp = None
    for part in name.split("-"):
        if part.startswith("res"):
            res = int(part[3:])
        elif part.startswith("interp"):
            interp = int(part[6:])
    return res, interp


def _first_prefix(name: str, table) -> str | None:
    return next((p for p in table if name.startswith(p)), None)


def parse(name: str, token_len: int, *, select_layer: int = -2) -> Tower:
    """Upstream tower name + its token length -> ``Tower``.

    ``select_layer``: ``mm_vision_select_layer`` of the config (only the CLIP family reads it).
    Names outside the four families the release loader serves are errors naming the families.
    """
    full = f"{name}-interp{token_len}"
    family = next((k for k in DISPATCH if k in full.lower()), None)
    if family not in SUPPORTED:
        raise TowerError(
            f"vision tower {name!r}: upstream reads it as {family or 'no known family'!r}; the "
            f"release loader serves {', '.join(SUPPORTED)} towers (the released models' four)")
    res, interp = _parts(full)
    if family == "openai/clip":
        repo = full.split("-interp")[0]
        if repo not in _CLIP:
            raise TowerError(f"vision tower {name!r}: no CLIP variant for repo {repo!r}; known: "
                             f"{', '.join(_CLIP)}")
        return Tower(name, repo, "hf", "clip", _CLIP[repo], None, interp, layer=select_layer)
    if family == "siglip":
        prefix = _first_prefix(full, _SIGLIP)
        if prefix is None:
            raise TowerError(f"vision tower {name!r}: unknown SigLIP name; upstream knows the "
                             f"prefixes {', '.join(_SIGLIP)}")
        repo, variant = _SIGLIP[prefix]
        return Tower(name, repo, "open_clip", "siglip", variant, None, interp)
    if family == "clip-convnext":
        prefix = _first_prefix(full, _CONVNEXT)
        if prefix is None:
            raise TowerError(f"vision tower {name!r}: unknown ConvNeXt name; upstream knows the "
                             f"prefixes {', '.join(_CONVNEXT)}")
        repo, size = _CONVNEXT[prefix]
        res = res or 1024
        multi = "multi-stage" in full
        variant = f"{size}@1024" + ("-multi-stage" if multi else "")
        if multi and size != "XXL":
            raise TowerError(f"vision tower {name!r}: no multi-stage ConvNeXt-{size} variant in "
                             "cambrian.models.encoders.convnext (only XXL)")
        return Tower(name, repo, "open_clip", "convnext", variant, res, interp)
    prefix = _first_prefix(full, _DINOV2)
    if prefix is None:
        raise TowerError(f"vision tower {name!r}: unknown DINOv2 name; upstream knows the "
                         f"prefixes {', '.join(_DINOV2)}")
    res, interp = _parts(full[len(prefix):])
    return Tower(name, prefix, "hf", "dinov2", _DINOV2[prefix], res or DINOV2_CONFIG_SIZE, interp,
                 pad_color=IMAGENET_MEAN, pos_resize="scale_factor")


def tower_path(tower: Tower, *, towers_root: str | None = None,
               towers: dict[str, str] | None = None) -> str:
    """Where ``tower``'s weights are: ``towers[name]`` if given, else ``towers_root/<repo>``."""
    if towers and tower.name in towers:
        path, how = towers[tower.name], f"towers[{tower.name!r}]"
    elif towers_root:
        path, how = os.path.join(towers_root, tower.repo), "towers_root"
    else:
        raise TowerError(f"vision tower {tower.name!r}: pass towers_root (holding {tower.repo}/) "
                         f"or towers={{{tower.name!r}: DIR}}; the release has no tower weights")
    if not os.path.isdir(path):
        raise TowerError(f"vision tower {tower.name!r}: {path} ({how}) is not a directory; "
                         f"download the hub repo {tower.repo} there in its native layout")
    return path
