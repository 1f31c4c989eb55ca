"""Training data checked before training starts: several images per record are rejected by the
builder (counted) and by the loader; malformed JSON lines and bad records are reported at once or
skipped and counted (data.skip_bad); a built dataset on gs:// is read through the local cache."""

import json
import logging

import pytest

from cambrian.data import chat_templates, loader, tokenizer
from cambrian.data.build import build
from cambrian.data.readers import DataError
from cambrian.data.recipe import Recipe, Source
from cambrian.models.encoders.preprocess import HALF, HostImages, PreprocessSpec

from .fakes import conv, image_folder, record, write_json


def _encoder(root, skip_bad):
    return loader.Encoder(template=chat_templates.get("vicuna_v1"),
                          tokenizer=tokenizer.load("synthetic"), num_image_tokens=4, max_len=96,
                          images=HostImages((("a", PreprocessSpec(32, HALF, HALF, resize="squash",
                                                                  pad_color=HALF)),), (4,)),
                          image_root=root, skip_bad=skip_bad, system="")


def _two_images(i: int) -> dict:
    return {"id": str(i), "image": [f"{i}.png", f"{i + 1}.png"], "conversations": [
        {"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "No."}]}


def test_builder_rejects_multi_image_records_with_a_count(tmp_path):
    image_folder(str(tmp_path / "imgs"), {f"{i}.png": i for i in range(6)})
    write_json(str(tmp_path / "a.json"), [record(i, f"{i}.png") for i in range(4)]
               + [_two_images(4)])
    recipe = Recipe(name="mini", seed=0, sources=(
        Source("a", str(tmp_path / "a.json"), "general", images=str(tmp_path / "imgs")),))
    with pytest.raises(DataError, match=r"a.json:#4: multi_image: 2 images"):
        build(recipe, str(tmp_path / "stop"))
    m = build(recipe, str(tmp_path / "out"), skip_bad=True)
    assert m["dropped"]["multi_image"] == 1 and m["output"]["examples"] == 4
    recs = loader.load_records(str(tmp_path / "out"))
    batch = next(iter(loader.dataset(recs, _encoder("", False), batch_size=4, num_batches=2,
                                     seed=0)))
    assert batch["has_image"].all()


def test_bad_json_lines_and_records_reported_before_training_or_skipped(tmp_path, caplog):
    image_folder(str(tmp_path), {f"{i}.png": i for i in range(6)})
    good = [record(i, f"{i}.png") for i in range(3)]
    good.append({**record(3, None), "image": ["3.png"], "conversations": conv("What?", "3.")})
    lines = [json.dumps(r) for r in good]
    lines.insert(1, '{"id": "cut", "conversations": [')  # line 2: malformed JSON
    lines.append(json.dumps(_two_images(4)))  # line 6: two images
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    recs = loader.load_records(str(path))
    with pytest.raises(DataError) as e:
        loader.dataset(recs, _encoder(str(tmp_path), False), batch_size=2, num_batches=1, seed=0)
    msg = str(e.value)
    assert f"{path}:2: malformed JSON line" in msg and "2 bad record(s)" in msg
    assert "malformed_json 1, multi_image 1" in msg and "data.skip_bad=True" in msg
    with caplog.at_level(logging.WARNING):
        ds = loader.dataset(recs, _encoder(str(tmp_path), True), batch_size=2, num_batches=4,
                            seed=0)
        batches = [b for b, _ in zip(ds, range(4))]
    assert len(batches) == 4 and all(b["has_image"].all() for b in batches)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"skipping 2 bad records (malformed_json 1, multi_image 1): {path}:2 {path}:6" in warned


def test_built_dataset_on_gs_is_read_through_the_cache(tmp_path, gcs):
    image_folder(str(tmp_path / "imgs"), {f"{i}.png": i for i in range(3)})
    write_json(str(tmp_path / "a.json"), [record(i, f"{i}.png") for i in range(3)])
    build(Recipe(name="mini", seed=0, sources=(
        Source("a", str(tmp_path / "a.json"), "general", images=str(tmp_path / "imgs")),)),
        str(tmp_path / "out"))
    url = gcs.put_dir(str(tmp_path / "out"), "data/built/mini")
    path, _ = loader.resolve(url, "", str(tmp_path / "cache"))
    assert path.startswith(str(tmp_path / "cache"))
    assert len(loader.load_records(path)) == len(loader.load_records(url)) == 3
