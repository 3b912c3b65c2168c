"""How the long-running commands end: Ctrl-C and SIGTERM (what ``timeout``, schedulers, pre-emption
and ``kill`` send) unwind the same way, with one line on stderr, no traceback, and the exit status
a shell gives for each (130, 143); errors print with the exceptions that caused them."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from argparse import Namespace
from typing import Any, Callable, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the run unwinds as on Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread; the previous
    handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_interruptible(program: str, run: Callable[[Namespace], int], args: Namespace, on_stop: str) -> int:
    """``run(args)``; on Ctrl-C or SIGTERM, print ``<program>: stopped by <signal>; <on_stop>``
    to stderr and return 130 or 143."""
    with sigterm_as_interrupt():
        try:
            return run(args)
        except KeyboardInterrupt as stop:
            name, status = ("SIGTERM", 143) if isinstance(stop, Terminated) else ("Ctrl-C", 130)
            print(f"{program}: stopped by {name}; {on_stop}", file=sys.stderr)
            return status


def error_text(err: BaseException) -> str:
    """``error: <message>`` followed by the messages of the exceptions that caused it."""
    lines = [f"error: {err}"]
    cause = err.__cause__
    while cause is not None:
        lines.append(f"  caused by {type(cause).__name__}: {cause}")
        cause = cause.__cause__
    return "\n".join(lines)
