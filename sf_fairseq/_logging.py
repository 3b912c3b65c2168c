"""Keep the application's logging set-up, and its output, when fairseq is imported.

fairseq configures the root logger as a side effect of being imported
(``fairseq/models/wav2vec/wav2vec2_classification.py`` calls
``logging.basicConfig(level=logging.DEBUG)``), which floods every program that imports this
plugin with DEBUG records of unrelated libraries (PIL, matplotlib). Imports of fairseq made on
our behalf run inside :func:`preserve_root_logging`, which undoes that side effect only.

fairseq also logs advice about optional packages this project never uses ("Please install
tensorboardX" from its text-to-speech task, on import, in every process). :func:`drop_library_chatter`
filters exactly those messages on the loggers that emit them; every other record of those loggers,
warnings included, still goes through.

Commands configure the root logger for their run only (:func:`command_logging`), so a command
called in-process (the tests, the demo running its stages) leaves its caller's logging as it was.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

# Logger name -> starts of the messages dropped from it.
LIBRARY_CHATTER: dict[str, tuple[str, ...]] = {
    "fairseq.tasks.text_to_speech": ("Please install tensorboardX",),
}


@contextmanager
def preserve_root_logging() -> Iterator[None]:
    """Remove root handlers added, and restore the root level changed, inside the block."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)


# The commands' console formats: plain, and with a timestamp for the long-running ones.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
TIMED_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def command_logging(fmt: str = LOG_FORMAT, level: int = logging.INFO) -> Iterator[None]:
    """One command's logging: inside the block the root logger also writes to stderr with
    ``fmt``, at ``level``; on exit the stderr handler is gone and the previous level is back.

    Handlers already on the root logger stay attached (an application, or pytest's log capture,
    that runs a command in-process still receives its records); from a shell there are none, so
    the command's stderr handler is the only one.
    """
    root = logging.getLogger()
    handlers, previous_level = list(root.handlers), root.level
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(fmt))
    root.addHandler(console)
    root.setLevel(level)
    try:
        yield
    finally:
        for handler in list(root.handlers):  # the console and any the command added
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(previous_level)


class DropMessages(logging.Filter):
    """Drop the records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def drop_library_chatter() -> None:
    """Filter :data:`LIBRARY_CHATTER` on its loggers (idempotent; call before importing fairseq,
    whose modules log it on import)."""
    for name, prefixes in LIBRARY_CHATTER.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(prefixes))
