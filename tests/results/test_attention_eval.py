"""eval.save_attention: the SVA attention mass per encoder, averaged over a benchmark's images."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from cambrian import config as config_lib
from cambrian.eval import attention
from cambrian.models import vlm


def _model(spec, sva=False):
    cfg = config_lib.load(spec)
    if sva:  # two tiny towers under a one-layer SVA
        with cfg.unlocked():
            config_lib.add_encoder(cfg.model, "clip",
                                   config_lib.encoder("clip", "runlocal", init="random"))
            cfg.model.connector.name = "sva"
            cfg.model.connector.options.update(dict(query_side=4, depth=1, vision_hidden=32,
                                                    heads=2, in_llm_layers=0))
    return cfg, vlm.Cambrian(cfg.model, vocab_size=64, rngs=nnx.Rngs(0))


def test_mass_is_the_mean_over_images_without_padding_rows(tmp_path):
    cfg, model = _model("encoders/dinov2.py:runlocal", sva=True)
    rng = np.random.default_rng(0)
    samples = [{"image": rng.integers(0, 255, (20 + 7 * i, 48, 3), np.uint8)} for i in range(5)]
    samples.append({"image": None})  # a text-only item has no attention
    graphdef, state = nnx.split(model)
    saver = attention.Saver(graphdef, state, cfg, host_images=model.host_images(), batch_size=4)
    rec = saver.save("bench", samples, str(tmp_path))  # batches of 4: the second is padded

    # the same images in one unpadded batch, averaged here
    pixels = model.host_images().batch([s["image"] for s in samples[:5]])
    encode = jax.jit(lambda st, im, lb: nnx.merge(graphdef, st).encode_images(im, lb)[1])
    out = encode(state, pixels["image"], pixels["letterbox"])
    expected = np.asarray(out["attention_mass"]).mean(0)
    np.testing.assert_allclose(rec["mass"], expected, rtol=1e-5, atol=1e-6)
    assert rec["n"] == 5 and rec["encoders"] == ["dinov2", "clip"]  # in encoder order
    assert sum(rec["mass"]) == pytest.approx(1.0, abs=1e-5)
    with open(tmp_path / "attention" / "bench.json") as fh:
        assert json.load(fh) == rec


def test_connector_without_attention_is_an_error():
    cfg, model = _model("encoders/dinov2.py:runlocal")
    graphdef, state = nnx.split(model)
    with pytest.raises(ValueError, match="save_attention=False"):
        attention.Saver(graphdef, state, cfg, host_images=model.host_images(), batch_size=4)
