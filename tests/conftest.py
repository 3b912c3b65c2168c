"""Shared test helpers: where the shared fixtures live, and the check that no test leaks global
state into the tests after it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from sf_global_state import leak_guard

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


@pytest.fixture(autouse=True)
def no_leaked_global_state() -> Iterator[None]:
    """Fail a test that leaves process-wide state changed (see :mod:`sf_global_state`). Autouse,
    so set up before, and torn down after, the test's own fixtures (monkeypatch included)."""
    with leak_guard():
        yield


@pytest.fixture
def restore_torch_rng() -> Iterator[None]:
    """For tests that seed torch's global RNG (model initialisation and the criteria draw from it,
    with no generator argument): its state is put back after the test."""
    import torch

    with torch.random.fork_rng(devices=[]):
        yield


@pytest.fixture
def restore_numpy_rng() -> Iterator[None]:
    """For tests that seed numpy's global RNG (code under test draws from it): put back after."""
    import numpy as np

    state = np.random.get_state()
    yield
    np.random.set_state(state)


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    """For tests of code that sets torch's thread count for its process (pipeline stages that
    normally run in their own worker processes): the count is put back after the test."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_torch_threads() -> Iterator[None]:
    """The module's tests run torch on two intra-op threads; the count is put back after them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
