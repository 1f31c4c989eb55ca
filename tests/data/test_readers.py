import io
import json

import fsspec
import pytest
from PIL import Image

from cambrian.data.images import ImageError, ImageRoots, inspect, iter_image_files, stored_bytes
from cambrian.data.readers import (
    BadRecord,
    DataError,
    expand,
    iter_records,
    read_jsonl,
    read_llava,
)

from .fakes import (
    block_image,
    encode,
    image_folder,
    parquet_file,
    record,
    tar_shard,
    write_json,
    write_jsonl,
)


def test_read_llava_json_and_jsonl(tmp_path):
    recs = [record(0, "a.png"), record(1, None)]  # an image sample and a text-only sample
    got = list(read_llava(write_json(str(tmp_path / "d.json"), recs)))
    assert [r for r, _ in got] == recs
    assert got[1][1] == f"{tmp_path}/d.json:#1"
    got = list(read_llava(write_jsonl(str(tmp_path / "d.jsonl"), recs)))
    assert [r for r, _ in got] == recs and got[0][1] == f"{tmp_path}/d.jsonl:1"


def test_read_llava_multi_turn(tmp_path):
    rec = record(0, "a.png")
    rec["conversations"] += [{"from": "human", "value": "And?"}, {"from": "gpt", "value": "More."}]
    (got, _), = read_llava(write_json(str(tmp_path / "d.json"), [rec]))
    assert len(got["conversations"]) == 4


def test_read_llava_stops_at_malformed_line(tmp_path):
    path = write_jsonl(str(tmp_path / "d.jsonl"), [record(0, None)] * 3, raw={1: "{not json"})
    it = read_llava(path)
    next(it)
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON line"):
        next(it)


def test_iter_records_yields_bad_line_and_goes_on(tmp_path):
    path = write_jsonl(str(tmp_path / "d.jsonl"), [record(i, None) for i in range(3)],
                       raw={1: '{"id": 1,'})
    got = list(iter_records(path, "llava"))
    assert len(got) == 3
    assert isinstance(got[1][0], BadRecord) and got[1][0].reason == "malformed_json"
    assert got[1][0].where == f"{path}:2"
    assert got[2][0]["id"] == "2"


def test_read_jsonl_cut_last_line(tmp_path):
    """A line cut by a killed writer (the file's last, without its newline) ends the file when
    the caller expects it; anywhere else a malformed line is a BadRecord."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 0}\n\n{"id": 1}\n{"id": 2, "predic')
    got = list(read_jsonl(str(path)))
    assert [r for r, _ in got[:2]] == [{"id": 0}, {"id": 1}] and got[1][1] == f"{path}:3"
    assert isinstance(got[2][0], BadRecord) and got[2][0].where == f"{path}:4"
    assert [r for r, _ in read_jsonl(str(path), cut_last_line=True)] == [{"id": 0}, {"id": 1}]
    path.write_text('{"id": 0}\n{"id": 1,\n{"id": 2}\n')
    got = [r for r, _ in read_jsonl(str(path), cut_last_line=True)]
    assert isinstance(got[1], BadRecord) and got[2] == {"id": 2}


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nope.json"):
        list(iter_records(str(tmp_path / "nope.json"), "llava"))
    (tmp_path / "bad.json").write_text('[{"id": 1}, ')
    with pytest.raises(DataError, match="bad.json:1: malformed JSON"):
        list(iter_records(str(tmp_path / "bad.json"), "llava"))
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(DataError, match="expected a JSON list"):
        list(iter_records(str(tmp_path / "obj.json"), "llava"))
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        iter_records(str(tmp_path / "obj.json"), "csv")


def test_sharegpt_messages_and_content_parts(tmp_path):
    recs = [
        {"id": "s0", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]},
            {"role": "assistant", "content": "A cat."}], "images": ["x.jpg"]},
        {"id": "s1", "conversations": [{"from": "human", "value": "hi"},
                                       {"from": "gpt", "value": "hello"}]},
    ]
    got = [r for r, _ in iter_records(write_jsonl(str(tmp_path / "c.jsonl"), recs), "sharegpt")]
    assert got[0]["image"] == ["x.jpg"]
    assert got[0]["conversations"] == [
        {"from": "system", "value": "Be brief."},
        {"from": "user", "value": "<image>\nWhat?"},
        {"from": "assistant", "value": "A cat."}]
    assert got[1]["conversations"] == recs[1]["conversations"]


def test_parquet_inline_images(tmp_path):
    png = encode(block_image(0))
    rows = [{"id": "p0", "image": {"bytes": png, "path": "p0.png"},
             "conversations": [{"from": "human", "value": "<image>\nq"},
                               {"from": "gpt", "value": "a"}]},
            {"id": "p1", "image": None,
             "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
            {"id": "p2", "image": {"bytes": png, "path": None},
             "conversations": [{"from": "human", "value": "<image>q"},
                               {"from": "gpt", "value": "a"}]}]
    path = parquet_file(str(tmp_path / "train-00000.parquet"), rows)
    got = list(iter_records(path, "parquet"))
    assert [w for _, w in got] == [f"{path}:#0", f"{path}:#1", f"{path}:#2"]
    assert got[0][0]["image"] == {"bytes": png, "path": "p0.png"}
    assert got[1][0]["image"] is None
    assert got[0][0]["conversations"][0]["value"] == "<image>\nq"
    assert [n for n, _ in iter_image_files(path)] == [f"{path}:#0/image", f"{path}:#2/image"]


def test_expand_globs(tmp_path):
    for n in ("b.jsonl", "a.jsonl", "c.json"):
        (tmp_path / n).write_text("")
    want = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert expand(str(tmp_path / "*.jsonl")) == want
    assert expand([str(tmp_path / "c.json")]) == [str(tmp_path / "c.json")]
    with pytest.raises(DataError, match="no file matches"):
        expand(str(tmp_path / "*.parquet"))


def test_image_roots_folder_tar_and_case(tmp_path):
    folder = image_folder(str(tmp_path / "imgs"), {"coco/a.png": 0, "vg/B.png": 1})
    shard = tar_shard(str(tmp_path / "part-0.tar"),
                      {"ocr/c.png": encode(block_image(2)), "ocr/D.PNG": encode(block_image(3))},
                      dot_prefix=True)
    roots = ImageRoots([folder, shard])
    assert roots.read("coco/a.png") == encode(block_image(0))
    assert roots.read("ocr/c.png") == encode(block_image(2))  # "./" member prefix stripped
    with pytest.raises(ImageError, match="'vg/b.png' not found") as e:
        roots.read("vg/b.png")
    assert e.value.reason == "missing_image"
    folded = ImageRoots([folder, str(tmp_path / "part-*.tar")], case_insensitive=True)
    assert folded.read("vg/b.png") == encode(block_image(1))
    assert folded.read("ocr/d.png") == encode(block_image(3))


def test_compressed_tar_is_refused(tmp_path):
    with pytest.raises(DataError, match="compressed tar.*extract"):
        ImageRoots([str(tmp_path / "allava.tar.gz_part1")])


def test_fsspec_remote_paths(tmp_path):
    # memory:// stands in for gs://: nothing may assume a local path.
    fs = fsspec.filesystem("memory")
    with fs.open("/bucket/ann.jsonl", "w") as f:
        f.write(json.dumps(record(0, "x/a.png")) + "\n")
    with fs.open("/bucket/imgs/x/a.png", "wb") as f:
        f.write(encode(block_image(5)))
    local = tar_shard(str(tmp_path / "s.tar"), {"y/b.png": encode(block_image(6))})
    with open(local, "rb") as src, fs.open("/bucket/shard-0.tar", "wb") as dst:
        dst.write(src.read())
    (rec, where), = iter_records("memory://bucket/ann.jsonl", "llava")
    assert rec["image"] == "x/a.png" and where == "memory://bucket/ann.jsonl:1"
    roots = ImageRoots(["memory://bucket/imgs", "memory://bucket/shard-*.tar"])
    assert roots.read("x/a.png") == encode(block_image(5))
    assert roots.read("y/b.png") == encode(block_image(6))
    assert [n for n, _ in iter_image_files("memory://bucket/imgs")] == ["x/a.png"]


def test_inspect_and_stored_bytes():
    png = encode(block_image(0))
    info = inspect(png)
    assert (info.width, info.height, info.convert) == (54, 48, False)
    assert stored_bytes(png, info.convert) == png  # RGB PNG / JPEG bytes are kept as they are
    grey = encode(block_image(0, mode="L"))
    info = inspect(grey)
    assert info.convert
    assert Image.open(io.BytesIO(stored_bytes(grey, True))).mode == "RGB"
    with pytest.raises(ImageError, match="does not decode") as e:
        inspect(png[: len(png) // 2])  # truncated file
    assert e.value.reason == "corrupt_image"
    with pytest.raises(ImageError):
        inspect(b"not an image")
