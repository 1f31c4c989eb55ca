import os
import socket
import subprocess
import sys

import pytest

from tests.fakes.gcs import gcs  # noqa: F401  (fixture: a local fake GCS server behind gs://)
from tests.fakes.hf_hub import hf_hub  # noqa: F401  (fixture: a local fake Hugging Face Hub)

SMALL = {"align": 24, "train": 48, "eval": 6}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A cache with a small synthetic dataset, shared by the whole test session."""
    d = str(tmp_path_factory.mktemp("cache"))
    from cambrian.data import synthetic

    synthetic.ensure(d, SMALL)
    return d


@pytest.fixture
def tiny_config(cache_dir):
    """encoders/dinov2.py:runlocal shrunk to a few steps on the small synthetic data."""
    from cambrian import config as config_lib

    return small(config_lib.load("encoders/dinov2.py:runlocal"), cache_dir)


def small(config, cache_dir, steps=2):
    with config.unlocked():
        config.cache_dir = cache_dir
    config.data.synthetic.update(SMALL)
    config.model.llm.random.update(dict(hidden_size=64, intermediate_size=128, num_layers=2,
                                        num_heads=4, num_kv_heads=2, head_dim=16))
    for st in config.stages.values():
        st.steps, st.batch_size, st.warmup_ratio = steps, 4, 0.0
    config.eval.batch_size = 4
    config.eval.limit = 4
    config.log_every = 1
    return config


def start_processes(module: str, args: list[list[str]], devices: int) -> list[subprocess.Popen]:
    """``python -m module PORT I *args[I]`` for each process I, from the repository root, on
    ``devices`` fake CPU devices each; they meet at the coordinator ``localhost:PORT``."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [subprocess.Popen([sys.executable, "-m", module, str(port), str(i), *a], cwd=root,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i, a in enumerate(args)]


def wait_processes(procs: list[subprocess.Popen], timeout: int = 600) -> None:
    """Waits for every process; a failure shows the tail of its output."""
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-4000:]


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
