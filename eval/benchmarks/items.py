"""Typed records of a benchmark: the items to score and the ones that cannot be.

A reader (:mod:`.readers`) turns a dataset's own metadata into a :class:`BenchmarkSet`: one
:class:`BenchmarkItem` per video it can score and one :class:`ItemProblem` per entry it cannot
(video missing on disk, excluded by the protocol, ...), so nothing is dropped silently.
Malformed metadata (a missing field, an unknown category, a segment that is not ``[start, end]``)
raises :class:`MetadataError`, naming the file and the entry.

Labels follow :mod:`sf_fairseq.eval.lists`: ``1`` = real, ``0`` = fake, ``None`` = unknown (an
unlabelled challenge test split).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..lists import FAKE, REAL

__all__ = ["REAL", "FAKE", "MetadataError", "BenchmarkItem", "ItemProblem", "BenchmarkSet"]

Segment = tuple[float, float]


class MetadataError(ValueError):
    """A dataset's metadata does not follow its documented format (the message names the file
    and the entry)."""


@dataclass(frozen=True)
class BenchmarkItem:
    """One video of a benchmark.

    Attributes:
        id: the dataset's own key for the video (AV-Deepfake1M / LAV-DF ``file``, a path
            relative to the dataset root elsewhere); unique within a set.
        video: absolute path of the video to score (a raw video, or a mouth ROI when
            ``prepared``).
        label: 1 = real, 0 = fake, None = unknown.
        category: the group the per-category metrics use (``real`` or a fake category, in the
            dataset's own names).
        method: the generation method where the metadata names one (else None).
        split: the dataset split the item belongs to (None where the dataset has no splits).
        fake_segments: ground-truth fake intervals in seconds (``()`` for a real video; None
            where the dataset does not annotate segments).
        audio: a separate 16 kHz mono wav to pair with the video (FaceForensics++ ships videos
            without sound); None = the video's own audio track.
        prepared: ``video`` is already a 25 fps mouth ROI and ``audio`` its wav (SpeechForensics
            lists), so the preparation step is skipped.
    """

    id: str
    video: str
    label: int | None
    category: str
    method: str | None = None
    split: str | None = None
    fake_segments: tuple[Segment, ...] | None = None
    audio: str | None = None
    prepared: bool = False

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.fake_segments is not None:
            out["fake_segments"] = [list(s) for s in self.fake_segments]
        return out


@dataclass(frozen=True)
class ItemProblem:
    """A metadata entry that gives no item to score, and why.

    Attributes:
        id: the entry's key (as :attr:`BenchmarkItem.id` would be).
        where: the metadata file and entry (``file:line`` or ``file[index]``).
        reason: ``missing_video``, ``missing_audio``, ``excluded`` or ``ambiguous``.
        detail: a sentence for the report.
        label, category: as the entry gives them (so the report can count what is missing).
    """

    id: str
    where: str
    reason: str
    detail: str
    label: int | None = None
    category: str | None = None


@dataclass
class BenchmarkSet:
    """What a reader found: the items, the problems, and the metadata files it read."""

    dataset: str
    items: list[BenchmarkItem] = field(default_factory=list)
    problems: list[ItemProblem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def check_unique_ids(self) -> None:
        seen: set[str] = set()
        for item in self.items:
            if item.id in seen:
                raise MetadataError(f"{self.dataset}: the metadata lists {item.id!r} more than once")
            seen.add(item.id)
