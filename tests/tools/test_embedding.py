"""``embed``: the family's own image embedding equals what its PyTorch library computes (MMVP
compared CLIP's ``get_image_features`` and DINOv2's ``pooler_output``)."""

import json

import numpy as np
import pytest

from cambrian.tools import features

pytestmark = pytest.mark.parity

VISION = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_hidden_layers=2,
              image_size=56, patch_size=14)


def _random(model, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _clip(path, projection: bool):
    import transformers as T

    if projection:
        text = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                    num_hidden_layers=1, vocab_size=64, max_position_embeddings=16)
        m = _random(T.CLIPModel(T.CLIPConfig(vision_config=VISION, text_config=text,
                                             projection_dim=16)))
        m.save_pretrained(path)
        (path / "config.json").write_text(json.dumps({"model_type": "clip", "projection_dim": 16,
                                                     "vision_config": VISION,
                                                     "text_config": text}))
        # get_image_features (its return type differs across transformers versions)
        return lambda px: m.visual_projection(m.vision_model(pixel_values=px).pooler_output)
    m = _random(T.CLIPVisionModel(T.CLIPVisionConfig(**VISION)))
    m.save_pretrained(path)
    return lambda px: m(pixel_values=px).pooler_output


def _dinov2(path, projection: bool):
    import transformers as T

    m = _random(T.Dinov2Model(T.Dinov2Config(**VISION)))
    m.save_pretrained(path)
    return lambda px: m(pixel_values=px).pooler_output


@pytest.mark.parametrize("family,make,projection", [("clip", _clip, True),
                                                     ("clip", _clip, False),
                                                     ("dinov2", _dinov2, False)])
def test_embed_matches_the_reference(tmp_path, family, make, projection):
    import torch

    reference = make(tmp_path, projection)
    ext = features.zoo_extractor(family, checkpoint=str(tmp_path))
    assert ext.pretrained and ext.identity["checkpoint_sha256"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60, 70, 3), dtype=np.uint8) for _ in range(3)]
    items = [features.ImageItem(str(i), str(i), lambda im=im: im) for i, im in enumerate(images)]
    ours = features.extract(items, ext, reduce="embed", batch_size=2, progress=False)
    px = torch.from_numpy(np.stack([features.host_pixels(im, ext) for im in images]))
    with torch.no_grad():
        want = reference(px.permute(0, 3, 1, 2)).numpy()
    assert ours.shape == want.shape == (3, 16 if projection else 64)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)


def test_embed_needs_a_head():
    ext = features.zoo_extractor("clip", variant="runlocal")
    with pytest.raises(ValueError, match="no image-embedding head: 'embed' needs a checkpoint"):
        features.check_reduction(ext, "embed")
