"""Resolution and visual tokens worked out from a saved config, against hand-derived and
published counts."""

import json

import pytest

from cambrian import config as config_lib
from cambrian.results import describe


def _describe(spec, *overrides):
    return describe.describe(json.loads(config_lib.to_json(config_lib.load(spec, overrides))))


@pytest.mark.parametrize("spec,overrides,resolution,tokens", [
    ("encoders/dinov2.py:runlocal", (), 56, 16),  # 56 px, patch 14: 4 x 4
    ("encoders/dinov2.py:runlocal", ("model.encoders.dinov2.image_size=112",), 112, 64),
    ("connectors/sva.py:runlocal", (), 64, 16),  # query_side 4: 4 x 4 queries
    ("encoders/siglip.py", (), 384, 729),  # the paper's catalog: SigLIP SO400M/14@384, 729
])
def test_geometry(spec, overrides, resolution, tokens):
    d = _describe(spec, *overrides)
    assert (d["resolution"], d["tokens"]) == (resolution, tokens)


def test_description_fields():
    d = _describe("connectors/sva.py:runlocal")
    assert d["encoders"] == "siglip+clip+dinov2+convnext"  # the connector's (upstream's) order
    assert d["connector"] == "sva" and d["llm"] == "random 4x128"
    assert d["data"] == "synthetic:mix" and d["random_init"]
    assert d["resolutions"] == "56+56+56+64"


def test_unknown_family_warns_and_leaves_geometry_empty():
    cfg = json.loads(config_lib.to_json(config_lib.load("encoders/dinov2.py:runlocal")))
    cfg["model"]["encoders"]["dinov2"]["family"] = "nope"
    with pytest.warns(UserWarning, match="cannot work out resolution"):
        d = describe.describe(cfg, "runs/x")
    assert d["tokens"] is None and d["encoders"] == "dinov2"
