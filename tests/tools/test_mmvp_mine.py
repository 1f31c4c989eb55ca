import numpy as np
import pytest

from cambrian.tools import features, neighbours
from cambrian.tools.mmvp import mine

from . import synthetic


@pytest.fixture(scope="module")
def planted():
    return synthetic.image_set()


@pytest.fixture(scope="module")
def embeddings(planted):
    shape, colour = synthetic.extractors()
    items = synthetic.items(planted.images)
    return [features.extract(items, e, reduce="mean", batch_size=16, progress=False)
            .reshape(len(items), -1) for e in (shape, colour)]


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_planted_pairs_and_only_they_are_mined(planted, embeddings, index):
    shape, colour = embeddings
    pairs, stats = mine.find_pairs(shape, colour, tau_a=0.95, tau_b=0.6, k=10, index=index)
    assert stats["index"] == index
    assert {(p.i, p.j) for p in pairs} == planted.planted
    assert all(p.sim_a > 0.95 and p.sim_b < 0.6 for p in pairs)
    # the echoes pass tau_a too: only the B filter keeps them out
    assert stats["candidates_above_tau_a"] == len(planted.planted) + len(planted.echoes)


def test_planted_pairs_rank_first_under_loose_thresholds(planted, embeddings):
    shape, colour = embeddings
    pairs, _ = mine.find_pairs(shape, colour, tau_a=0.3, tau_b=0.99, k=20)
    n = len(planted.planted)
    assert len(pairs) > n  # unplanted pairs now pass, and rank below every planted one
    assert {(p.i, p.j) for p in pairs[:n]} == planted.planted
    assert not {(p.i, p.j) for p in pairs[n:]} & planted.planted
    gaps = [p.gap for p in pairs]
    assert gaps == sorted(gaps, reverse=True)


def test_the_other_direction_finds_colour_blind_pairs_not_the_planted(planted, embeddings):
    shape, colour = embeddings
    pairs, _ = mine.find_pairs(colour, shape, tau_a=0.95, tau_b=0.6, k=40)
    found = {(p.i, p.j) for p in pairs}
    assert found and not found & (planted.planted | planted.echoes)


def test_exact_search_matches_brute_force_and_hnsw_recalls_it():
    x = neighbours.normalise(np.random.default_rng(0).normal(size=(300, 16)))
    keys, sims = neighbours.exact(x, 5, block=64)
    full = x @ x.T
    np.fill_diagonal(full, -np.inf)
    want = np.argsort(-full, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(keys, want)
    np.testing.assert_allclose(sims, np.take_along_axis(full, want, 1), rtol=1e-5)
    hk, hs = neighbours.hnsw(x, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(hk, keys)])
    assert recall > 0.95 and not (hk == np.arange(300)[:, None]).any()


def test_duplicate_vectors_never_pair_an_image_with_itself():
    x = neighbours.normalise(np.ones((4, 3)))
    keys, sims = neighbours.exact(x, 3)
    assert not (keys == np.arange(4)[:, None]).any()
    assert sorted(keys[0]) == [1, 2, 3]


def test_unknown_index_names_the_choices():
    with pytest.raises(ValueError, match="auto, exact, hnsw"):
        neighbours.neighbours(np.ones((2, 2), np.float32), 1, "faiss")
