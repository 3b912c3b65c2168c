"""Packed ROI clips: a manifest split's decoded grey frames and wav samples, ready to read.

Decoding H.264 mouth ROIs is most of a training data-loading worker's time. ``sf-pack-roi``
decodes a split once, exactly as the dataset does (:func:`~.video.load_video_frames`,
:func:`~.audio_io.read_wav_checked`), and writes beside each other in one folder::

    {split}.video.u8     uint8 frames of all clips, [T, H, W] each, back to back
    {split}.audio.bin    samples of all clips (int16, or float32 for 24/32-bit/float wavs)
    {split}.index.json   format version, the manifest's SHA-256, the decoder, and per clip:
                         id, byte offsets, shape, sample dtype and the sources' SHA-256

The dataset reads them memory-mapped (``packed_dir``): the same uint8 frames and samples as
decoding the sources on the packing machine, so the same batches for the same seed, at a
disk cost of ``H * W`` bytes per frame (9,216 for 96x96 ROIs, 0.83 GB per hour at 25 fps)
plus 1,280 bytes per frame of int16 audio (0.12 GB per hour).

The index is tied to the manifest it was packed from: a dataset refuses a pack whose manifest
hash, item ids or file sizes differ (repack after changing the manifest). Sources are hashed
when packing; ``sf-pack-roi --verify`` re-hashes them to find clips changed since.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..resume import file_sha256

FORMAT_VERSION = 1
AUDIO_DTYPES = ("int16", "float32")


class PackedError(ValueError):
    """A packed folder is missing, incomplete or was packed from another manifest."""


@dataclass(frozen=True)
class PackedClip:
    """One clip's place in the packed files and the hashes of its sources."""

    id: str
    video_offset: int
    shape: tuple[int, int, int]
    audio_offset: int
    n_samples: int
    audio_dtype: str
    video_sha256: str
    audio_sha256: str

    @property
    def video_bytes(self) -> int:
        return int(np.prod(self.shape))

    @property
    def audio_bytes(self) -> int:
        return self.n_samples * np.dtype(self.audio_dtype).itemsize


def packed_paths(directory: str | os.PathLike, split: str) -> dict[str, Path]:
    """Paths of a split's three packed files."""
    directory = Path(directory)
    return {"video": directory / f"{split}.video.u8", "audio": directory / f"{split}.audio.bin",
            "index": directory / f"{split}.index.json"}


def index_record(manifest_path: str | os.PathLike, decoder: str, clips: list[PackedClip]
                 ) -> dict[str, Any]:
    """The JSON object of ``{split}.index.json``."""
    return {"format_version": FORMAT_VERSION, "manifest_sha256": file_sha256(manifest_path),
            "decoder": decoder, "clips": [asdict(clip) for clip in clips]}


class PackedSplit:
    """Read access to one packed split. The files are memory-mapped on first use in each
    process (data-loader workers map their own; nothing large is pickled)."""

    def __init__(self, directory: str | os.PathLike, split: str):
        self.paths = packed_paths(directory, split)
        if not self.paths["index"].is_file():
            raise PackedError(f"no packed split {split!r} in {directory} (missing "
                              f"{self.paths['index'].name}; run sf-pack-roi)")
        with open(self.paths["index"], encoding="utf-8") as f:
            index = json.load(f)
        if index.get("format_version") != FORMAT_VERSION:
            raise PackedError(f"{self.paths['index']}: format version "
                              f"{index.get('format_version')!r}, this code reads "
                              f"{FORMAT_VERSION} (repack with sf-pack-roi)")
        self.manifest_sha256: str = index["manifest_sha256"]
        self.decoder: str = index["decoder"]
        self.clips = [PackedClip(**{**c, "shape": tuple(c["shape"])}) for c in index["clips"]]
        for kind, needed in (("video", sum(c.video_bytes for c in self.clips)),
                             ("audio", sum(c.audio_bytes for c in self.clips))):
            size = self.paths[kind].stat().st_size if self.paths[kind].is_file() else None
            if size != needed:
                raise PackedError(f"{self.paths[kind]}: {size} bytes, the index needs {needed} "
                                  f"(incomplete pack; rerun sf-pack-roi)")
        self._maps: dict[str, np.ndarray] | None = None

    def check_manifest(self, manifest_path: str | os.PathLike, ids: list[str]) -> None:
        """Refuse a pack made from another manifest than ``manifest_path`` (items ``ids``)."""
        if file_sha256(manifest_path) != self.manifest_sha256:
            raise PackedError(f"{self.paths['index']} was packed from another version of "
                              f"{manifest_path} (manifest SHA-256 differs); rerun sf-pack-roi")
        if [c.id for c in self.clips] != list(ids):
            raise PackedError(f"{self.paths['index']}: clip ids differ from {manifest_path}")

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def _map(self, kind: str) -> np.ndarray:
        if self._maps is None:
            self._maps = {k: (np.memmap(self.paths[k], np.uint8, "r")
                              if self.paths[k].stat().st_size else np.empty(0, np.uint8))
                          for k in ("video", "audio")}
        return self._maps[kind]

    def video(self, index: int) -> np.ndarray:
        """uint8 ``[T, H, W]`` of clip ``index`` (a read-only view of the mapped file)."""
        clip = self.clips[index]
        data = self._map("video")[clip.video_offset:clip.video_offset + clip.video_bytes]
        return np.asarray(data).reshape(clip.shape)

    def audio(self, index: int) -> np.ndarray:
        """Samples ``[n]`` of clip ``index`` as :func:`~.audio_io.read_wav_checked` returned
        them (a writable copy)."""
        clip = self.clips[index]
        data = self._map("audio")[clip.audio_offset:clip.audio_offset + clip.audio_bytes]
        return np.frombuffer(data, dtype=clip.audio_dtype).copy()
