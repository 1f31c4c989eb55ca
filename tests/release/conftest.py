"""Session-wide tiny releases (towers built once) and their PyTorch references."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

from tests.release import fixtures  # noqa: E402  (needs torch)
from tests.release import torch_reference as ref  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # tiny ops: on a shared CPU, thread barriers cost more than the arithmetic
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def towers_root(tmp_path_factory):
    return fixtures.build_towers(str(tmp_path_factory.mktemp("towers")))


@pytest.fixture(scope="session")
def releases(tmp_path_factory, towers_root):
    """kind -> Release at the release geometry (576 tokens, 96x96 ConvNeXt)."""
    root = tmp_path_factory.mktemp("releases")
    return {kind: fixtures.build_release(str(root / kind), kind, towers_root=towers_root,
                                         seed=i)
            for i, kind in enumerate(fixtures.KINDS)}


@pytest.fixture(scope="session")
def references(releases):
    return {kind: ref.Reference(r.checkpoint, r.towers_root) for kind, r in releases.items()}


def image(w: int, h: int, seed: int = 0) -> np.ndarray:
    """uint8[h, w, 3]: smooth colour gradients plus noise (resampling has something to do)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (w + h)], -1) * 200
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


IMAGES = {"wide": (720, 200), "tall": (200, 720), "square": (256, 256), "odd": (517, 289)}
