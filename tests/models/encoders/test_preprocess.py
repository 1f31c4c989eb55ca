"""Encoder preprocessing equals each family's reference transform on real photographs.

The references are the image processors the towers ship with: HF processors (PIL backend, as
Cambrian ran them), timm eval transforms and open_clip transforms. Cambrian pads every image to a
square (LLaVA ``expand2square``) and resizes it once, bicubic, to the tower's size
(mm_utils.py:186-201), re-implemented here independently (``utils.cambrian_square``).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cambrian.models import encoders
from cambrian.models.encoders import preprocess

from .utils import cambrian_square, expand2square, photos

OPENAI = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _photos():
    return photos("astronaut", "chelsea", "coffee")


def _hf(cls_name, **kw):
    import transformers

    proc = getattr(transformers, cls_name)(**kw)
    return lambda img: proc(images=img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)


def _torchvision(tf):
    return lambda img: tf(Image.fromarray(img)).numpy().transpose(1, 2, 0)


def _open_clip(size, mean_std, resize_mode):
    import open_clip

    return _torchvision(open_clip.image_transform(size, is_train=False, mean=mean_std[0],
                                                  std=mean_std[1], interpolation="bicubic",
                                                  resize_mode=resize_mode))


def _timm(model_name):
    import timm.data

    cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(
        model_name).to_dict())
    return _torchvision(timm.data.create_transform(**cfg))


def _mocov3():
    import torchvision.transforms as T

    # MoCo v3 main_lincls.py validation transform
    return _torchvision(T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                                   T.Normalize(*IMAGENET)]))


def _size(s):
    return {"height": s, "width": s}


REFERENCES = {
    ("clip", "L/14-336"): lambda: _hf("CLIPImageProcessorPil", size={"shortest_edge": 336},
                                      crop_size=_size(336)),
    ("dinov2", "L/14"): lambda: _hf("BitImageProcessorPil", size={"shortest_edge": 336},
                                    crop_size=_size(336), image_mean=IMAGENET[0],
                                    image_std=IMAGENET[1], resample=3),
    ("dinov2", "g/14"): lambda: _hf("BitImageProcessorPil", size={"shortest_edge": 378},
                                    crop_size=_size(378), image_mean=IMAGENET[0],
                                    image_std=IMAGENET[1], resample=3),
    ("siglip", "So400m/14-384"): lambda: _open_clip(384, INCEPTION, "squash"),
    ("siglip", "L/16-384"): lambda: _hf("SiglipImageProcessorPil", size=_size(384)),
    ("dfn_clip", "L/14"): lambda: _open_clip(224, OPENAI, "shortest"),
    ("dfn_clip", "H/14-378"): lambda: _open_clip(378, OPENAI, "squash"),
    ("mae", "L/16"): lambda: _timm("vit_large_patch16_224.mae"),
    ("supvit", "L/16"): lambda: _timm("vit_large_patch16_224.orig_in21k"),
    ("supvit", "H/14"): lambda: _timm("vit_huge_patch14_224.orig_in21k"),
    ("mocov3", "B/16"): _mocov3,
    ("dpt", "L/16-384"): lambda: _hf("DPTImageProcessorPil", size=_size(384),
                                     keep_aspect_ratio=False),
    ("ijepa", "H/14"): lambda: _hf("ViTImageProcessorPil", size=_size(224), resample=2,
                                   image_mean=IMAGENET[0], image_std=IMAGENET[1]),
}


@pytest.mark.parity
@pytest.mark.parametrize("pad", [True, False], ids=["pad", "nopad"])
@pytest.mark.parametrize("family,variant", sorted(REFERENCES))
def test_matches_reference_processor(family, variant, pad):
    spec = encoders.preprocessing(family, variant)
    ref = REFERENCES[(family, variant)]()
    for name, img in _photos().items():
        got = preprocess.apply(img, spec, pad=pad)
        src = (cambrian_square(img, spec.pad_color or spec.mean, spec.image_size) if pad
               else img)
        want = ref(src)
        assert got.shape == want.shape == (spec.image_size, spec.image_size, 3), name
        err = float(np.abs(got - want).max())
        assert err <= 1e-3, f"{family} {variant} {name} pad={pad}: max abs err {err:.2e}"


def test_pad_to_square_matches_expand2square():
    for img in _photos().values():
        for color in (OPENAI[0], IMAGENET[0], (0.5, 0.5, 0.5)):
            padded, (top, left, h, w) = preprocess.pad_to_square(img, color)
            np.testing.assert_array_equal(padded, expand2square(img, color))
            np.testing.assert_array_equal(padded[top:top + h, left:left + w], img)


def test_pad_colour_is_the_cambrian_one():
    # HF-processor towers pad with their own mean; wrapped open_clip/timm towers report CLIP's
    assert encoders.preprocessing("clip").pad_color in (None, OPENAI[0])
    assert encoders.preprocessing("dinov2").pad_color is None
    assert encoders.preprocessing("dinov2").mean == IMAGENET[0]
    for family in ("siglip", "dfn_clip", "mae", "supvit", "mocov3"):
        spec = encoders.preprocessing(family)
        assert (spec.pad_color or spec.mean) == OPENAI[0], family


def test_crop_pct_resizes_then_crops():
    img = np.arange(300 * 400 * 3, dtype=np.uint8).reshape(300, 400, 3)
    spec = preprocess.PreprocessSpec(image_size=224, crop_pct=0.875, interpolation="nearest")
    out = preprocess.resize(img, spec)
    # shortest side 300 -> 256 (= 224 / 0.875), long side int(256 * 400 / 300) = 341
    small = np.asarray(Image.fromarray(img).resize((341, 256), Image.NEAREST))
    top, left = 16, int(round((341 - 224) / 2))
    np.testing.assert_array_equal(out, small[top:top + 224, left:left + 224])
