"""The four vision towers of the Cambrian-1 release as upstream computes them (PyTorch).

Part of the independent reference (``torch_reference.py`` holds the spec); built from each tower
repo's native layout through transformers / open_clip / timm, never through ``cambrian.models``.
A tower maps a PIL image to ``float32[1, T, C]`` tokens (T = the tower's token length).
"""

from __future__ import annotations

import json
import math
import os
import types

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)

# builder.py:93-147 dispatches on these substrings of "<name>-interp<N>", in this order.
DISPATCH = ("maws", "openai/clip", "apple/dfn", "siglip", "eva/clip", "clip-convnext", "dinov2",
            "mae", "moco", "ijepa", "supervised-vit", "hybridmodel", "diffusion", "midas", "sam")
# siglip_encoder.py:10-15 (first matching prefix wins, in this order)
SIGLIP_PREFIXES = {"siglip/CLIP-ViT-SO400M-14-384": "timm/ViT-SO400M-14-SigLIP-384",
                   "timm/ViT-SO400M-14-SigLIP-384": "timm/ViT-SO400M-14-SigLIP-384",
                   "siglip/CLIP-ViT-SO400M-14": "timm/ViT-SO400M-14-SigLIP",
                   "timm/ViT-SO400M-14-SigLIP": "timm/ViT-SO400M-14-SigLIP"}
# dino_encoder.py:12-18
DINO_PREFIXES = ("facebook/dinov2-small", "facebook/dinov2-base", "facebook/dinov2-large",
                 "facebook/dinov2-giant-imagenet1k-1-layer", "facebook/dinov2-giant")
# clip_convnext_encoder.py:12-15
CONVNEXT_PREFIXES = {
    "clip-convnext-L": "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup",
    "clip-convnext-XXL": "laion/CLIP-convnext_xxlarge-laion2B-s34B-b82K-augreg-soup"}


def _suffix_ints(parts) -> tuple[int | None, int | None]:
    res = interp = None
    for part in parts:
        if part.startswith("res"):
            res = int(part[3:])
        elif part.startswith("interp"):
            interp = int(part[6:])
    return res, interp


def parse(name: str, token_len: int) -> dict:
    """Upstream's reading of a tower name: kind, hub repo, ``-res`` / ``-interp`` / multi-stage."""
    full = f"{name}-interp{token_len}"  # builder.py:92
    kind = next((k for k in DISPATCH if k in full.lower()), None)
    if kind == "openai/clip":  # clip_encoder.py:13-25: everything before -interp is the repo
        return {"kind": "clip", "repo": full.split("-interp")[0], "res": None,
                "interp": _suffix_ints(full.split("-"))[1]}
    if kind == "siglip":  # siglip_encoder.py:9-34
        repo = next((r for p, r in SIGLIP_PREFIXES.items() if full.startswith(p)), None)
        res, interp = _suffix_ints(full.split("-"))
        if repo is not None:
            return {"kind": "siglip", "repo": repo, "interp": interp,
                    "res": res if res is not None else (384 if "384" in full else 224)}
    if kind == "clip-convnext":  # clip_convnext_encoder.py:11-55
        repo = next((r for p, r in CONVNEXT_PREFIXES.items() if full.startswith(p)), None)
        res, interp = _suffix_ints(full.split("-"))
        if repo is not None:
            return {"kind": "convnext", "repo": repo, "res": res if res is not None else 1024,
                    "interp": interp, "multi_stage": "multi-stage" in full}
    if kind == "dinov2":  # dino_encoder.py:11-37
        base = next((p for p in DINO_PREFIXES if full.startswith(p)), None)
        if base is not None:
            res, interp = _suffix_ints(full[len(base):].split("-"))
            return {"kind": "dinov2", "repo": base, "res": res, "interp": interp}
    raise NotImplementedError(f"reference: tower {name!r} is not one of the release's four "
                              "(SigLIP SO400M, OpenAI CLIP, DINOv2, CLIP-ConvNeXt)")


def interpolate_tokens(x: torch.Tensor, tokens: int) -> torch.Tensor:
    """float[B, N, C] -> float[B, tokens, C]: bilinear, align_corners=False, in float32
    (clip_encoder.py:70-96 and its siblings)."""
    b, n, c = x.shape
    side, target = int(n ** 0.5), int(tokens ** 0.5)
    grid = x.view(b, side, side, c).permute(0, 3, 1, 2)
    out = F.interpolate(grid.float(), size=(target, target), mode="bilinear",
                        align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(b, target * target, c).to(x.dtype)


def expand2square(img: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """mm_utils.py:153-164: centred on a square canvas of the long side."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new(img.mode, (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


class Tower(torch.nn.Module):
    """pad colour + size + normalisation (the tower's processor) and the token features."""

    kind: str
    image_size: int
    pad_mean: tuple[float, float, float]  # processor.image_mean (expand2square's fill)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """mm_utils.py:186-201: expand2square with int(mean * 255), one PIL resize (Pillow's
        default filter, bicubic) to the tower's size, then the processor; at that size its own
        resize / centre crop are the identity, which leaves rescale + normalise."""
        fill = tuple(int(m * 255) for m in self.pad_mean)
        img = expand2square(image, fill).resize((self.image_size,) * 2, Image.BICUBIC)
        x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((x - mean) / std)[None]


class ClipTower(Tower):
    """transformers CLIPVisionModel, ``hidden_states[select_layer][:, 1:]`` (clip_encoder.py)."""

    def __init__(self, path: str, spec: dict, select_layer: int):
        super().__init__()
        self.path = path
        from transformers import CLIPVisionModel

        self.kind, self.interp, self.select_layer = "clip", spec["interp"], select_layer
        self.model = CLIPVisionModel.from_pretrained(path).eval()
        with open(os.path.join(path, "preprocessor_config.json")) as fh:
            pp = json.load(fh)
        crop = pp["crop_size"]
        self.image_size = crop["height"] if isinstance(crop, dict) else int(crop)
        self.pad_mean = self.mean = tuple(pp["image_mean"])
        self.std = tuple(pp["image_std"])

    def forward(self, px):
        out = self.model(pixel_values=px, output_hidden_states=True)
        x = out.hidden_states[self.select_layer][:, 1:]
        return interpolate_tokens(x, self.interp) if x.shape[1] != self.interp else x


def _dinov2_437_positions(patch: int):
    """transformers 4.37 ``Dinov2Embeddings.interpolate_pos_encoding``: bicubic with
    ``scale_factor = (new + 0.1) / old`` per axis (later versions pass ``size=``)."""

    def interpolate_pos_encoding(self, embeddings, height, width):
        table = self.position_embeddings
        n = table.shape[1] - 1
        if embeddings.shape[1] - 1 == n and height == width:
            return table
        gh, gw = height // patch + 0.1, width // patch + 0.1
        old = math.sqrt(n)
        grid = table[:, 1:].reshape(1, int(old), int(old), -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), scale_factor=(float(gh / old), float(gw / old)),
                             mode="bicubic", align_corners=False).to(table.dtype)
        if grid.shape[-2:] != (int(gh), int(gw)):
            raise ValueError(f"position grid {tuple(grid.shape[-2:])} != {(int(gh), int(gw))}")
        return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])],
                         dim=1)

    return interpolate_pos_encoding


class DinoTower(Tower):
    """transformers Dinov2Model at ``-res`` (or its config size), ``last_hidden_state[:, 1:]``."""

    def __init__(self, path: str, spec: dict):
        super().__init__()
        from transformers import Dinov2Model

        self.path = path
        self.kind, self.interp = "dinov2", spec["interp"]
        self.model = Dinov2Model.from_pretrained(path).eval()
        patch = self.model.config.patch_size
        self.model.embeddings.interpolate_pos_encoding = types.MethodType(
            _dinov2_437_positions(patch), self.model.embeddings)
        # dino_encoder.py:85-96: crop and shortest edge both set to the resolution
        self.image_size = spec["res"] or self.model.config.image_size
        with open(os.path.join(path, "preprocessor_config.json")) as fh:
            pp = json.load(fh)
        self.pad_mean = self.mean = tuple(pp["image_mean"])
        self.std = tuple(pp["image_std"])

    def forward(self, px):
        x = self.model(pixel_values=px).last_hidden_state[:, 1:]
        return interpolate_tokens(x, self.interp) if x.shape[1] != self.interp else x


def _open_clip(path: str):
    import open_clip

    model, preprocess = open_clip.create_model_from_pretrained("local-dir:" + path)
    norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    return model.eval(), tuple(float(m) for m in norm.mean), tuple(float(s) for s in norm.std)


class SiglipTower(Tower):
    """open_clip's timm trunk ``forward_features`` (final norm, no CLS); the size is the trunk's
    own (siglip_encoder.py:59), the pad colour the wrapper's CLIP mean (base_encoder.py:13)."""

    def __init__(self, path: str, spec: dict):
        super().__init__()
        self.path = path
        model, self.mean, self.std = _open_clip(path)
        self.kind, self.interp = "siglip", spec["interp"]
        self.trunk = model.visual.trunk
        self.image_size = self.trunk.patch_embed.img_size[0]
        self.pad_mean = CLIP_MEAN

    def forward(self, px):
        x = self.trunk.forward_features(px)
        return interpolate_tokens(x, self.interp) if x.shape[1] != self.interp else x


class ConvNextTower(Tower):
    """open_clip's timm ConvNeXt: stem, then every stage (multi-stage) or the last, each map
    bilinear to sqrt(interp)^2, channels concatenated (clip_convnext_encoder.py:99-144)."""

    def __init__(self, path: str, spec: dict):
        super().__init__()
        self.path = path
        model, self.mean, self.std = _open_clip(path)
        self.kind, self.interp, self.multi = "convnext", spec["interp"], spec["multi_stage"]
        self.trunk = model.visual.trunk
        self.image_size = spec["res"]  # the processor's Resize / CenterCrop are set to it (:86-87)
        self.pad_mean = CLIP_MEAN

    def forward(self, px):
        x = self.trunk.stem(px)
        maps = []
        for stage in self.trunk.stages:
            x = stage(x)
            maps.append(x)
        side = int(self.interp ** 0.5)
        out = []
        for m in maps if self.multi else maps[-1:]:
            m = F.interpolate(m.float(), size=(side, side), mode="bilinear", align_corners=False)
            out.append(m.flatten(2, 3).permute(0, 2, 1))
        return torch.cat(out, dim=-1)


def build(name: str, token_len: int, path: str, select_layer: int) -> Tower:
    spec = parse(name, token_len)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tower {name!r}: {path} is not a directory (expected the hub "
                                f"repo {spec['repo']} in its native layout)")
    if spec["kind"] == "clip":
        return ClipTower(path, spec, select_layer)
    if spec["kind"] == "dinov2":
        return DinoTower(path, spec)
    if spec["kind"] == "siglip":
        return SiglipTower(path, spec)
    return ConvNextTower(path, spec)


def from_module(kind: str, module: torch.nn.Module, interp: int, image_size: int,
                select_layer: int = -1) -> Tower:
    """A tower around an already built (e.g. randomly initialised, any size) model: ``module``
    is what the class would load (CLIPVisionModel / Dinov2Model / the timm trunk); for timing
    and training paths that feed normalised pixels, so no processor is read."""
    cls = {"clip": ClipTower, "dinov2": DinoTower, "siglip": SiglipTower,
           "convnext": ConvNextTower}[kind]
    tower = cls.__new__(cls)
    torch.nn.Module.__init__(tower)
    tower.kind, tower.interp, tower.image_size, tower.path = kind, interp, image_size, ""
    tower.pad_mean = tower.mean = CLIP_MEAN
    tower.std = (1.0, 1.0, 1.0)
    if kind in ("clip", "dinov2"):
        tower.model = module
    else:
        tower.trunk = module
    if kind == "clip":
        tower.select_layer = select_layer
    if kind == "dinov2":
        tower.model.embeddings.interpolate_pos_encoding = types.MethodType(
            _dinov2_437_positions(module.config.patch_size), tower.model.embeddings)
    if kind == "convnext":
        tower.multi = True
    return tower
