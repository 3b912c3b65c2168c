"""The project's H.264 files are a function of their frames alone, whatever the process did
before (x264's AVX-512 code is not: see ``sf_fairseq.preprocess.h264``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from sf_fairseq.preprocess import h264
from sf_fairseq.preprocess.media import RoiWriter
from sf_fairseq.preprocess.synthetic.clips import write_mp4


def breathing_blob(n_frames: int = 50, size: int = 96) -> np.ndarray:
    """``uint8 [T, size, size, 3]``: a bright ellipse growing and shrinking on grey. On the
    AVX-512 host where the defect was found, five writes of these frames in one process gave
    five different files before the fix."""
    t = np.arange(n_frames)[:, None, None]
    y, x = np.mgrid[0:size, 0:size]
    radius = 20 + 10 * np.sin(t / 4)
    grey = 120 + 80 * np.exp(-((x - size / 2) ** 2 + ((y - 0.6 * size) / 0.5) ** 2) / (2 * radius**2))
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _dirty_the_heap() -> None:
    """Allocate and free memory full of random bytes, as a long-running process has."""
    junk = [np.random.default_rng(i).bytes(1 << 16) for i in range(64)]
    del junk


def hashes_of_repeated_writes(write: Callable[[Path], None], folder: Path, times: int) -> list[str]:
    """SHA-256 of the files ``write`` makes ``times`` times in this process, the heap dirtied
    before each."""
    hashes = []
    for i in range(times):
        _dirty_the_heap()
        path = folder / f"written{i}.mp4"
        write(path)
        hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return hashes


def test_roi_writer_writes_the_same_bytes_every_time(tmp_path: Path) -> None:
    frames = breathing_blob()

    def write(path: Path) -> None:
        with RoiWriter(path, 96, 96) as writer:
            for frame in frames:
                writer.write(frame)

    hashes = hashes_of_repeated_writes(write, tmp_path, times=5)
    assert len(set(hashes)) == 1, hashes


def test_corpus_clips_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    frames, audio = breathing_blob(), np.zeros(16000 * 2, dtype=np.int16)
    hashes = hashes_of_repeated_writes(lambda path: write_mp4(path, frames, audio, size=(96, 96)),
                                       tmp_path, times=4)
    assert len(set(hashes)) == 1, hashes


@pytest.mark.parametrize(
    "features, limited",
    [
        ({"AVX2", "AVX512F", "AVX512BW"}, True),
        ({"AVX2", "FMA3"}, False),
        ({"AVX512F"}, False),  # never select AVX2 code on a CPU that lacks it
        (set(), False),
    ],
)
def test_x264_is_limited_to_avx2_only_on_avx512_cpus(monkeypatch, features, limited) -> None:
    monkeypatch.setattr(h264, "_cpu_features", lambda: features)
    h264.cpu_has_avx512.cache_clear()
    try:
        options = h264.libx264_options(18, "medium", threads=0)
    finally:
        h264.cpu_has_avx512.cache_clear()
    assert options["crf"] == "18" and options["preset"] == "medium" and options["threads"] == "0"
    assert options.get("x264-params") == ("asm=AVX2" if limited else None)


def test_perturbed_copies_are_the_same_bytes_every_time(tmp_path: Path) -> None:
    from sf_fairseq.eval.perturb_engine import PerturbOptions, _reencode_video

    source = tmp_path / "source.mp4"
    write_mp4(source, breathing_blob(), np.zeros(16000 * 2, dtype=np.int16), size=(96, 96))
    copies = tmp_path / "copies"
    copies.mkdir()
    hashes = hashes_of_repeated_writes(
        lambda path: _reencode_video(str(source), path, None, crf=18, options=PerturbOptions()), copies, times=4)
    assert len(set(hashes)) == 1, hashes
