"""The user's real-probe command walked end to end (README, "Running a real probe"): fill
``$CAMBRIAN_CHECKPOINTS`` and ``$CAMBRIAN_DATA`` with ``python -m cambrian.fetch --config
encoders/dinov2.py --benchmarks extras`` from a local fake Hub holding tiny stand-ins of every repo
in its real layout (tests/fakes/hub_repos.py), then ``python launch/tpu.py --config
encoders/dinov2.py --workdir W`` with only step-count, batch-size and decode-length overrides: both
stages train, every benchmark of the suite is scored, report.json is written. The second walk
does the same with everything on gs:// (a fake GCS server): inputs, their fetch, the workdir and
the checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from cambrian.eval import suite
from tests.fakes import hub_repos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Step counts and batch sizes only; decoding capped at 4 tokens in batches of 2 so that one
# compiled decoder serves every benchmark of a length bucket (the stand-in LLM stops at once).
STEPS = [*(f"--config.stages.{s}.{k}={v}" for s in ("stage1", "stage2")
           for k, v in (("steps", 2), ("batch_size", 2))),
         "--config.eval.batch_size=2", "--config.eval.max_new_tokens=4"]


def _run(args: list[str], env: dict, timeout: int = 600) -> str:
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(args)} exited {p.returncode}:\n{p.stdout[-3000:]}\n" \
                              f"{p.stderr[-6000:]}"
    return p.stdout


def _env(hf_hub, tmp_path, ckpt: str, data: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMBRIAN_", "HF_"))}
    return {**env, "HF_ENDPOINT": hf_hub.endpoint, "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HOME": str(tmp_path / "hf_home"), "CAMBRIAN_CHECKPOINTS": ckpt,
            "CAMBRIAN_DATA": data, "CAMBRIAN_CACHE": str(tmp_path / "cache"),
            "JAX_PLATFORMS": "cpu", "TQDM_DISABLE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")])), **extra}


def _check_report(text: str) -> None:
    report = json.loads(text)
    scored = report["benchmarks"]
    assert sorted(scored) == sorted(suite.SUITES["cambrian"])
    assert all(b["n"] > 0 for b in scored.values())
    assert not any("random-init" in n for n in report.get("notes", []))


def test_fetch_then_train_and_evaluate_the_dinov2_probe(hf_hub, tmp_path):
    hub_repos.serve(hf_hub)
    env = _env(hf_hub, tmp_path, str(tmp_path / "checkpoints"), str(tmp_path / "data"))
    out = _run(["-m", "cambrian.fetch", "--config", "encoders/dinov2.py", "--dry-run"], env)
    assert "lmsys/vicuna-7b-v1.5" in out and "[to fetch" in out
    _run(["-m", "cambrian.fetch", "--config", "encoders/dinov2.py", "--benchmarks", "extras"], env)
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / "lmsys/vicuna-7b-v1.5/pytorch_model.bin.index.json").exists()
    assert not (ckpt / "facebook/dinov2-large/pytorch_model.bin").exists()  # safetensors there
    data = tmp_path / "data"
    assert (data / "sharegpt4v/sam/images/sa_0.jpg").exists()
    assert (data / "built/cambrian_737k/manifest.json").exists()
    for name in suite.DOWNLOADED:  # the suite's 15 and the extras
        assert any((data / "benchmarks" / name).iterdir()), name
    work = tmp_path / "run"
    _run(["launch/tpu.py", "--config", "encoders/dinov2.py", "--workdir", str(work), *STEPS],
         env)
    _check_report((work / "report.json").read_text())
    assert json.loads((work / "stage2_data.json").read_text())["batches"] > 0


@pytest.mark.slow  # about a minute: every file goes through the pure-Python GCS emulator
def test_the_same_walk_with_inputs_and_workdir_on_gs(hf_hub, gcs, tmp_path):
    hub_repos.serve(hf_hub)
    env = _env(hf_hub, tmp_path, gcs.url("checkpoints"), gcs.url("data"),
               STORAGE_EMULATOR_HOST=gcs.endpoint, GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT="false",
               FSSPEC_GS_TOKEN="anon", TENSORSTORE_GCS_HTTP_URL=gcs.endpoint,
               GOOGLE_AUTH_TOKEN_FOR_TESTING="test")
    _run(["-m", "cambrian.fetch", "--config", "encoders/dinov2.py"], env)
    gcs.fs.invalidate_cache()
    assert gcs.fs.exists(f"{gcs.bucket}/data/built/cambrian_737k/manifest.json")
    work = gcs.url("runs/dinov2")
    _run(["launch/tpu.py", "--config", "encoders/dinov2.py", "--workdir", work, *STEPS], env)
    gcs.fs.invalidate_cache()
    _check_report(gcs.fs.cat(f"{gcs.bucket}/runs/dinov2/report.json").decode())
    assert gcs.fs.ls(f"{gcs.bucket}/runs/dinov2/checkpoints")
