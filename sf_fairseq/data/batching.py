"""Length bucketing: which clips share one padded model call.

One batcher for every place that runs the model over many clips: scoring, transcription and
the clustering features. A batch is padded to its longest clip, so clips of very different
lengths waste compute (one 50 s clip with three 6 s ones costs four 50 s clips); clips are
therefore taken in order of length and a batch is closed when adding the next clip would exceed
any limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class BatchLimits:
    """How clips are grouped into one model call.

    Attributes:
        batch_size: most clips per call.
        max_frames: most padded frames per call (clips x longest clip), a memory cap; None = no cap.
        max_padding: most padding per call, as a fraction of its padded frames; None = no cap.
    """

    batch_size: int = 8
    max_frames: int | None = None
    max_padding: float | None = 0.2

    def admits(self, lengths: Sequence[int], length: int) -> bool:
        """Whether a clip of ``length`` frames may join a batch of clips of ``lengths`` frames."""
        if not lengths:
            return True
        n = len(lengths) + 1
        padded = n * max(max(lengths), length)
        if n > self.batch_size or (self.max_frames is not None and padded > self.max_frames):
            return False
        real = sum(lengths) + length
        return self.max_padding is None or padded - real <= self.max_padding * padded


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices of ``lengths`` from shortest to longest (ties keep their order)."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def length_batches(lengths: Sequence[int], limits: BatchLimits) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches under ``limits``, shortest clips first."""
    batches: list[list[int]] = []
    current: list[int] = []
    for index in length_order(lengths):
        if not limits.admits([lengths[i] for i in current], lengths[index]):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches
