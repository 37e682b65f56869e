"""Shared fixtures: the real data folder (``../shared/data``) and seeded generators."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BIOPLASTIC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _few_threads():
    # The suite runs as 2 pytest-xdist workers on 2 CPU cores: one torch thread per worker, or the small
    # models of the tests run many times slower from oversubscription.
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test with a reason where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set BIOPLASTIC_SHARED_DATA to point at it)")
    return SHARED_DATA

