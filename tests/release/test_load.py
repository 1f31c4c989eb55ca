"""``release.load`` on tiny releases against the independent PyTorch reference of upstream.

Last-position logits (<= 5e-5 max abs difference, same argmax) for wide, tall, square and odd
images, and the same greedy answer; every layout (8b / 13b / 34b), both shard formats, and the
upstream options our training does not use (``image_position`` away from the image, query groups
of other sizes). One combination runs by default; the rest are ``slow``.
"""

import numpy as np
import pytest
from PIL import Image

from cambrian.release import model as M
from tests.release import fixtures
from tests.release import torch_reference as ref
from tests.release.conftest import IMAGES, image

pytestmark = pytest.mark.parity

# The issue asks <= 2e-3; float32 on both sides agrees to ~6e-6 here, and a wrong DINOv2
# position rule alone moves these logits by ~1e-4, so the bound is tighter than the issue's.
TOL = 5e-5
QUESTION = "What is it?\nAnswer the question using a single word or phrase."


def _compare(checkpoint: str, towers_root: str, reference=None, answers: int = 1):
    ours = M.load(checkpoint, towers_root=towers_root)
    theirs = reference or ref.Reference(checkpoint, towers_root)
    for i, (name, wh) in enumerate(IMAGES.items()):
        im = image(*wh, seed=i + 1)
        a = ours.next_token_logits(Image.fromarray(im) if i % 2 else im, QUESTION)
        b = theirs.next_token_logits(im, QUESTION)
        assert a.shape == b.shape == (len(ours.tokenizer),), name
        err = float(np.abs(a - b).max())
        assert err <= TOL, (name, err)
        assert a.argmax() == b.argmax(), name
    for name, wh in list(IMAGES.items())[:answers]:
        im = image(*wh, seed=7)
        want = theirs.answer(im, QUESTION, max_new_tokens=6)
        assert want  # a non-empty answer: the comparison says something
        assert ours.answer(im, QUESTION, max_new_tokens=6) == want, name
    return ours


@pytest.fixture(scope="module")
def bin_release(tmp_path_factory, towers_root):
    """13b in ``pytorch_model-*.bin`` shards + ``pytorch_model.bin.index.json``."""
    return fixtures.build_release(str(tmp_path_factory.mktemp("bin") / "13b"), "13b",
                                  towers_root=towers_root, seed=5, weights="bin")


def test_13b_from_bin_shards_matches_upstream(bin_release):
    r = _compare(bin_release.checkpoint, bin_release.towers_root)
    assert r.config.template == "vicuna_v1"


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(fixtures.KINDS))
def test_safetensors_release_matches_upstream(releases, references, kind):
    rel = releases[kind]
    _compare(rel.checkpoint, rel.towers_root, references[kind], answers=2)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["8b", "34b"])
def test_bin_shards_of_other_layouts(tmp_path, towers_root, kind):
    rel = fixtures.build_release(str(tmp_path / kind), kind, towers_root=towers_root, seed=6,
                                 weights="bin", shards=2)
    _compare(rel.checkpoint, towers_root, answers=0)


@pytest.mark.slow
def test_image_position_away_from_the_image(tmp_path, towers_root):
    # upstream's in-LLM layers read at config.image_position whatever the prompt: here index 5,
    # far before the image (text states are updated, part of the image is not)
    rel = fixtures.build_release(str(tmp_path / "8b"), "8b", towers_root=towers_root, seed=8,
                                 image_position=5)
    _compare(rel.checkpoint, towers_root, answers=0)


@pytest.mark.slow
def test_query_groups_of_other_sizes(tmp_path, towers_root):
    rel = fixtures.build_release(str(tmp_path / "13b"), "13b", towers_root=towers_root, seed=9,
                                 query_num_list=[576, 144])
    _compare(rel.checkpoint, towers_root, answers=0)
