"""Shared test helpers: where the shared fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The shared folder sits beside the clone (``../shared``); SF_SHARED_DIR overrides it.
SHARED_DIR = Path(os.environ.get("SF_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "fixtures").is_dir():
        pytest.fail(
            f"shared fixtures not found at {SHARED_DIR} (expected ../shared beside the "
            "repository, or set SF_SHARED_DIR); golden tests cannot run without them"
        )
    return SHARED_DIR
