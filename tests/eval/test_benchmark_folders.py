"""Every benchmark of the Cambrian suite and the extras downloaded side by side under one
``eval.root``, each in its hub repo's snapshot layout (``layouts.py``), read through the suite as
the runner reads it; the folder overrides; preflight's report of missing benchmarks."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from cambrian import config as C
from cambrian import preflight
from cambrian.eval import suite
from tests.eval import layouts

ALL = suite.SUITES["cambrian"] + suite.SUITES["extras"]
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "README.md")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return layouts.write_all(str(tmp_path_factory.mktemp("benchmarks")))


def config(root, *overrides):
    return C.load("eval/cambrian.py", [f"eval.root={root}", "eval.suite=" + ",".join(ALL),
                                       *overrides])


@pytest.mark.parametrize("name", ALL)
def test_each_benchmark_reads_its_own_folder(root, name):
    # Before benchmarks had folders, MME globbed */test-*.parquet under the shared root, read
    # ai2d/data/test-*.parquet and stopped on its missing 'question_id'.
    c = config(root)
    bench = suite.benchmark(name)
    samples = bench.load(suite.folder(bench, c))
    assert len(samples) == layouts.EXPECTED[name]
    assert all(name in s["prompt"] and layouts.DECOY not in s["prompt"] for s in samples)


def test_a_benchmark_folder_can_live_elsewhere(root, tmp_path):
    moved = str(tmp_path / "MME-copy")
    shutil.copytree(os.path.join(root, "mme"), moved)
    c = config(str(tmp_path / "empty"), f"eval.roots.mme={moved}")
    mme = suite.benchmark("mme")
    assert suite.folder(mme, c) == moved and suite.folder_field(mme, c) == "eval.roots.mme"
    assert len(mme.load(suite.folder(mme, c))) == layouts.ROWS
    assert suite.folder(suite.benchmark("ai2d"), c) == str(tmp_path / "empty" / "ai2d")
    with pytest.raises(C.ConfigError, match="unknown config key 'eval.roots.mmee'"):
        config(root, "eval.roots.mmee=/x")


def test_preflight_lists_every_missing_benchmark_at_once(root, tmp_path):
    assert preflight.benchmark_problems(config(root)) == []
    partial = str(tmp_path / "b")
    shutil.copytree(root, partial)
    shutil.rmtree(os.path.join(partial, "ai2d"))
    shutil.rmtree(os.path.join(partial, "mmvp", "MMVP Images"))
    shutil.rmtree(os.path.join(partial, "gqa", "testdev_balanced_images"))
    probs = preflight.benchmark_problems(config(partial))
    assert [p.split(" ")[2] for p in probs] == ["gqa", "ai2d", "mmvp"]  # suite order
    ai2d, mmvp = probs[1], probs[2]
    assert ai2d.startswith(f"eval.root: benchmark ai2d not found at {partial}/ai2d; ")
    assert ("https://huggingface.co/datasets/lmms-lab/ai2d: hf download lmms-lab/ai2d "
            f"--repo-type dataset --local-dir {partial}/ai2d --include 'data/test-*.parquet'"
            in ai2d) and "--config.eval.roots.ai2d=DIR" in ai2d
    assert "mmvp incomplete (nothing matches 'MMVP Images/*.jpg')" in mmvp
    assert all("\n" not in p for p in probs)
    # a run that does not evaluate does not need them
    c = config(partial)
    assert not any(p.startswith("eval.") for p in preflight.problems(c, evaluate=False))
    c = config(partial, f"eval.roots.ai2d={root}/ai2d")
    assert [p.split(" ")[2] for p in preflight.benchmark_problems(c)] == ["gqa", "mmvp"]


def test_readme_lists_each_benchmarks_source():
    rows = re.findall(r"^\| `(\w+)` \| \[([\w./-]+)\]\(https://huggingface\.co/datasets/"
                      r"([\w./-]+)\) \| (.*) \|$", open(README).read(), flags=re.M)
    table = {name: (repo, link, files) for name, repo, link, files in rows}
    assert sorted(table) == sorted(ALL)
    for name, (repo, link, files) in table.items():
        source = suite.benchmark(name).SOURCE
        assert repo == link == source.repo, name
        assert re.findall(r"`([^`]+)`", files) == list(source.files), name
