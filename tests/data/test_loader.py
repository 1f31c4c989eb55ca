import json

import numpy as np
import pytest
from PIL import Image

from cambrian.data import chat_templates, loader, tokenizer
from cambrian.data.readers import DataError
from cambrian.models.encoders.preprocess import HALF, HostImages, PreprocessSpec

# two encoders of their own size and padding colour; grids of 4 and 8 cells a side
IMAGES = HostImages((("a", PreprocessSpec(32, HALF, HALF, resize="squash", pad_color=HALF)),
                     ("b", PreprocessSpec(16, HALF, HALF, resize="squash", pad_color=(0, 1, 0)))),
                    (4, 8))


def _encoder(root, skip_bad=False):
    return loader.Encoder(template=chat_templates.get("vicuna_v1"),
                          tokenizer=tokenizer.load("synthetic"), num_image_tokens=4, max_len=96,
                          images=IMAGES, image_root=root, skip_bad=skip_bad, system="")


def _write(tmp_path, n=12, bad=()):
    recs = []
    for i in range(n):
        Image.fromarray(np.full((20, 40, 3), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
        recs.append({"id": str(i), "image": f"{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": f"n{i}"}]})
    for i in bad:
        recs[i]["image"] = "missing.png"
    (tmp_path / "d.json").write_text(json.dumps(recs))
    return loader.load_records(str(tmp_path / "d.json"))


def _ids(batch):
    return [int(b[0]) for b in batch["image"]["a"][:, 16, 16]]


def test_order_is_deterministic_and_resumable(tmp_path):
    recs = _write(tmp_path)
    enc = _encoder(str(tmp_path))
    a = [_ids(b) for b, _ in zip(loader.dataset(recs, enc, batch_size=4, num_batches=6, seed=3),
                                 range(6))]
    b = [_ids(b) for b, _ in zip(loader.dataset(recs, enc, batch_size=4, num_batches=6, seed=3),
                                 range(6))]
    assert a == b
    it = iter(loader.dataset(recs, enc, batch_size=4, num_batches=6, seed=3))
    next(it), next(it)
    state = it.get_state()
    rest = [_ids(next(it)) for _ in range(3)]
    it2 = iter(loader.dataset(recs, enc, batch_size=4, num_batches=6, seed=3))
    it2.set_state(state)
    assert [_ids(next(it2)) for _ in range(3)] == rest


def test_two_hosts_split_each_global_batch(tmp_path):
    recs = _write(tmp_path)
    enc = _encoder(str(tmp_path))
    one = iter(loader.dataset(recs, enc, batch_size=4, num_batches=3, seed=1))
    h0 = iter(loader.dataset(recs, enc, batch_size=4, num_batches=3, seed=1, process_index=0,
                             process_count=2))
    h1 = iter(loader.dataset(recs, enc, batch_size=4, num_batches=3, seed=1, process_index=1,
                             process_count=2))
    for _ in range(3):
        whole, a, b = _ids(next(one)), _ids(next(h0)), _ids(next(h1))
        assert sorted(a + b) == sorted(whole) and not set(a) & set(b)


def test_each_encoder_gets_its_own_image_and_the_letterbox(tmp_path):
    recs = _write(tmp_path, n=1)
    ex = _encoder(str(tmp_path))(recs[0])
    # 40 wide x 20 tall: rows padded; on 4 cells int(20 * 4 / 40) = 2, pad 1; on 8: 4, pad 2
    np.testing.assert_array_equal(ex["letterbox"], [[0, 1], [0, 2]])
    assert ex["image"]["a"].shape == (32, 32, 3) and ex["image"]["b"].shape == (16, 16, 3)
    assert (ex["image"]["a"][0, 0] == 127).all()  # pad colour int(0.5 * 255)
    assert ex["image"]["b"][0, 0].tolist() == [0, 255, 0]  # encoder b's own colour
    assert ex["tokens"].shape == (96,) and ex["segment_ids"].sum() == (ex["tokens"] != 0).sum()


def test_missing_image_stops_with_record_or_is_skipped(tmp_path):
    recs = _write(tmp_path, n=4, bad=(2,))
    with pytest.raises(DataError, match=r"d.json:#2: image file not found: .*missing.png"):
        _encoder(str(tmp_path))(recs[2])
    assert _encoder(str(tmp_path), skip_bad=True)(recs[2]) is None
    got = next(iter(loader.dataset(recs, _encoder(str(tmp_path), skip_bad=True), batch_size=3,
                                   num_batches=1, seed=0)))
    assert 2 * 10 not in _ids(got)


def test_synthetic_path_and_missing_file(tmp_path, cache_dir):
    from tests.conftest import SMALL

    path, root = loader.resolve("synthetic:train", "", cache_dir, SMALL)
    assert path.endswith("train.json") and len(loader.load_records(path)) == SMALL["train"]
    with pytest.raises(DataError, match="data file not found: /nope.json"):
        loader.load_records("/nope.json")


def test_reads_the_recipe_builders_output(tmp_path):
    """data_recipes/build.py output (TFDS ArrayRecord) feeds the training loader directly."""
    from cambrian.data.build import build
    from cambrian.data.recipe import Recipe, Source
    from tests.data.fakes import image_folder, record, write_json

    image_folder(str(tmp_path / "imgs"), {f"{i}.png": i for i in range(5)})
    write_json(str(tmp_path / "a.json"), [record(i, f"{i}.png") for i in range(5)]
               + [record(100, None)])
    build(Recipe(name="mini", seed=0, sources=(
        Source("a", str(tmp_path / "a.json"), "general", images=str(tmp_path / "imgs")),)),
        str(tmp_path / "out"))
    recs = loader.load_records(str(tmp_path / "out"))
    assert len(recs) == 6
    enc = _encoder("")
    examples = [enc(recs[i]) for i in range(len(recs))]
    assert sum(bool(e["has_image"]) for e in examples) == 5
    for e in examples:
        n_img = (e["tokens"] == -200).sum()
        assert n_img == (4 if e["has_image"] else 0)
    batch = next(iter(loader.dataset(recs, enc, batch_size=3, num_batches=1, seed=0)))
    assert batch["image"]["a"].shape == (3, 32, 32, 3)
    assert batch["image"]["b"].shape == (3, 16, 16, 3) and batch["letterbox"].shape == (3, 2, 2)
