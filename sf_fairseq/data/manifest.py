"""AV-HuBERT manifests and label files: the one place that reads and writes them.

A manifest ``{split}.tsv`` has a root line, then one tab-separated line per item::

    /root
    id<TAB>video_path<TAB>audio_path<TAB>n_video_frames<TAB>n_audio_samples

Paths are relative to the root unless absolute. Labels ``{split}.{label}`` hold one line per
manifest item (space-separated ids, or text for sequence labels); ``dict.{label}.txt`` is a
fairseq dictionary file (``symbol count`` per line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..resume import atomic_path


@dataclass(frozen=True)
class ManifestItem:
    """One row of a manifest. ``video``/``audio`` are as written (maybe relative to the root)."""

    id: str
    video: str
    audio: str
    n_video_frames: int
    n_audio_samples: int


@dataclass(frozen=True)
class Manifest:
    root: str
    items: list[ManifestItem]

    def resolve(self, path: str) -> str:
        """Absolute path of a ``video``/``audio`` column value."""
        return path if os.path.isabs(path) else os.path.join(self.root, path)

    def __len__(self) -> int:
        return len(self.items)


class ManifestError(ValueError):
    """A manifest or label file does not follow the format."""


def read_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if not lines:
        raise ManifestError(f"{path}: empty manifest (expected a root line)")
    items = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ManifestError(
                f"{path}:{lineno}: expected 5 tab-separated fields "
                f"(id, video, audio, n_video_frames, n_audio_samples), got {len(fields)}"
            )
        try:
            n_frames, n_samples = int(fields[3]), int(fields[4])
        except ValueError as err:
            raise ManifestError(f"{path}:{lineno}: frame/sample counts must be integers") from err
        items.append(ManifestItem(fields[0], fields[1], fields[2], n_frames, n_samples))
    return Manifest(root=lines[0].strip(), items=items)


def write_manifest(path: str | os.PathLike, root: str, items: Iterable[ManifestItem]) -> None:
    """Write atomically (a temporary file renamed into place)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{root}\n")
        for item in items:
            for field in (item.id, item.video, item.audio):
                if "\t" in field or "\n" in field:
                    raise ManifestError(f"tab or newline in manifest field {field!r}")
            f.write(
                f"{item.id}\t{item.video}\t{item.audio}\t"
                f"{item.n_video_frames}\t{item.n_audio_samples}\n"
            )


def read_label_lines(path: str | os.PathLike) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def write_label_lines(path: str | os.PathLike, lines: Iterable[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(f"{line}\n")


def write_cluster_dictionary(path: str | os.PathLike, n_clusters: int, count: int = 1) -> None:
    """``dict.{label}.txt`` for cluster ids ``0 .. n_clusters-1``; every id is listed (the
    reference README's ``seq 1 K-1`` drops id 0, which then maps to ``<unk>``)."""
    write_label_lines(path, (f"{k} {count}" for k in range(n_clusters)))


def format_cluster_ids(ids: Sequence[int]) -> str:
    return " ".join(str(int(i)) for i in ids)
