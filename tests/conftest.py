"""Shared fixtures: where ``../shared/data`` is, and a skip with a reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WEARFACE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with the reason when it is not there."""
    if not (SHARED_DATA / "lfw" / "pairs.txt").is_file():
        pytest.skip(f"needs the shared face data at {SHARED_DATA} (set WEARFACE_DATA to point elsewhere)")
    return SHARED_DATA
