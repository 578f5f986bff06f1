"""Shared test fixtures: where ``../shared`` is, and small synthetic datasets generated once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def _shared_root() -> Path:
    return Path(os.environ.get("REIDLIB_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$REIDLIB_SHARED``); the test is skipped with the reason when it is absent."""
    root = _shared_root()
    if not root.is_dir():
        pytest.skip(f"shared material not found at {root}: "
                    "put the project's shared/ folder beside the repo or set REIDLIB_SHARED")
    return root


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    """``<shared>/data`` with the four real benchmarks; skipped with the reason when absent."""
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip(f"real datasets not found at {data}")
    return data


# Small synthetic datasets in each on-disk layout, generated once per session (a second or so each).
TINY = dict(num_ids=16, num_test_ids=8, num_cams=3, images_per_id_per_cam=3, height=64, width=32,
            num_distractors=6, num_junk=4)


@pytest.fixture(scope="session")
def tiny_params() -> dict:
    """Generator parameters of the tiny synthetic datasets (layout excluded)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def synthetic_factory(tmp_path_factory):
    """``make(name, **params) -> Path``: generate (once per name) a synthetic dataset under a session tmp dir."""
    from reidlib.data import generate_synthetic

    made: dict[str, Path] = {}

    def make(name: str, **params) -> Path:
        if name not in made:
            made[name] = generate_synthetic(tmp_path_factory.mktemp("synthetic") / name, **{**TINY, **params})
        return made[name]

    return make


@pytest.fixture(scope="session")
def tiny_market(synthetic_factory) -> Path:
    """A tiny generated dataset in the Market-1501 layout (junk and distractors included)."""
    return synthetic_factory("market", layout="market")


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: several times faster than two on a 2-core machine shared with other jobs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
