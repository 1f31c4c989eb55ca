import numpy as np
import pytest

from cambrian.data.packing import pack, packing_efficiency


def example(n, start=0, images=(), positions=None):
    ex = {"tokens": np.arange(start, start + n, dtype=np.int32),
          "loss_mask": (np.arange(n) % 3 == 0)}
    if images:
        ex["images"] = list(images)
    if positions is not None:
        ex["positions"] = np.asarray(positions, np.int32)
    return ex


def random_examples(seed, count, seq_len):
    rng = np.random.default_rng(seed)
    out, start = [], 1
    for i in range(count):
        n = int(rng.integers(1, seq_len + 1))
        out.append(example(n, start, images=[f"img{i}"] * int(rng.integers(0, 2))))
        start += n
    return out


def test_first_fit_by_hand():
    p = pack([example(4), example(3), example(2), example(1)], seq_len=5)
    assert p["examples"] == [[0, 3], [1, 2]]  # 4 -> row 0; 3 -> row 1; 2 -> row 1; 1 -> row 0
    np.testing.assert_array_equal(p["segment_ids"], [[1, 1, 1, 1, 2], [1, 1, 1, 2, 2]])
    np.testing.assert_array_equal(p["positions"], [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]])
    np.testing.assert_array_equal(p["tokens"], [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]])
    assert packing_efficiency(p) == 1.0
    p = pack([example(3), example(3), example(2)], seq_len=4, pad_id=-1)
    assert p["examples"] == [[0], [1], [2]]
    np.testing.assert_array_equal(p["tokens"][2], [0, 1, -1, -1])
    assert packing_efficiency(p) == pytest.approx(8 / 12)


@pytest.mark.parametrize("seed", range(4))
def test_every_token_kept_once_and_no_cross_segment_attention(seed):
    seq_len = 16
    exs = random_examples(seed, 40, seq_len)
    p = pack(exs, seq_len)
    seg, tok, mask, pos = p["segment_ids"], p["tokens"], p["loss_mask"], p["positions"]
    assert sum(len(e["tokens"]) for e in exs) == int((seg > 0).sum())
    assert sorted(i for row in p["examples"] for i in row) == list(range(len(exs)))
    for r, members in enumerate(p["examples"]):
        # the owner of every slot, from the row bookkeeping alone
        owner = np.full(seq_len, -1)
        at = 0
        for i in members:
            n = len(exs[i]["tokens"])
            owner[at:at + n] = i
            np.testing.assert_array_equal(tok[r, at:at + n], exs[i]["tokens"])
            np.testing.assert_array_equal(mask[r, at:at + n], exs[i]["loss_mask"])
            np.testing.assert_array_equal(pos[r, at:at + n], np.arange(n))  # restarts
            at += n
        assert (seg[r, at:] == 0).all() and not mask[r, at:].any()
        # causal attention restricted to equal, non-zero segment ids never crosses examples
        q, k = np.meshgrid(np.arange(seq_len), np.arange(seq_len), indexing="ij")
        allowed = (seg[r][q] == seg[r][k]) & (seg[r][q] > 0) & (k <= q)
        assert (owner[q][allowed] == owner[k][allowed]).all()
        assert allowed[np.arange(at), np.arange(at)].all()
        assert p["images"][r] == [im for i in members for im in exs[i].get("images", [])]
    # first fit: no example could have gone into an earlier row
    used = np.zeros(len(p["examples"]), int)
    row_of = {i: r for r, m in enumerate(p["examples"]) for i in m}
    for i, e in enumerate(exs):
        r = row_of[i]
        assert all(used[j] + len(e["tokens"]) > seq_len for j in range(r))
        used[r] += len(e["tokens"])


def test_given_positions_are_kept():
    p = pack([example(4, positions=[0, 1, 1, 2]), example(2)], seq_len=8)
    np.testing.assert_array_equal(p["positions"][0, :6], [0, 1, 1, 2, 0, 1])


def test_segment_and_image_limits():
    exs = [example(1, images=["a"]), example(1, images=["b"]), example(1), example(1, images=["c"])]
    p = pack(exs, seq_len=10, max_images=1)
    assert p["examples"] == [[0, 2], [1], [3]]
    assert p["images"] == [["a"], ["b"], ["c"]]
    p = pack([example(1)] * 5, seq_len=10, max_segments=2)
    assert p["examples"] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="example 0 has 2 images, more than max_images=1"):
        pack([example(1, images=["a", "b"])], seq_len=4, max_images=1)


def test_rejects_what_cannot_be_packed_whole():
    with pytest.raises(ValueError, match="example 1 has 9 tokens.*seq_len=8"):
        pack([example(3), example(9)], seq_len=8)
    with pytest.raises(ValueError, match="differ in length"):
        pack([{"tokens": np.zeros(3, np.int32), "loss_mask": np.zeros(2, bool)}], seq_len=8)
    empty = pack([], seq_len=8)
    assert empty["tokens"].shape == (0, 8) and packing_efficiency(empty) == 0.0
