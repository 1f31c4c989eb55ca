import os

import pytest

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


def pytest_configure(config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
