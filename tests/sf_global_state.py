"""The check that no test leaks process-wide state into the tests after it (tests/conftest.py
runs every test inside :func:`leak_guard`).

Checked: torch's thread counts, the root logger (level, handlers) and ``logging.disable``, the
environment, the working directory, the handlers of the common signals, and global RNGs. A test
that changes one and does not put it back fails with what it changed; the state is then restored
so that the tests after it are judged on their own.

Global RNGs: tests that need randomness use local generators (``np.random.default_rng(seed)``,
``torch.Generator().manual_seed(seed)``, ``random.Random(seed)``). Drawing from a global RNG is
allowed (model initialisation does); *seeding* one (``random.seed``, ``np.random.seed``,
``torch.manual_seed``, ``torch.seed``) fails the test unless, when the test ends, that generator's
state is back where it was before the test or just before its first reseed (for example with
``torch.random.fork_rng()`` around the test or around the seeded part). Seeding is seen by
wrapping the seeding functions for the test's duration, so generator states are compared only in
tests that reseed.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pytest

# Not SIGCHLD: torch's DataLoader sets its handler (chaining to the previous one) the first time a
# loader starts worker processes, once per process, in whichever test that happens.
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2",
                                                    "SIGALRM", "SIGPIPE") if hasattr(signal, name))
# pytest's own per-phase state: its log capture handlers, and the name of the running test.
_PYTEST_HANDLERS = ("LogCaptureHandler", "_LiveLoggingNullHandler", "_LiveLoggingStreamHandler", "_FileHandler")
# Not the tests': the name of the running test (pytest), and variables libraries set when first
# imported, in whichever test that happens: the library path (cv2/config.py), OpenMP settings
# (sklearn/__init__.py, joblib/__init__.py).
_IGNORED_ENV = {"PYTEST_CURRENT_TEST", "LD_LIBRARY_PATH", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}
# (module, attribute, generator) of the functions that reseed a global RNG.
_SEEDERS = (("random", "seed", "random"), ("numpy.random", "seed", "numpy.random"),
            ("torch", "manual_seed", "torch"), ("torch.random", "manual_seed", "torch"),
            ("torch", "seed", "torch"), ("torch.random", "seed", "torch"))


def _root_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__name__ not in _PYTEST_HANDLERS]


def _same_rng_state(a: Any, b: Any) -> bool:
    if type(a).__name__ == "Tensor":
        return bool(a.equal(b))
    if isinstance(a, tuple) and len(a) == 5 and isinstance(a[1], np.ndarray):  # numpy's legacy state
        return a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2:] == b[2:]
    return a == b


@dataclass
class GlobalState:
    """One snapshot of the checked state."""

    values: dict[str, Any]
    rng: dict[str, Any]  # global generator -> its state

    @classmethod
    def take(cls) -> "GlobalState":
        values: dict[str, Any] = {
            "root logger level": logging.getLogger().level,
            "root logger handlers": _root_handlers(),
            "logging.disable": logging.root.manager.disable,
            "working directory": os.getcwd(),
            "environment": {k: v for k, v in os.environ.items() if k not in _IGNORED_ENV},
            "signal handlers": {int(s): signal.getsignal(s) for s in _SIGNALS},
        }
        torch = sys.modules.get("torch")
        if torch is not None:  # never imported here: numpy-only tests stay torch-free
            values["torch threads"] = torch.get_num_threads()
            values["torch interop threads"] = torch.get_num_interop_threads()
        return cls(values, {name: get() for name, get in _rng_getters().items()})

    def changes(self, now: "GlobalState", reseeded: dict[str, Any]) -> list[str]:
        """What differs in ``now``; a global generator only when it was reseeded and its state is
        neither the one before the test nor the one just before the first reseed (``reseeded``:
        generator -> that state)."""
        out = []
        for key, before in self.values.items():
            after = now.values.get(key, before)
            if after != before:
                if isinstance(before, dict):
                    keys = sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}, key=str)
                    out.append(f"{key}: " + ", ".join(f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in keys))
                else:
                    out.append(f"{key}: {before!r} -> {after!r}")
        for name, unseeded in sorted(reseeded.items()):
            restored = [state for state in (self.rng.get(name), unseeded) if state is not None]
            if name in now.rng and not any(_same_rng_state(state, now.rng[name]) for state in restored):
                out.append(f"global {name} RNG reseeded and not restored (use a local generator)")
        return out

    def restore(self) -> None:
        root = logging.getLogger()
        root.setLevel(self.values["root logger level"])
        for handler in _root_handlers():
            if handler not in self.values["root logger handlers"]:
                root.removeHandler(handler)
        for handler in self.values["root logger handlers"]:
            if handler not in root.handlers:
                root.addHandler(handler)
        logging.disable(self.values["logging.disable"])
        os.chdir(self.values["working directory"])
        env = self.values["environment"]
        for key in [k for k in os.environ if k not in env and k not in _IGNORED_ENV]:
            del os.environ[key]
        os.environ.update(env)
        for signum, handler in self.values["signal handlers"].items():
            if handler is not None:
                signal.signal(signum, handler)
        random.setstate(self.rng["random"])
        np.random.set_state(self.rng["numpy.random"])
        torch = sys.modules.get("torch")
        if torch is not None and "torch" in self.rng:
            torch.set_num_threads(self.values["torch threads"])
            torch.random.set_rng_state(self.rng["torch"])


def _rng_getters() -> dict[str, Callable[[], Any]]:
    getters: dict[str, Callable[[], Any]] = {"random": random.getstate, "numpy.random": np.random.get_state}
    torch = sys.modules.get("torch")
    if torch is not None:
        getters["torch"] = torch.random.get_rng_state
    return getters


def _recording(seed: Callable[..., Any], generator: str, reseeded: dict[str, Any]) -> Callable[..., Any]:
    def recording_seed(*args: Any, **kwargs: Any) -> Any:
        if generator not in reseeded:  # the state to return to: the one before the first reseed
            reseeded[generator] = _rng_getters()[generator]()
        return seed(*args, **kwargs)

    return recording_seed


@contextmanager
def leak_guard() -> Iterator[None]:
    """Fail (``pytest.fail``) when the block leaves the checked state changed, then restore it."""
    reseeded: dict[str, Any] = {}
    seeders = pytest.MonkeyPatch()
    for module_name, attr, generator in _SEEDERS:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            seeders.setattr(module, attr, _recording(getattr(module, attr), generator, reseeded))
    before = GlobalState.take()
    try:
        yield
    finally:
        seeders.undo()
    changes = before.changes(GlobalState.take(), reseeded)
    if changes:
        before.restore()
        pytest.fail("the test leaked global state into the tests after it:\n  " + "\n  ".join(changes), pytrace=False)
