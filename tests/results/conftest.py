import os

import pytest

from tests.fakes.gcs import gcs  # noqa: F401  (the fake GCS server fixture)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "probes")


@pytest.fixture(scope="session")
def data_dir() -> str:
    """Run folders of real :runlocal probes (see data/README.md)."""
    return DATA
