"""Preprocessing of the ConvNeXt, SAM, EVA-CLIP and AIMv2 towers equals their reference transforms.

References: open_clip's eval transform (ConvNeXt, EVA02; open_clip's default pretrained config,
which the laion ConvNeXt and timm EVA02 checkpoints use), Cambrian's ``SAMProcessor``
(segment-anything ``ResizeLongestSide`` + 0-255 mean/std + bottom/right zero pad) and AIMv2's
published ``CLIPImageProcessor`` config (PIL backend). Cambrian pads to a square first with
``int(x * 255)`` of the processor's ``image_mean`` (LLaVA ``expand2square``), re-implemented here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cambrian.models import encoders
from cambrian.models.encoders import preprocess

from .utils import cambrian_square, expand2square, photos

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.parity

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
SAM_MEAN = (123.675, 116.28, 103.53)  # SAMProcessor.image_mean, on the 0-255 scale
SAM_STD = (58.395, 57.12, 57.375)


def _photos():
    return photos("astronaut", "coffee")


def _open_clip(size: int):
    import open_clip

    tf = open_clip.image_transform(size, is_train=False)  # open_clip's pretrained-cfg defaults
    return lambda img: tf(Image.fromarray(img)).numpy().transpose(1, 2, 0)


def _sam(size: int):
    from torchvision.transforms.functional import resize, to_pil_image

    def run(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        scale = size / max(h, w)  # ResizeLongestSide.get_preprocess_shape
        shape = (int(h * scale + 0.5), int(w * scale + 0.5))
        x = torch.as_tensor(np.array(resize(to_pil_image(img), shape))).permute(2, 0, 1)[None]
        x = (x - torch.tensor(SAM_MEAN).view(1, -1, 1, 1)) / torch.tensor(SAM_STD).view(1, -1, 1, 1)
        x = torch.nn.functional.pad(x, (0, size - shape[1], 0, size - shape[0]))
        return x[0].numpy().transpose(1, 2, 0)
    return run


def _aimv2(size: int):
    from transformers import CLIPImageProcessorPil

    # apple/aimv2-large-patch14-{224,336,448} preprocessor_config.json
    proc = CLIPImageProcessorPil(size={"shortest_edge": size},
                                 crop_size={"height": size, "width": size}, resample=3,
                                 do_center_crop=True, image_mean=OPENAI_MEAN, image_std=OPENAI_STD)
    return lambda img: proc(images=img, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)


# (family, variant) -> (reference transform, the image_mean Cambrian pads with, pad-free ok)
REFERENCES = {
    ("convnext", "L@512"): (lambda: _open_clip(512), OPENAI_MEAN, True),
    ("convnext", "XXL@1024-multi-stage"): (lambda: _open_clip(1024), OPENAI_MEAN, True),
    ("eva_clip", "L/14@336"): (lambda: _open_clip(336), OPENAI_MEAN, True),
    ("sam", "L/16"): (lambda: _sam(1024), SAM_MEAN, False),
    ("aimv2", "L/14@336"): (lambda: _aimv2(336), OPENAI_MEAN, True),
}


# SAM without padding resizes the longest side and zero-pads bottom/right, a rule PreprocessSpec
# does not have; Cambrian always pads to a square first, which makes that resize a plain one.
CASES = [(f, v, pad) for (f, v), (_, _, pad_free) in sorted(REFERENCES.items())
         for pad in ((True, False) if pad_free else (True,))]


@pytest.mark.parametrize("family,variant,pad", CASES)
def test_matches_reference_transform(family, variant, pad):
    make_ref, image_mean, _ = REFERENCES[(family, variant)]
    ref = make_ref()
    spec = encoders.preprocessing(family, variant)
    for name, img in _photos().items():
        got = preprocess.apply(img, spec, pad=pad)
        want = ref(cambrian_square(img, image_mean, spec.image_size) if pad else img)
        assert got.shape == want.shape == (spec.image_size, spec.image_size, 3), name
        err = float(np.abs(got - want).max())
        assert err <= 1e-3, f"{family} {variant} {name} pad={pad}: max abs err {err:.2e}"


def test_sam_pads_white():
    """int(x * 255) of SAM's 0-255 mean overflows a byte; PIL saturates it to white."""
    assert encoders.preprocessing("sam").pad_color == (1.0, 1.0, 1.0)
    coffee = _photos()["coffee"]
    assert (expand2square(coffee, SAM_MEAN)[:50] == 255).all()
