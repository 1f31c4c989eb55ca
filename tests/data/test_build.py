import collections
import dataclasses
import json
import os
import shutil

import grain
import numpy as np
import pytest

from cambrian.data import prompts
from cambrian.data.build import build
from cambrian.data.output import open_dataset
from cambrian.data.prompts import PromptRule
from cambrian.data.readers import BadRecord, DataError
from cambrian.data.recipe import Dedup, Leakage, Recipe, Source

from .fakes import (
    block_image,
    conv,
    encode,
    image_folder,
    parquet_file,
    record,
    tar_shard,
    write_json,
    write_jsonl,
)

MC = "Which colour?\nA. red\nB. blue"


@pytest.fixture
def world(tmp_path):
    """Five sources in four real schemas, one shared JSONL file split by its "source" field."""
    d = tmp_path / "data"
    d.mkdir()
    image_folder(str(d / "imgs"), {f"coco/{i}.png": i for i in range(12)})
    vqa = [record(i, f"coco/{i}.png", MC if i % 4 == 0 else None) for i in range(12)]
    write_json(str(d / "llava.json"), vqa)
    tar_shard(str(d / "charts.tar"), {f"chartqa/{i}.png": encode(block_image(100 + i))
                                      for i in range(6)})
    mixed = ([record(i, f"chartqa/{i}.png", source="chart.json") for i in range(6)]
             + [record(100 + i, None, source="orca.json") for i in range(8)]
             + [record(200 + i, None, source="other.json") for i in range(3)])
    write_jsonl(str(d / "mixed.jsonl"), mixed)
    chat = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Tell me {i}."},
                                         {"role": "assistant", "content": f"Fact {i}."}]}
            for i in range(4)]
    write_jsonl(str(d / "chat.jsonl"), chat)
    parquet_file(str(d / "hf.parquet"), [
        {"id": f"p{i}", "image": {"bytes": encode(block_image(200 + i)), "path": f"p{i}.png"},
         "conversations": conv(f"Describe {i}.", f"Thing {i}.")} for i in range(5)])
    return d


def world_recipe(d, **kw) -> Recipe:
    short = (PromptRule(prompts.SHORT_ANSWER, when="open"),
             PromptRule(prompts.OPTION_LETTER, when="multiple_choice"))
    return Recipe(name="mini", shard_size=7, seed=3, sources=(
        Source("vqa", str(d / "llava.json"), "general", images=str(d / "imgs"), cap=10,
               prompts=short),
        Source("chart", str(d / "mixed.jsonl"), "ocr", images=str(d / "charts.tar"),
               match="chart.json", prompts=(PromptRule(prompts.SHORT_NUMBER),)),
        Source("orca", str(d / "mixed.jsonl"), "language", match="orca.json"),
        Source("chat", str(d / "chat.jsonl"), "language", format="sharegpt"),
        Source("hf", str(d / "hf.parquet"), "general", format="parquet"),
    ), **kw)


def by_source(out):
    ds = open_dataset(str(out))
    return ds, collections.Counter(ds[i]["source"].decode() for i in range(len(ds)))


def shard_hashes(m):
    return [s["sha256"] for s in m["output"]["shards"]]


def check_manifest_adds_up(m):
    for name, s in m["sources"].items():
        drops = s["duplicate_exact"] + s["duplicate_perceptual"] + s["benchmark_leak"]
        assert s["read"] == sum(s["bad"].values()) + drops + s["available"], name
        assert s["available"] == s["removed"] + s["not_selected"] + s["kept"] - s["repeated"], name
    t = m["totals"]
    file_bad = sum(sum(f["bad"].values()) for f in m["files"].values())
    source_read = sum(s["read"] for s in m["sources"].values())
    assert t["read"] == source_read + t["unassigned"] + file_bad
    assert t["read"] == t["unassigned"] + t["kept_unique"] + t["dropped"]
    assert sum(c["kept"] for c in m["categories"].values()) == t["kept"] == m["output"]["examples"]


def test_build_writes_a_readable_tfds_dataset(world, tmp_path):
    out = tmp_path / "out"
    m = build(world_recipe(world), str(out))
    ds, counts = by_source(out)
    assert counts == {"vqa": 10, "chart": 6, "orca": 8, "chat": 4, "hf": 5}
    assert len(ds) == m["output"]["examples"] == 33
    assert len(m["output"]["shards"]) == 5  # ceil(33 / 7)
    assert [s["examples"] for s in m["output"]["shards"]] == [7, 7, 7, 7, 5]
    check_manifest_adds_up(m)
    assert m["sources"]["vqa"]["not_selected"] == 2
    assert m["totals"]["unassigned"] == 3
    assert m["files"][str(world / "mixed.jsonl")]["unassigned_by_tag"] == {
        "other.json|(no image)": 3}
    for f in ("manifest.json", "summary.md", "composition.png"):
        assert (out / f).stat().st_size > 0
    assert json.loads((out / "manifest.json").read_text())["recipe"]["hash"] == m["recipe"]["hash"]
    assert "| vqa | general | 12 | 0 | 0 | 0 | 12 | 10 | 10 |" in (out / "summary.md").read_text()

    for i in range(len(ds)):
        ex = ds[i]
        src, rid = ex["source"].decode(), ex["id"].decode()
        values = [v.decode() for v in ex["conversations"]["value"]]
        images = ex["image"]
        if src in ("vqa", "chart", "hf"):
            assert len(images) == 1 and images[0].shape == (48, 54, 3)
        else:
            assert len(images) == 0
        if src == "hf":  # inline parquet image, decoded back to the same pixels
            np.testing.assert_array_equal(images[0], np.asarray(block_image(200 + int(rid[1:]))))
            assert ex["image_path"] == [f"{rid}.png".encode()]
        if src == "chat":
            assert [f.decode() for f in ex["conversations"]["from"]] == ["human", "gpt"]
            assert values == [f"Tell me {rid[1:]}.", f"Fact {rid[1:]}."]

    raw = open_dataset(str(out), raw_images=True)
    for i in range(len(raw)):
        ex = raw[i]
        if ex["source"] == b"vqa":  # RGB PNGs are stored byte for byte
            path = world / "imgs" / ex["image_path"][0].decode()
            assert ex["image"] == [path.read_bytes()]
    # grain reads it as a random-access source, no TensorFlow involved
    ids = sorted(x["id"] for x in grain.MapDataset.source(ds).shuffle(seed=0))
    assert ids == sorted(ds[i]["id"] for i in range(len(ds)))


def test_prompts_only_where_the_rules_say(world, tmp_path):
    m = build(world_recipe(world), str(tmp_path / "out"))
    ds = open_dataset(str(tmp_path / "out"))
    seen = set()
    for i in range(len(ds)):
        ex = ds[i]
        src, rid = ex["source"].decode(), ex["id"].decode()
        q, a = (v.decode() for v in ex["conversations"]["value"])
        assert a in (f"Answer {rid}.", f"Fact {rid[1:]}.", f"Thing {rid[1:]}.")  # answers as given
        if src == "vqa":
            n = int(rid)
            base = "<image>\n" + (MC if n % 4 == 0 else f"What is shown in picture {n}?")
            want = prompts.OPTION_LETTER if n % 4 == 0 else prompts.SHORT_ANSWER
            assert q == base + "\n" + want
            seen.add(want)
        elif src == "chart":
            assert q == f"<image>\nWhat is shown in picture {rid}?\n{prompts.SHORT_NUMBER}"
        else:
            for p in (prompts.SHORT_ANSWER, prompts.SHORT_NUMBER, prompts.OPTION_LETTER):
                assert p not in q
    assert seen == {prompts.SHORT_ANSWER, prompts.OPTION_LETTER}
    assert {n: s["prompted"] for n, s in m["sources"].items()} == {
        "vqa": 10, "chart": 6, "orca": 0, "chat": 0, "hf": 0}


def test_category_ratios_hit_exact_counts(world, tmp_path):
    r = world_recipe(world, ratios={"general": 0.5, "ocr": 0.25, "language": 0.25}, total=20)
    m = build(r, str(tmp_path / "out"))
    _, counts = by_source(tmp_path / "out")
    # general 10 shared 10:5 -> 7, 3; ocr 5 of 6; language 5 shared 8:4 -> 3, 2 (by hand)
    assert counts == {"vqa": 7, "hf": 3, "chart": 5, "orca": 3, "chat": 2}
    assert {c: v["kept"] for c, v in m["categories"].items()} == {
        "general": 10, "ocr": 5, "language": 5}
    check_manifest_adds_up(m)


def test_dry_run_counts_without_writing(world, tmp_path):
    m = build(world_recipe(world), str(tmp_path / "out"), dry_run=True)
    assert not (tmp_path / "out").exists()
    assert m["output"]["examples"] == 33
    check_manifest_adds_up(m)


def test_deterministic_given_seed_and_resumable(world, tmp_path):
    r = world_recipe(world)
    a = build(r, str(tmp_path / "a"))
    b = build(r, str(tmp_path / "b"))
    assert a["output"]["content_sha256"] == b["output"]["content_sha256"]
    assert shard_hashes(a) == shard_hashes(b)
    c = build(dataclasses.replace(r, seed=4), str(tmp_path / "c"))
    assert c["output"]["content_sha256"] != a["output"]["content_sha256"]
    assert {n: s["kept"] for n, s in c["sources"].items()} == {
        n: s["kept"] for n, s in a["sources"].items()}

    # resume: lose one shard, rerun -> only that shard is rewritten, byte-identical
    ddir = a["output"]["dir"]
    files = sorted(f for f in os.listdir(ddir) if ".array_record-" in f)
    before = {f: os.stat(os.path.join(ddir, f)).st_mtime_ns for f in files}
    os.remove(os.path.join(ddir, files[1]))
    again = build(r, str(tmp_path / "a"))
    assert shard_hashes(again) == shard_hashes(a)
    after = {f: os.stat(os.path.join(ddir, f)).st_mtime_ns for f in files}
    assert [f for f in files if after[f] != before[f]] == [files[1]]

    with pytest.raises(DataError, match="different recipe"):
        build(dataclasses.replace(r, seed=9), str(tmp_path / "a"))


def test_parallel_scan_and_write_match_serial(world, tmp_path):
    r = world_recipe(world)
    a = build(r, str(tmp_path / "a"))
    b = build(r, str(tmp_path / "b"), workers=2)
    assert a["output"]["content_sha256"] == b["output"]["content_sha256"]
    assert shard_hashes(a) == shard_hashes(b)


def test_dedup_exact_and_perceptual(tmp_path):
    imgs = image_folder(str(tmp_path / "a"), {f"{i}.png": i for i in range(5)})
    recs_a = [record(i, f"{i}.png") for i in range(5)]
    shutil.copy(tmp_path / "a" / "0.png", tmp_path / "b0.png")  # byte-identical copy
    (tmp_path / "b1.bmp").write_bytes(encode(block_image(1), "BMP"))  # same pixels, other bytes
    shutil.copy(tmp_path / "a" / "2.png", tmp_path / "b2.png")
    recs_b = [record(0, "b0.png"), record(1, "b1.bmp"),
              record(2, "b2.png", question="Another question?"),  # same image, new text: kept
              record(0, "b0.png")]  # duplicate inside the same source
    r = Recipe(name="dd", sources=(
        Source("a", write_json(str(tmp_path / "a.json"), recs_a), "g", images=imgs),
        Source("b", write_json(str(tmp_path / "b.json"), recs_b), "g", images=str(tmp_path))))
    m = build(r, str(tmp_path / "out"))
    b = m["sources"]["b"]
    assert (b["duplicate_exact"], b["duplicate_perceptual"], b["kept"]) == (2, 1, 1)
    assert m["sources"]["a"]["kept"] == 5
    assert m["dropped"]["duplicate_exact"] == 2 and m["dropped"]["duplicate_perceptual"] == 1
    check_manifest_adds_up(m)
    r2 = Recipe(name="dd", sources=r.sources, dedup=Dedup(perceptual=False))
    assert build(r2, None, dry_run=True)["sources"]["b"]["kept"] == 2


@pytest.mark.parametrize("action", ["drop", "report"])
def test_leakage_check_finds_planted_benchmark_images(tmp_path, action):
    imgs = image_folder(str(tmp_path / "a"), {f"{i}.png": i for i in range(6)})
    src = Source("a", write_json(str(tmp_path / "a.json"),
                                 [record(i, f"{i}.png") for i in range(6)]), "g", images=imgs)
    bench = tmp_path / "mmvp"
    bench.mkdir()
    (bench / "q1.jpg").write_bytes(encode(block_image(3), "BMP"))  # planted, re-encoded
    (bench / "q2.png").write_bytes(encode(block_image(50)))  # unrelated
    tar_shard(str(tmp_path / "cvb.tar"), {"img/x.png": encode(block_image(5))})
    r = Recipe(name="lk", sources=(src,), leakage=Leakage(
        {"mmvp": str(bench), "cvbench": str(tmp_path / "cvb.tar")}, action=action))
    m = build(r, None, dry_run=True)
    assert m["leakage"]["benchmarks"]["mmvp"] == {
        "path": str(bench), "images": 2, "unreadable": 0, "matched_images": 1, "records": 1}
    assert m["leakage"]["benchmarks"]["cvbench"]["matched_images"] == 1
    s = m["sources"]["a"]
    if action == "drop":
        assert (s["benchmark_leak"], s["kept"]) == (2, 4)
    else:
        assert (s["leak_reported"], s["kept"]) == (2, 6)
    check_manifest_adds_up(m)


BAD_LINES = {
    "malformed_json": '{"id": "x", "conversations": [',
    "corrupt_image": json.dumps(record(1, "corrupt.png")),
    "missing_image": json.dumps(record(2, "nowhere.png")),
    "empty_conversation": json.dumps({"id": "3", "conversations": []}),
    "image_token_mismatch": json.dumps({"id": "4", "image": "ok.png",
                                        "conversations": conv("q", "a", image=False)}),
    "malformed_conversation": json.dumps({"id": "5", "conversations": [
        {"from": "human", "value": "q"}, {"from": "human", "value": "q2"}]}),
}


def _bad_world(tmp_path, kinds):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    (tmp_path / "imgs" / "ok.png").write_bytes(encode(block_image(0)))
    (tmp_path / "imgs" / "corrupt.png").write_bytes(encode(block_image(1))[:100])
    lines = [json.dumps(record(0, "ok.png"))] + [BAD_LINES[k] for k in kinds]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return Recipe(name="bad", sources=(Source("s", str(path), "g", images=str(tmp_path / "imgs")),))


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_bad_input_stops_with_file_line_and_reason(tmp_path, kind):
    r = _bad_world(tmp_path, [kind])
    with pytest.raises(BadRecord, match=rf"data.jsonl:2: {kind}: .*--skip-bad") as e:
        build(r, str(tmp_path / "out"))
    assert e.value.reason == kind


def test_skip_bad_counts_every_kind(tmp_path):
    r = _bad_world(tmp_path, list(BAD_LINES))
    m = build(r, str(tmp_path / "out"), skip_bad=True)
    assert m["sources"]["s"]["bad"] == {k: 1 for k in BAD_LINES if k != "malformed_json"}
    assert m["files"][str(tmp_path / "data.jsonl")]["bad"] == {"malformed_json": 1}
    assert {k: m["dropped"][k] for k in BAD_LINES} == {k: 1 for k in BAD_LINES}
    assert m["output"]["examples"] == 1
    text = (tmp_path / "out" / "bad_records.jsonl").read_text()
    listed = [json.loads(x) for x in text.splitlines()]
    assert sorted(b["reason"] for b in listed) == sorted(BAD_LINES)
    assert {b["where"] for b in listed} == {f"{tmp_path}/data.jsonl:{i}" for i in range(2, 8)}
    check_manifest_adds_up(m)


def test_missing_annotation_file_and_image_root_are_errors(tmp_path):
    r = Recipe(name="m", sources=(Source("s", str(tmp_path / "gone.json"), "g"),))
    with pytest.raises(DataError, match="data file not found: .*gone.json"):
        build(r, None, dry_run=True, skip_bad=True)
    write_json(str(tmp_path / "a.json"), [record(0, "x.png")])
    r = Recipe(name="m", sources=(Source("s", str(tmp_path / "a.json"), "g"),))
    with pytest.raises(DataError, match="source 's' lists no image folder"):
        build(r, None, dry_run=True, skip_bad=True)


def test_resume_refuses_images_changed_since_the_plan(world, tmp_path):
    r = world_recipe(world)
    m = build(r, str(tmp_path / "out"))
    for s in m["output"]["shards"]:
        os.remove(os.path.join(m["output"]["dir"], s["file"]))
    for i in range(12):
        (world / "imgs" / "coco" / f"{i}.png").write_bytes(encode(block_image(500 + i)))
    with pytest.raises(DataError, match="gone or changed since the build plan"):
        build(r, str(tmp_path / "out"))


def test_sources_sharing_a_file_must_list_the_same_paths(world):
    a = Source("a", str(world / "mixed.jsonl"), "g", match="orca.json")
    b = Source("b", (str(world / "mixed.jsonl"), str(world / "chat.jsonl")), "g")
    with pytest.raises(DataError, match="must list the same paths"):
        build(Recipe(name="x", sources=(a, b)), None, dry_run=True)
