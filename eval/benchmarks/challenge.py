"""AV-Deepfake1M / LAV-DF challenge files, in the official SDK's formats.

From ``ControlNet/AV-Deepfake1M`` @2c72275:

* **classification** (``python/avdeepfake1m/evaluation/auc.py``, ``examples/xception/infer.py``):
  a text file of ``<file>;<score>`` lines, no header, read with ``pandas.read_csv(sep=";",
  header=None)``; the truth is ``len(fake_segments) > 0``, so **a higher score means more likely
  fake**. Our score points the other way (higher = more likely real, a cosine in ``[-1, 1]``), so
  the file holds ``(1 - score) / 2`` in ``[0, 1]``: the SDK's AUROC of it equals our AUC, and
  being in ``[0, 1]`` it is not passed through torchmetrics' sigmoid.
* **localisation** (``src/loc_1d.rs``, ``examples/batfd/batfd/post_process.py``): a JSON object
  ``{file: [[confidence, start, end], ...]}``, times in seconds (evaluated with ``fps=1``),
  proposals by descending confidence. The SDK cannot read an empty list (see
  :mod:`.localisation`), so every file has at least one proposal.
* **labels** the SDK evaluates against: every entry of the metadata JSON must have a prediction
  (``auc.py`` looks each one up; ``loc_1d.rs`` indexes the proposals by it). When some videos
  could not be scored, :func:`write_metadata_subset` writes the metadata entries of the scored
  ones, so ``auc(pred, subset, "file", key)`` and ``ap_ar_1d(...)`` run on exactly those.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

from sf_fairseq.resume import atomic_write_text

from .proposals import Proposal


def fake_score(score: float) -> float:
    """The SDK's convention (higher = fake) from ours (a cosine, higher = real)."""
    return (1.0 - score) / 2.0


def _check_key(file: str) -> None:
    if ";" in file or "\n" in file or "\r" in file:
        raise ValueError(f"{file!r}: a file key with ';' or a line break cannot be written as '<file>;<score>'")


def classification_text(scores: Mapping[str, float]) -> str:
    """``<file>;<fake score>`` lines for ``{file: our score}``."""
    lines = []
    for file, score in scores.items():
        _check_key(file)
        lines.append(f"{file};{fake_score(score):.8f}\n")
    return "".join(lines)


def write_classification(path: str | os.PathLike, scores: Mapping[str, float]) -> None:
    atomic_write_text(path, classification_text(scores))


def write_localisation(path: str | os.PathLike, proposals: Mapping[str, Sequence[Proposal]]) -> None:
    """The prediction JSON; refuses a file without proposals (the SDK cannot read it)."""
    rows: dict[str, list[list[float]]] = {}
    for file, props in proposals.items():
        if not props:
            raise ValueError(f"{file!r}: no proposal (the SDK cannot read an empty list)")
        rows[file] = [p.as_row() for p in sorted(props, key=lambda p: -p.confidence)]
    atomic_write_text(path, json.dumps(rows) + "\n")


def write_metadata_subset(
    path: str | os.PathLike, entries: Iterable[tuple[str, Sequence[tuple[float, float]]]], value_key: str
) -> None:
    """``[{"file": ..., value_key: [[start, end], ...]}, ...]`` for the SDK's evaluation."""
    data: list[dict[str, Any]] = [{"file": file, value_key: [list(s) for s in segments]} for file, segments in entries]
    atomic_write_text(path, json.dumps(data) + "\n")
