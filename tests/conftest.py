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
    # The suite must run on 2 CPU cores; keep torch from oversubscribing under pytest-xdist.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data``; skips the test with a reason where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set BIOPLASTIC_SHARED_DATA to point at it)")
    return SHARED_DATA
