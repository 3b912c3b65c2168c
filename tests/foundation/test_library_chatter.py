"""Importing the plugin prints nothing: fairseq's advice about optional packages is dropped, while
real records of the same loggers still show."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(script: str) -> subprocess.CompletedProcess:
    # -W always: warnings on, as under a test runner; it also changes fairseq's import order so
    # that its own DEBUG root handler is in place when the chatter is logged.
    return subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True,
                          text=True, check=True)


@pytest.mark.parametrize("setup", ["", "import logging; logging.basicConfig(level=logging.DEBUG)\n"])
def test_import_prints_nothing(setup: str) -> None:
    done = _run(setup + "import sf_fairseq\n")
    assert done.stdout == "" and done.stderr == ""


def test_real_records_of_the_same_logger_still_show() -> None:
    done = _run(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "import sf_fairseq\n"
        "log = logging.getLogger('fairseq.tasks.text_to_speech')\n"
        "log.warning('disk full')\n"
        "log.info('tensorboardX found')\n"
        "logging.getLogger('fairseq').warning('a real fairseq warning')\n"
    )
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "WARNING:fairseq.tasks.text_to_speech:disk full",
        "INFO:fairseq.tasks.text_to_speech:tensorboardX found",
        "WARNING:fairseq:a real fairseq warning",
    ]
