import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


class FakePod:
    """``launch/tpu.py`` run against ``fake_gcloud.py`` (as ``gcloud`` on PATH)."""

    def __init__(self, tmp, cache_dir: str):
        self.tmp, self.cache_dir = tmp, cache_dir
        self.dir = tmp / "gcloud"
        self.dir.mkdir()
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "gcloud"
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE}/fake_gcloud.py "$@"\n')
        shim.chmod(0o755)
        self.env = {
            **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_GCLOUD_DIR": str(self.dir), "FAKE_REAL_PYTHON": sys.executable,
            "CAMBRIAN_LAUNCH_CONFIG": str(tmp / "launch.toml"), "CAMBRIAN_POLL_SECONDS": "0.01",
            "TMPDIR": str(tmp), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "",
            "PYTHONPATH": ROOT}

    def launch(self, *args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "launch/tpu.py", *args], cwd=ROOT, text=True,
                              env={**self.env, **env}, capture_output=True, timeout=timeout)

    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def add_node(self, name: str, accelerator: str) -> None:
        """A TPU created outside the launcher, READY."""
        workers = max(1, int(accelerator.split("-")[1]) // 8)
        (self.dir / "state.json").write_text(json.dumps({"qr": {}, "preempt": None, "nodes": {
            name: {"state": "READY", "accelerator": accelerator, "workers": workers}}}))
        for i in range(workers):
            (self.dir / "workers" / str(i)).mkdir(parents=True)

    def preempt_at(self, text: str) -> None:
        path = self.dir / "state.json"
        state = json.loads(path.read_text()) if path.exists() else {"qr": {}, "nodes": {}}
        state["preempt"] = {"at": text, "done": False}
        path.write_text(json.dumps(state))


@pytest.fixture
def pod(tmp_path, cache_dir):
    return FakePod(tmp_path, cache_dir)


def kind(call: list[str]) -> str:
    """A gcloud / uv call as one step name: create, describe, scp, unpack, install, run, ..."""
    if call[0] == "uv":
        return "uv " + call[1]
    group, verb = call[2], call[3]
    if verb == "ssh":
        command = next(a for a in call if a.startswith("--command="))
        for key, name in (("tar -xzf", "unpack"), ("install.sh", "install"),
                          ("worker run", "run"), ("worker stop", "stop"),
                          ("worker attach", "attach")):
            if key in command:
                return name
    return {"queued-resources": "qr-", "tpu-vm": "tpu-"}[group] + verb
