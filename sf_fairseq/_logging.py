"""Keep the application's logging set-up when fairseq is imported.

fairseq configures the root logger as a side effect of being imported
(``fairseq/models/wav2vec/wav2vec2_classification.py`` calls
``logging.basicConfig(level=logging.DEBUG)``), which floods every program that imports this
plugin with DEBUG records of unrelated libraries (PIL, matplotlib). Imports of fairseq made on
our behalf run inside :func:`preserve_root_logging`, which undoes that side effect only.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator


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
