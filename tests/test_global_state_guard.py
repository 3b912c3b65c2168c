"""The leak check every test runs under (tests/sf_global_state.py, tests/conftest.py)."""

from __future__ import annotations

import ast
import logging
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from sf_global_state import leak_guard

from sf_fairseq._logging import command_logging


def leaks(change) -> str | None:
    """The failure message of running ``change`` under the guard (None: no leak found)."""
    try:
        with leak_guard():
            change()
    except pytest.fail.Exception as failure:
        return str(failure)
    return None


def test_every_test_runs_under_the_guard(request: pytest.FixtureRequest) -> None:
    assert "no_leaked_global_state" in request.fixturenames


def test_torch_thread_count() -> None:
    threads = torch.get_num_threads()
    assert "torch threads" in leaks(lambda: torch.set_num_threads(threads + 1))
    assert torch.get_num_threads() == threads  # restored for the tests after it


@pytest.mark.parametrize("seed", [lambda: random.seed(1), lambda: np.random.seed(1), lambda: torch.manual_seed(1)],
                         ids=["random", "numpy", "torch"])
def test_reseeding_a_global_rng(seed) -> None:
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.random.get_rng_state())
    assert "reseeded and not restored" in leaks(seed)
    after = (random.getstate(), np.random.get_state()[1], torch.random.get_rng_state())
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2].equal(before[2])


def test_reseeding_then_restoring_is_allowed() -> None:
    def seed_and_restore() -> None:
        state = np.random.get_state()
        np.random.seed(3)
        np.random.rand(4)
        np.random.set_state(state)
        with torch.random.fork_rng():
            torch.manual_seed(3)
            torch.rand(4)

    assert leaks(seed_and_restore) is None


def test_drawing_from_a_global_rng_is_allowed() -> None:
    assert leaks(lambda: (np.random.rand(2), torch.rand(2), random.random(), torch.nn.Linear(3, 3))) is None
    assert leaks(lambda: (np.random.default_rng(0).random(), torch.Generator().manual_seed(0),
                          random.Random(0).random())) is None


def test_environment() -> None:
    assert "SF_LEAK_CHECK" in leaks(lambda: os.environ.__setitem__("SF_LEAK_CHECK", "1"))
    assert "SF_LEAK_CHECK" not in os.environ

    def with_monkeypatch() -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SF_LEAK_CHECK", "1")

    assert leaks(with_monkeypatch) is None


def test_logging_configuration() -> None:
    root = logging.getLogger()
    level = root.level
    other_level = logging.DEBUG if level != logging.DEBUG else logging.INFO
    assert "root logger level" in leaks(lambda: root.setLevel(other_level))
    assert "root logger handlers" in leaks(lambda: root.addHandler(logging.NullHandler()))
    assert "logging.disable" in leaks(lambda: logging.disable(logging.INFO))
    assert (root.level, logging.root.manager.disable) == (level, logging.NOTSET)
    assert not [h for h in root.handlers if type(h) is logging.NullHandler]

    def a_command() -> None:  # a command's main run in-process
        with command_logging():
            logging.getLogger("sf_fairseq.example").info("working")

    assert leaks(a_command) is None


def test_working_directory_and_signal_handlers(tmp_path) -> None:
    assert "working directory" in leaks(lambda: os.chdir(tmp_path))
    assert os.getcwd() != str(tmp_path)
    handler = signal.getsignal(signal.SIGUSR1)
    assert "signal handlers" in leaks(lambda: signal.signal(signal.SIGUSR1, lambda *_: None))
    assert signal.getsignal(signal.SIGUSR1) == handler


# Calls that change process-wide state; at a test module's top level they run at collection,
# before any test's check, and hold for the rest of the session.
GLOBAL_SETTERS = {"torch.set_num_threads", "torch.set_num_interop_threads", "torch.manual_seed", "torch.seed",
                  "torch.random.manual_seed", "np.random.seed", "numpy.random.seed", "random.seed",
                  "logging.basicConfig", "logging.disable", "os.chdir", "signal.signal", "os.putenv",
                  "os.environ.update", "os.environ.setdefault", "os.environ.pop"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def module_level_setters(tree: ast.Module) -> list[tuple[int, str]]:
    """``(line, call)`` of the global-state changes a module makes when imported."""
    found = []
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(statement):
            if isinstance(node, ast.Call) and _dotted(node.func) in GLOBAL_SETTERS:
                found.append((node.lineno, _dotted(node.func)))
            elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
                if any(isinstance(t, ast.Subscript) and _dotted(t.value) == "os.environ" for t in targets):
                    found.append((node.lineno, "os.environ[...]"))
    return found


def test_no_test_module_changes_global_state_when_imported() -> None:
    tests = Path(__file__).resolve().parent
    found = [f"{path.relative_to(tests)}:{line}: {call}" for path in sorted(tests.rglob("*.py"))
             for line, call in module_level_setters(ast.parse(path.read_text(encoding="utf-8")))]
    assert not found, "use a fixture that puts it back (tests/conftest.py):\n" + "\n".join(found)


def test_the_module_scan_catches() -> None:
    source = "import torch, os\ntorch.set_num_threads(2)\nos.environ['X'] = '1'\nif True:\n    np.random.seed(0)\n"
    assert [call for _, call in module_level_setters(ast.parse(source))] == [
        "torch.set_num_threads", "os.environ[...]", "np.random.seed"]
    assert not module_level_setters(
        ast.parse("def f():\n    torch.set_num_threads(2)\ng = torch.Generator().manual_seed(0)\n"))
