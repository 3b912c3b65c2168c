"""Named stages of a long job, each run once per settings (the demo's stages, the lip-reading
stage's steps).

A finished stage leaves ``<folder>/<name>.json`` with its settings, result and seconds. A
stage's settings include those of every stage before it, so a change anywhere reruns everything
downstream; a rerun with other settings first clears the folders the stage writes, so nothing of
a run with other settings is resumed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

from sf_fairseq import resume

logger = logging.getLogger(__name__)


class Stages:
    """Runs named stages in order, each once per settings; markers live in ``folder``; ``label``
    prefixes the log lines (``[<label> <name>]``)."""

    def __init__(self, folder: Path, label: str = "") -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.upstream: dict = {}

    def run(self, name: str, settings: dict, action: Callable[[], dict | None],
            outputs: tuple[Path, ...] = ()) -> dict:
        """Run ``action`` unless it finished with these ``settings``; ``outputs`` (folders the
        stage writes) are cleared first. Returns the marker: ``settings``, ``result`` (what
        ``action`` returned, ``{}`` for None) and ``seconds``."""
        tag = f"{self.label} {name}" if self.label else name
        marker = self.dir / f"{name}.json"
        # As the marker will read back (tuples become lists), so that a rerun compares like with like.
        settings = self.upstream = resume.normalise({**self.upstream, **settings})
        if marker.exists():
            record = json.loads(marker.read_text())
            if record.get("settings") == settings:
                logger.info("[%s] reusing the finished stage", tag)
                return record
            logger.info("[%s] settings changed: running it again", tag)
        logger.info("[%s] running", tag)
        marker.unlink(missing_ok=True)
        for output in outputs:
            shutil.rmtree(output, ignore_errors=True)
        start = time.monotonic()
        result = action() or {}
        record = {"settings": settings, "result": result, "seconds": round(time.monotonic() - start, 1)}
        resume.atomic_write_json(marker, record)
        logger.info("[%s] done in %.0f s", tag, record["seconds"])
        return record
