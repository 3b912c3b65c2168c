"""``sf-pack-roi``: pack a manifest split's mouth ROIs and wavs for fast training input.

Decodes every clip of ``{data}/{split}.tsv`` once, as the training dataset does, and writes the
grey frames and samples into ``{out}/{split}.video.u8``, ``{split}.audio.bin`` and
``{split}.index.json`` (see :mod:`sf_fairseq.data.packed`). Train with
``task.packed_dir={out}``: same batches as from the mp4s, without decoding::

    sf-pack-roi --data /data/lrs3/433h --split train valid --out /data/lrs3/433h/packed
    sf-pack-roi --data /data/lrs3/433h --split train --out /data/lrs3/433h/packed --verify

Disk cost: 9,216 bytes per 96x96 frame plus 1,280 of int16 audio, about 0.94 GB per hour.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2

from sf_fairseq._logging import LOG_FORMAT, command_logging
from sf_fairseq.data.audio_io import read_wav_checked
from sf_fairseq.data.manifest import read_manifest
from sf_fairseq.data.packed import (
    AUDIO_DTYPES,
    PackedClip,
    PackedError,
    PackedSplit,
    index_record,
    packed_paths,
)
from sf_fairseq.data.rates import SAMPLE_RATE
from sf_fairseq.data.video import load_video_frames
from sf_fairseq.resume import atomic_path, atomic_write_text, file_sha256

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackStats:
    n_items: int
    n_frames: int
    n_bytes: int


def decoder_name() -> str:
    """What decoded the frames: packed frames equal this decoder's output."""
    return f"opencv {cv2.__version__} ffmpeg, COLOR_BGR2GRAY"


def pack_split(manifest_path: str | os.PathLike, out_dir: str | os.PathLike) -> PackStats:
    """Pack every item of ``manifest_path`` (``{split}.tsv``) into ``out_dir``; the files
    appear complete or not at all (the index last)."""
    manifest_path = Path(manifest_path)
    split = manifest_path.stem
    manifest = read_manifest(manifest_path)
    paths = packed_paths(out_dir, split)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # No index may describe data files while they are replaced.
    paths["index"].unlink(missing_ok=True)
    clips = []
    video_offset = audio_offset = n_frames = 0
    with atomic_path(paths["video"]) as video_tmp, atomic_path(paths["audio"]) as audio_tmp, \
            open(video_tmp, "wb") as video_out, open(audio_tmp, "wb") as audio_out:
        for k, item in enumerate(manifest.items):
            video_path, audio_path = manifest.resolve(item.video), manifest.resolve(item.audio)
            frames = load_video_frames(video_path)
            samples = read_wav_checked(audio_path, SAMPLE_RATE)
            if samples.dtype.name not in AUDIO_DTYPES:
                raise PackedError(f"{audio_path}: unexpected sample type {samples.dtype}")
            video_out.write(frames.tobytes())
            audio_out.write(samples.tobytes())
            clips.append(PackedClip(item.id, video_offset, tuple(frames.shape), audio_offset,
                                    len(samples), samples.dtype.name, file_sha256(video_path),
                                    file_sha256(audio_path)))
            video_offset += frames.nbytes
            audio_offset += samples.nbytes
            n_frames += len(frames)
            if (k + 1) % 1000 == 0:
                logger.info("%s: packed %d of %d clips", split, k + 1, len(manifest))
    # The index is written after the data files are in place: an index always has its data.
    record = index_record(manifest_path, decoder_name(), clips)
    atomic_write_text(paths["index"], json.dumps(record, separators=(",", ":")) + "\n")
    stats = PackStats(len(clips), n_frames, video_offset + audio_offset)
    logger.info("%s: %d clips, %d frames, %.1f MiB in %s (%.0f bytes per frame)", split,
                stats.n_items, stats.n_frames, stats.n_bytes / 2**20, out_dir,
                stats.n_bytes / max(stats.n_frames, 1))
    return stats


def verify_split(manifest_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Ids of the clips whose source files changed since they were packed (re-hashed)."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    packed = PackedSplit(out_dir, manifest_path.stem)
    packed.check_manifest(manifest_path, [item.id for item in manifest.items])
    changed = []
    for item, clip in zip(manifest.items, packed.clips):
        if (file_sha256(manifest.resolve(item.video)) != clip.video_sha256
                or file_sha256(manifest.resolve(item.audio)) != clip.audio_sha256):
            changed.append(item.id)
    return changed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sf-pack-roi",
        description="Decode a manifest split's mouth-ROI videos and wavs once into memory-mapped "
                    "files the training dataset reads instead (task.packed_dir). Costs 9,216 "
                    "bytes per 96x96 frame + 1,280 bytes of int16 audio (about 0.94 GB per hour).",
    )
    parser.add_argument("--data", required=True, type=Path, help="folder with {split}.tsv")
    parser.add_argument("--split", nargs="+", required=True, help="split names, e.g. train valid")
    parser.add_argument("--out", required=True, type=Path, help="output folder (task.packed_dir)")
    parser.add_argument("--verify", action="store_true",
                        help="do not pack: re-hash the sources and list clips changed since packing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging(LOG_FORMAT):
        status = 0
        for split in args.split:
            manifest = args.data / f"{split}.tsv"
            try:
                if args.verify:
                    changed = verify_split(manifest, args.out)
                    if changed:
                        logger.error("%s: %d clips changed since packing, e.g. %s; repack", split,
                                     len(changed), ", ".join(changed[:5]))
                        status = 1
                    else:
                        logger.info("%s: all sources match the pack", split)
                else:
                    pack_split(manifest, args.out)
            except (OSError, ValueError) as err:
                logger.error("%s", err)
                return 1
        return status


if __name__ == "__main__":
    raise SystemExit(main())
