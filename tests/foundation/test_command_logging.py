"""Commands configure the root logger for their run only (sf_fairseq._logging.command_logging):
run in-process, they leave the caller's logging as it was."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sf_fairseq._logging import LOG_FORMAT, TIMED_LOG_FORMAT, command_logging


@pytest.fixture
def own_root_handler():
    """A caller's handler and level on the root logger, taken off again after the test."""
    root = logging.getLogger()
    level = root.level
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def test_the_block_adds_a_console_handler_and_puts_the_callers_back(own_root_handler, capsys) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with command_logging(LOG_FORMAT):
        assert root.level == logging.INFO
        *kept, console = root.handlers
        assert kept == before  # the caller's handlers (and pytest's capture) still receive records
        assert console.formatter._fmt == LOG_FORMAT
        logging.getLogger("sf.example").info("hello %d", 3)
        root.addHandler(logging.NullHandler())  # one a command adds goes too
    assert root.handlers == before and root.level == logging.WARNING
    assert own_root_handler.stream is not None  # left open
    err = capsys.readouterr().err
    assert "INFO sf.example: hello 3\n" in err  # the command's format
    assert own_root_handler.stream.getvalue() == "hello 3\n"  # and the caller's own handler got it too


def test_the_callers_logging_is_back_after_an_error(own_root_handler) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    with pytest.raises(SystemExit):
        with command_logging(TIMED_LOG_FORMAT, logging.DEBUG):
            assert root.level == logging.DEBUG
            raise SystemExit(2)
    assert root.handlers == before and root.level == logging.WARNING


def test_a_command_run_in_process_leaves_the_root_logger_alone(own_root_handler, tmp_path, capsys) -> None:
    from sf_fairseq.eval import metrics_cli

    root = logging.getLogger()
    before = list(root.handlers)
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"id": "a", "label": 1, "category": "real", "status": "ok", "score": 0.5}) + "\n")
    assert metrics_cli.main([str(scores), "--out", str(tmp_path / "report"), "--n-boot", "0"]) == 0
    assert root.handlers == before and root.level == logging.WARNING
    with pytest.raises(SystemExit):
        metrics_cli.main([str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "r2")])
    assert root.handlers == before and root.level == logging.WARNING
