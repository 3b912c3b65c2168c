"""Small synthetic AV-HuBERT corpora for tests: mouth-ROI-sized clips, wavs, manifests, labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from sf_fairseq.data.manifest import (
    ManifestItem,
    format_cluster_ids,
    write_cluster_dictionary,
    write_label_lines,
    write_manifest,
)

FPS = 25
SAMPLE_RATE = 16_000


def write_clip(video_path: Path, audio_path: Path, n_frames: int, rng: np.random.Generator) -> None:
    """A 96x96 clip of a moving blob and a wav of the same duration whose loudness follows it."""
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (96, 96))
    opening = 0.5 + 0.5 * np.sin(np.arange(n_frames) * rng.uniform(0.2, 0.6))
    for t in range(n_frames):
        frame = np.full((96, 96, 3), 90, np.uint8)
        cv2.ellipse(frame, (48, 56), (22, int(3 + 12 * opening[t])), 0, 0, 360, (30, 30, 160), -1)
        writer.write(frame)
    writer.release()
    n_samples = n_frames * SAMPLE_RATE // FPS
    envelope = np.repeat(opening, SAMPLE_RATE // FPS)[:n_samples]
    carrier = np.sin(2 * np.pi * 180 * np.arange(n_samples) / SAMPLE_RATE) + 0.3 * rng.standard_normal(n_samples)
    sf.write(audio_path, (4000 * envelope * carrier).astype(np.int16), SAMPLE_RATE, subtype="PCM_16")


def write_corpus(
    root: Path,
    splits: dict[str, int],
    n_clusters: int = 10,
    frames: tuple[int, int] = (30, 60),
    seed: int = 0,
    label: str = "km",
) -> Path:
    """Write ``{split}.tsv``, ``{split}.{label}`` (25 Hz random cluster ids) and ``dict.{label}.txt``."""
    rng = np.random.default_rng(seed)
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    for split, count in splits.items():
        items, labels = [], []
        for index in range(count):
            name = f"{split}_{index:03d}"
            n_frames = int(rng.integers(*frames))
            write_clip(media / f"{name}.mp4", media / f"{name}.wav", n_frames, rng)
            items.append(ManifestItem(name, f"media/{name}.mp4", f"media/{name}.wav",
                                      n_frames, n_frames * SAMPLE_RATE // FPS))
            labels.append(format_cluster_ids(rng.integers(0, n_clusters, n_frames)))
        write_manifest(root / f"{split}.tsv", str(root), items)
        write_label_lines(root / f"{split}.{label}", labels)
    write_cluster_dictionary(root / f"dict.{label}.txt", n_clusters)
    return root
