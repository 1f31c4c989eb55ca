import importlib.util
import json
import os
import subprocess
import sys

import pytest

from .fakes import image_folder, record, write_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, "data_recipes", "build.py")

RECIPE = '''
from cambrian.data.recipe import Recipe, Source, parse_arg


def get_recipe(arg=None):
    a = parse_arg(arg, data="", cap=0)
    return Recipe(name="tiny", shard_size=3, sources=(
        Source("s", a.data + "/d.jsonl", "general", images=a.data + "/imgs", cap=a.cap or None),))
'''


@pytest.fixture
def cli():
    spec = importlib.util.spec_from_file_location("_build_cli", CLI)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture
def tiny(tmp_path):
    image_folder(str(tmp_path / "imgs"), {f"{i}.png": i for i in range(8)})
    write_jsonl(str(tmp_path / "d.jsonl"), [record(i, f"{i}.png") for i in range(8)])
    (tmp_path / "tiny.py").write_text(RECIPE)
    return tmp_path


def test_dry_run_build_and_resume(cli, tiny, capsys):
    spec = f"{tiny}/tiny.py:data={tiny},cap=7"
    out = tiny / "out"
    assert cli(["--recipe", spec, "--dry-run", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "| s | general | 8 | 0 | 0 | 0 | 8 | 7 | 7 |" in text
    assert "dry run: 7 examples would be written" in text and not out.exists()

    assert cli(["--recipe", spec, "--out", str(out), "--no-progress"]) == 0
    assert "wrote 7 examples in 3 shards" in capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    assert m["sources"]["s"]["kept"] == 7

    assert cli(["--recipe", spec, "--out", str(out), "--no-progress"]) == 0
    assert "resuming the build" in capsys.readouterr().out

    assert cli(["--recipe", f"{tiny}/tiny.py:data={tiny},cap=5", "--out", str(out)]) == 2
    assert "different recipe" in capsys.readouterr().err


def test_bad_record_exit_code_and_skip(cli, tiny, capsys):
    path = write_jsonl(str(tiny / "d.jsonl"), [record(i, f"{i}.png") for i in range(4)],
                       raw={2: "{oops"})
    spec = f"{tiny}/tiny.py:data={tiny}"
    assert cli(["--recipe", spec, "--dry-run", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}:3: malformed_json: malformed JSON line" in err and "--skip-bad" in err
    assert cli(["--recipe", spec, "--dry-run", "--skip-bad", "--no-progress"]) == 0
    assert "malformed_json 1" in capsys.readouterr().out


def test_runs_as_a_script(tiny):
    r = subprocess.run([sys.executable, CLI, "--recipe", f"{tiny}/tiny.py:data={tiny}",
                        "--out", str(tiny / "out")], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "wrote 8 examples in 3 shards" in r.stdout
    assert "write shards" in r.stderr  # tqdm progress bar
