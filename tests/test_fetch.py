"""python -m cambrian.fetch against a local fake Hub (the real huggingface_hub client) and a fake
GCS bucket: what is taken from a repo, dry runs, gated / missing repos, resumed downloads,
plain HTTP sources, archives, gs:// destinations."""

import hashlib
import io
import os
import zipfile

import pytest

from cambrian import fetch, fetch_cli, fetch_sources
from cambrian.fetch_sources import Data, Http, Hub, Part
from tests.fakes.hub_repos import tar

DINO = {"config.json": b'{"model_type": "dinov2"}', "preprocessor_config.json": b"{}",
        "model.safetensors": b"S" * 3000, "pytorch_model.bin": b"P" * 3000,
        "flax_model.msgpack": b"F" * 10, "README.md": b"# dinov2"}


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMBRIAN_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("CAMBRIAN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CAMBRIAN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_checkpoint_takes_safetensors_and_configs_and_dry_run_lists_sizes(hf_hub, roots, capsys):
    hf_hub.page_size = 2  # the file list comes in pages
    hf_hub.add("facebook/dinov2-large", DINO)
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large", "--dry-run"]) == 0
    out = capsys.readouterr().out
    dest = str(roots / "ckpt" / "facebook" / "dinov2-large")
    assert "hf:facebook/dinov2-large@" in out and "(3 files)" in out and dest in out
    assert "3.03 kB" in out  # 3000 + 24 + 2 bytes, as the Hub lists them
    assert not os.path.exists(dest)
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large"]) == 0
    got = sorted(f for f in os.listdir(dest) if not f.startswith("."))
    assert got == ["config.json", "model.safetensors", "preprocessor_config.json"]
    capsys.readouterr()
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large", "--dry-run"]) == 0
    assert "[present]" in capsys.readouterr().out


def test_gated_and_missing_repos_are_one_line_each_with_the_fix(hf_hub, roots, capsys,
                                                                 monkeypatch):
    hf_hub.add("meta-llama/Meta-Llama-3-8B-Instruct", {"config.json": b"{}"}, gated=True,
               granted=("hf_granted",))
    args = ["--checkpoints", "meta-llama/Meta-Llama-3-8B-Instruct,lmsys/vicuna-7b-v1.5"]
    assert fetch_cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert ("gated on the Hub; accept its licence at "
            "https://huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct") in err[0]
    assert "HF_TOKEN" in err[0]
    assert "lmsys/vicuna-7b-v1.5: model repo not found on the Hub" in err[1]
    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    assert fetch_cli.main(["--checkpoints", "meta-llama/Meta-Llama-3-8B-Instruct"]) == 0
    assert (roots / "ckpt" / "meta-llama" / "Meta-Llama-3-8B-Instruct" / "config.json").exists()


def test_interrupted_download_resumes_where_it_stopped(hf_hub, roots, capsys):
    big = os.urandom(3 << 20)
    hf_hub.add("facebook/dinov2-large", {**DINO, "model.safetensors": big})
    hf_hub.cut("model.safetensors", after=1 << 20, then_fail=3)
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large"]) == 1
    assert "got 1048576 of 3145728 bytes of model.safetensors; rerun to resume" in (
        capsys.readouterr().err)
    dest = roots / "ckpt" / "facebook" / "dinov2-large"
    assert not (dest / "model.safetensors").exists()
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large"]) == 0
    assert hf_hub.ranges(hashlib.sha256(big).hexdigest())[-1] == f"bytes={1 << 20}-"
    assert (dest / "model.safetensors").read_bytes() == big


def test_plain_http_checkpoint_resumes(hf_hub, roots, monkeypatch, capsys):
    data = os.urandom(3 << 20)
    url = hf_hub.add_url("moco-v3/vit-b-300ep/vit-b-300ep.pth.tar", data)
    monkeypatch.setitem(fetch_sources.CHECKPOINTS, "mocov3/vit-b-300ep.pth.tar", Http(url))
    hf_hub.cut("/files/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar", after=1 << 20, then_fail=3)
    assert fetch_cli.main(["--checkpoints", "mocov3/vit-b-300ep.pth.tar"]) == 1
    assert "rerun to resume" in capsys.readouterr().err
    assert fetch_cli.main(["--checkpoints", "mocov3/vit-b-300ep.pth.tar"]) == 0
    assert hf_hub.ranges("vit-b-300ep.pth.tar")[-1] == f"bytes={1 << 20}-"
    assert (roots / "ckpt" / "mocov3" / "vit-b-300ep.pth.tar").read_bytes() == data


def test_archives_unpack_split_tars_stream_and_layout_is_checked(hf_hub, roots, monkeypatch):
    whole = tar({f"sam/images/sa_{i}.jpg": bytes([i]) * 5000 for i in range(4)})
    cut = len(whole) // 3
    pieces = {"sam.tar_part1": whole[:cut], "sam.tar_part2": whole[cut:2 * cut],
              "sam.tar_part10": whole[2 * cut:]}  # part10 sorts after part2
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("00000/000000010.jpg", b"jpg")
    hf_hub.add("org/align", {**pieces, "images.zip": zbuf.getvalue(),
                             "coco.tar.gz": tar({"coco/train2017/1.jpg": b"c"}, gz=True)},
               repo_type="dataset")
    parts = (Part(Hub("org/align", ("sam.tar_part*",), "dataset"), unpack=True,
                  expect=("sam/images",)),
             Part(Hub("org/align", ("images.zip",), "dataset"), into="llava/images", unpack=True),
             Part(Hub("org/align", ("coco.tar.gz",), "dataset"), unpack=True,
                  expect=("coco/val2017",)))
    monkeypatch.setitem(fetch_sources.DATA, "tiny", Data("tiny", ("tiny",), parts))
    item = fetch.data_item("tiny", str(roots / "data"))
    with pytest.raises(fetch.FetchError, match=r"coco/val2017 is not there \(the archives hold "
                                               r"coco\)"):
        fetch.fetch(item, fetch.survey(item))
    folder = roots / "data" / "tiny"
    assert (folder / "sam" / "images" / "sa_3.jpg").read_bytes() == bytes([3]) * 5000
    assert (folder / "llava" / "images" / "00000" / "000000010.jpg").read_bytes() == b"jpg"
    # unpacked archives are deleted; the one whose layout is wrong is kept for the rerun
    assert os.listdir(folder / ".fetch" / "downloads") == ["coco.tar.gz"]
    assert [s.present for s in fetch.survey(item)] == [True, True, False]


def test_gs_destination_is_staged_and_uploaded(hf_hub, roots, gcs, monkeypatch, capsys):
    hf_hub.add("facebook/dinov2-large", DINO)
    monkeypatch.setenv("CAMBRIAN_CHECKPOINTS", gcs.url("ckpt"))
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large"]) == 0
    base = f"{gcs.bucket}/ckpt/facebook/dinov2-large"
    assert gcs.fs.cat(f"{base}/model.safetensors") == DINO["model.safetensors"]
    assert not gcs.fs.exists(f"{base}/pytorch_model.bin")
    assert not os.listdir(roots / "cache" / "fetch")  # staging removed after the upload
    capsys.readouterr()
    assert fetch_cli.main(["--checkpoints", "facebook/dinov2-large", "--dry-run"]) == 0
    assert "[present]" in capsys.readouterr().out


def test_a_probe_config_names_everything_it_reads():
    from cambrian import config as config_lib
    from cambrian.eval import suite

    config = config_lib.load("encoders/dinov2.py")
    items, problems = fetch.plan_config(config)
    assert problems == []
    by_kind = {k: [i for i in items if i.kind == k] for k in ("checkpoint", "data", "benchmark")}
    assert [i.name for i in by_kind["checkpoint"]] == ["facebook/dinov2-large",
                                                       "lmsys/vicuna-7b-v1.5"]
    assert [i.folder for i in by_kind["checkpoint"]] == [
        config.model.encoders.dinov2.checkpoint, config.model.llm.checkpoint]
    s1, s2 = config.stages.stage1, config.stages.stage2
    assert [i.name for i in by_kind["data"]] == ["sharegpt4v_pt", "cambrian_737k"]
    assert by_kind["data"][0].folder == s1.image_root and s1.data.startswith(s1.image_root)
    assert fetch.fileio.join(by_kind["data"][1].folder, "built/cambrian_737k") == s2.data
    assert [i.name for i in by_kind["benchmark"]] == list(suite.SUITES["cambrian"])
    config.model.llm.checkpoint = "/elsewhere/my-llm"
    assert fetch.plan_config(config)[1] == [
        "model.llm.checkpoint: no source known for /elsewhere/my-llm; put the checkpoint there "
        "yourself or use one of the names in cambrian/fetch_sources.py"]


def test_every_encoder_config_checkpoint_has_a_source():
    import glob

    from cambrian import config as config_lib

    unknown = []
    for path in sorted(glob.glob(os.path.join(config_lib.CONFIGS_DIR, "encoders", "*.py"))):
        name = os.path.relpath(path, config_lib.CONFIGS_DIR)
        _, problems = fetch.plan_config(config_lib.load(name))
        unknown += [f"{name}: {p}" for p in problems if ".checkpoint:" in p]
    assert unknown == []
