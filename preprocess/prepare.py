"""Raw videos → 96×96 mouth-ROI videos at 25 fps, 16 kHz mono wavs, landmarks and an
AV-HuBERT manifest.

For every input video (any container and codec FFmpeg reads, any frame rate, with or without
audio) this writes, under the output folder::

    video/<id>.mp4          mouth ROI, 96×96 BGR, exactly 25 fps (one file per face track;
                            with several faces: video/<id>__track<k>.mp4, k = 0 the most seen)
    audio/<id>.wav          16 kHz mono int16, exactly n_frames × 640 samples (same duration)
    landmarks/<id>.npz      ``landmarks`` float32 [K, T, 68, 2] per track in source pixels (NaN
                            where the face was not followed), ``mouth_centres`` [K, T, 2] in
                            the 256×256 aligned frame, ``start_time`` (s, first frame)
    status/<id>.json        the item's record
    <split>.tsv             manifest of the items that succeeded (AV-HuBERT format)
    <split>.log.jsonl       one record per input for this run (<split>.log.<rank>.jsonl when
                            sharded)

Every input gets a record with a ``status``: ``ok``; ``no_face`` (no face followed on enough
frames); ``no_audio`` (no audio stream or no decodable audio: the ROI is still written, the item
stays out of the manifest); ``unreadable`` (cannot be opened or no decodable video);
``too_short`` (fewer than ``--min-frames`` frames at 25 fps); ``error`` (an unexpected failure,
with the exception). Bad input never stops the batch. Files are written to temporary names and
renamed into place, the status file last, so a killed run leaves no half-written output and a
rerun skips every input that has a status file (``error`` ones are retried; ``--retry-failed``
retries every status except ``ok``). The exit status is 0 when every input is ``ok``, else 1.

Pipeline per video (two streaming passes, memory independent of the video's length):
pass 1 decodes grayscale frames resampled to 25 fps by timestamps and follows every face with
dlib (detection every ``--detect-every`` frames on a downscaled frame, 68 landmarks on every
frame); the landmarks are interpolated, smoothed and aligned to the mean face
(:mod:`.mouth_align`); pass 2 decodes colour frames again and writes the crops.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import soundfile as sf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sf_fairseq.data.manifest import ManifestItem, write_manifest

from .faces import FaceDetector, FaceTrack, FaceTracker, LandmarkPredictor
from .mean_face import load_mean_face
from .media import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    TARGET_FPS,
    FrameStream,
    RoiWriter,
    UnreadableMediaError,
    has_audio_stream,
    write_aligned_audio,
)
from .mouth_align import CROP_SIZE, crop_mouth, mouth_crop_matrices

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".ts"}
)
STATUSES = ("ok", "no_face", "no_audio", "unreadable", "too_short", "error")


@dataclass(frozen=True)
class InputItem:
    id: str  # output name: input path relative to the input root, without extension
    path: str


@dataclass(frozen=True)
class PrepareOptions:
    """Per-video settings (see the CLI help for each)."""

    detect_every: int = 10
    detect_size: int = 320
    upsample: int = 1
    cnn_detector: bool = False
    min_frames: int = 12
    min_track_fraction: float = 0.25


class ItemFailed(Exception):
    """An input that cannot be processed for a known reason (``status`` says which)."""

    def __init__(self, status: str, reason: str, result: dict | None = None):
        super().__init__(reason)
        self.status = status
        self.result = result or {}  # what was learned or written before the failure


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _track_id(item_id: str, rank: int, n_tracks: int) -> str:
    return item_id if n_tracks == 1 else f"{item_id}__track{rank}"


def select_tracks(
    tracks: list[FaceTrack], n_frames: int, min_fraction: float
) -> list[FaceTrack]:
    """Tracks followed on at least ``min_fraction`` of the frames, most-seen (then largest)
    first."""

    def size(track: FaceTrack) -> float:
        extent = track.landmarks.max(axis=1) - track.landmarks.min(axis=1)
        return float(np.median(extent.max(axis=1)))

    kept = [t for t in tracks if len(t.frames) >= min_fraction * n_frames]
    return sorted(kept, key=lambda t: (-len(t.frames), -size(t)))


def roi_frame_count(path: str | os.PathLike) -> tuple[int, float]:
    """(frame count, fps) of a written ROI video as OpenCV (and so the training loader) sees
    them."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0, 0.0
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()


class VideoPreprocessor:
    """Turns one video into ROI video(s), a wav, landmarks and a status record."""

    def __init__(self, options: PrepareOptions = PrepareOptions()):
        self.options = options
        self.detector = FaceDetector(options.detect_size, options.upsample, options.cnn_detector)
        self.predictor = LandmarkPredictor()
        self.mean_face = load_mean_face()

    def process(self, item: InputItem, out_dir: str | os.PathLike) -> dict:
        """Process ``item`` into ``out_dir`` and return its record (also saved as
        ``status/<id>.json``). Never raises for bad input."""
        out_dir = Path(out_dir)
        start = time.perf_counter()
        record: dict = {"id": item.id, "input": item.path, "status": "ok", "reason": ""}
        try:
            record.update(self._process(item, out_dir))
        except ItemFailed as failure:
            record.update(failure.result, status=failure.status, reason=str(failure))
        except UnreadableMediaError as err:
            record.update(status="unreadable", reason=str(err))
        except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
            logger.exception("%s: unexpected failure", item.path)
            record.update(status="error", reason=f"{type(err).__name__}: {err}")
        record["seconds"] = round(time.perf_counter() - start, 3)
        status_path = out_dir / "status" / f"{item.id}.json"
        status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_path(status_path)
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, status_path)
        return record

    def _process(self, item: InputItem, out_dir: Path) -> dict:
        opts = self.options
        # Pass 1: landmarks for every face on every 25 fps frame.
        tracker = FaceTracker(self.detector, self.predictor, detect_every=opts.detect_every)
        frames = FrameStream(item.path, "gray")
        for gray in frames:
            tracker.update(gray)
        info = frames.info
        result: dict = {
            "n_frames": info.n_frames,
            "source_fps": round(info.source_fps, 3),
            "width": info.width,
            "height": info.height,
            "notes": [],
        }
        if info.decode_error:
            result["notes"].append(info.decode_error)
        if info.n_frames < opts.min_frames:
            raise ItemFailed(
                "too_short",
                f"{info.n_frames} frames at 25 fps, --min-frames is {opts.min_frames}",
                result,
            )
        all_tracks = tracker.tracks()
        tracks = select_tracks(all_tracks, info.n_frames, opts.min_track_fraction)
        if not tracks:
            best = max((len(t.frames) for t in all_tracks), default=0)
            raise ItemFailed(
                "no_face",
                f"no face followed on at least {opts.min_track_fraction:.0%} of the "
                f"{info.n_frames} frames (longest track: {best} frames)",
                result,
            )
        landmarks = np.stack([t.dense(info.n_frames) for t in tracks])  # [K, T, 68, 2]
        aligned = [mouth_crop_matrices(lm, self.mean_face) for lm in landmarks]

        # Audio on the video's clock, exactly n_frames * 640 samples.
        n_samples = info.n_frames * SAMPLES_PER_FRAME
        wav_path = out_dir / "audio" / f"{item.id}.wav"
        wav_tmp = _temp_path(wav_path)
        audio_problem = None
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not has_audio_stream(item.path):
                audio_problem = "no audio stream"
            else:
                audio = write_aligned_audio(item.path, wav_tmp, info.start_time, n_samples)
                result.update(
                    n_samples=n_samples,
                    source_sample_rate=audio.source_rate,
                    source_channels=audio.source_channels,
                    audio_offset_s=round(audio.offset_samples / SAMPLE_RATE, 4),
                )
                if audio.peak == 0:
                    result["notes"].append("silent audio (all samples are zero)")
                if audio.n_decoded < 0.9 * n_samples:
                    result["notes"].append(
                        f"audio covers {audio.n_decoded / SAMPLE_RATE:.2f} s of the "
                        f"{n_samples / SAMPLE_RATE:.2f} s video; the rest is silence"
                    )
        except UnreadableMediaError as err:
            audio_problem = str(err)
        if audio_problem:
            wav_tmp.unlink(missing_ok=True)

        # Pass 2: the crops, one ROI video per track.
        outputs = []
        writers: list[RoiWriter] = []
        try:
            for k, track in enumerate(tracks):
                track_id = _track_id(item.id, k, len(tracks))
                path = out_dir / "video" / f"{track_id}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                writers.append(RoiWriter(_temp_path(path), CROP_SIZE, CROP_SIZE))
                outputs.append(
                    {
                        "track": k,
                        "id": track_id,
                        "video": f"video/{track_id}.mp4",
                        "face_frames": int(len(track.frames)),
                    }
                )
            for t, bgr in enumerate(FrameStream(item.path, "bgr24", max_frames=info.n_frames)):
                for writer, (matrices, _) in zip(writers, aligned):
                    writer.write(crop_mouth(bgr, matrices[t]))
            for writer in writers:
                writer.close()
        except BaseException:
            for writer in writers:
                writer.path.unlink(missing_ok=True)
            wav_tmp.unlink(missing_ok=True)
            raise
        for writer, output in zip(writers, outputs):
            n, fps = roi_frame_count(writer.path)
            if n != info.n_frames or round(fps) != TARGET_FPS:
                writer.path.unlink(missing_ok=True)
                raise RuntimeError(
                    f"written ROI reads back as {n} frames at {fps} fps, "
                    f"expected {info.n_frames} at {TARGET_FPS}"
                )

        lm_path = out_dir / "landmarks" / f"{item.id}.npz"
        lm_path.parent.mkdir(parents=True, exist_ok=True)
        lm_tmp = _temp_path(lm_path)
        with open(lm_tmp, "wb") as f:
            np.savez_compressed(
                f,
                landmarks=landmarks,
                mouth_centres=np.stack([centres for _, centres in aligned]).astype(np.float32),
                fps=np.float64(TARGET_FPS),
                start_time=np.float64(info.start_time),
            )
        os.replace(lm_tmp, lm_path)
        for writer, output in zip(writers, outputs):
            os.replace(writer.path, out_dir / output["video"])
        result.update(landmarks=f"landmarks/{item.id}.npz", tracks=outputs)
        if audio_problem:
            raise ItemFailed("no_audio", audio_problem, result)
        os.replace(wav_tmp, wav_path)
        result["audio"] = f"audio/{item.id}.wav"
        return result


# ---- inputs, sharding, resume ----------------------------------------------------------------


def discover_inputs(
    source: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[InputItem]:
    """Inputs from a directory (searched recursively for video extensions) or a list file (one
    path per line; blank lines and ``#`` comments skipped; relative paths are relative to
    ``root``, by default the list file's folder). Ids are paths relative to the directory (or
    root) without extension. Sorted by id; raises ``ValueError`` on duplicate ids."""
    source = Path(source)
    if source.is_dir():
        base = Path(root) if root is not None else source
        paths = sorted(
            p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        )
    elif source.is_file():
        base = Path(root) if root is not None else source.parent
        lines = source.read_text(encoding="utf-8").splitlines()
        paths = [base / line.strip() for line in lines if line.strip() and not line.startswith("#")]
    else:
        raise FileNotFoundError(f"{source}: no such directory or list file")
    base = base.resolve()
    items: dict[str, InputItem] = {}
    for path in paths:
        path = path.resolve()
        try:
            rel = path.relative_to(base)
        except ValueError:
            rel = path.relative_to(path.anchor)
        item_id = rel.with_suffix("").as_posix()
        if item_id in items:
            raise ValueError(
                f"two inputs give the output id {item_id!r}: {items[item_id].path} and {path}"
            )
        items[item_id] = InputItem(item_id, str(path))
    return sorted(items.values(), key=lambda it: it.id)


def shard(items: list[InputItem], nshard: int, rank: int) -> list[InputItem]:
    """The ``rank``-th of ``nshard`` contiguous, near-equal parts of ``items``."""
    if not 0 <= rank < nshard:
        raise ValueError(f"--rank must be in [0, {nshard}), got {rank}")
    per_shard = -(-len(items) // nshard)
    return items[rank * per_shard:(rank + 1) * per_shard]


def read_status(out_dir: Path, item_id: str) -> dict | None:
    path = out_dir / "status" / f"{item_id}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _is_finished(record: dict | None, out_dir: Path, retry_failed: bool) -> bool:
    if record is None or record["status"] == "error":
        return False
    if record["status"] != "ok":
        return not retry_failed
    paths = [record["audio"], record["landmarks"]] + [t["video"] for t in record["tracks"]]
    return all((out_dir / p).is_file() for p in paths)


# ---- worker pool -----------------------------------------------------------------------------

_worker: VideoPreprocessor | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _worker
    cv2.setNumThreads(1)  # parallelism comes from the pool
    _worker = VideoPreprocessor(options)


def _run_in_worker(job: tuple[InputItem, str]) -> dict:
    item, out_dir = job
    return _worker.process(item, out_dir)


def process_items(
    items: list[InputItem], out_dir: Path, options: PrepareOptions, workers: int = 1
) -> Iterator[dict]:
    """Process ``items``, yielding records as they finish (any order with ``workers > 1``)."""
    if workers <= 1 or len(items) <= 1:
        preprocessor = VideoPreprocessor(options)
        for item in items:
            yield preprocessor.process(item, out_dir)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(items)), _init_worker, (options,)) as pool:
        yield from pool.imap_unordered(_run_in_worker, [(it, str(out_dir)) for it in items])


# ---- manifest --------------------------------------------------------------------------------


def manifest_items(out_dir: Path, item_ids: Iterable[str]) -> tuple[list[ManifestItem], int]:
    """Manifest rows for the ``ok`` items among ``item_ids`` (one per face track), with frame
    and sample counts checked against the files on disk. Returns (rows, items not ready)."""
    rows, pending = [], 0
    for item_id in item_ids:
        record = read_status(out_dir, item_id)
        if record is None or record["status"] != "ok":
            pending += record is None
            continue
        audio = out_dir / record["audio"]
        n_samples = sf.info(str(audio)).frames
        if n_samples != record["n_samples"]:
            raise RuntimeError(
                f"{audio}: {n_samples} samples, its record says {record['n_samples']}"
            )
        for track in record["tracks"]:
            n_frames, _ = roi_frame_count(out_dir / track["video"])
            if n_frames != record["n_frames"]:
                raise RuntimeError(
                    f"{out_dir / track['video']}: {n_frames} frames, its record says "
                    f"{record['n_frames']}"
                )
            rows.append(
                ManifestItem(track["id"], track["video"], record["audio"], n_frames, n_samples)
            )
    return rows, pending


def write_split_manifest(
    out_dir: Path, split: str, item_ids: Iterable[str], writer: str = ""
) -> int:
    """Write ``<split>.tsv`` (root = ``out_dir``, relative paths) for the ``ok`` items among
    ``item_ids`` and return its row count. ``writer`` (e.g. the shard rank) names the
    temporary file, so shards finishing together cannot mix their writes."""
    rows, pending = manifest_items(out_dir, item_ids)
    staged = out_dir / f".{split}.tsv.{writer or os.getpid()}"
    write_manifest(staged, str(out_dir.resolve()), rows)
    os.replace(staged, out_dir / f"{split}.tsv")
    if pending:
        logger.info("%d inputs have no record yet (other shards still running?)", pending)
    return len(rows)


# ---- CLI -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sf_fairseq.preprocess.prepare",
        description=(
            "Raw videos -> 96x96 mouth-ROI videos at 25 fps, 16 kHz mono wavs, landmarks, "
            "status records and an AV-HuBERT manifest <split>.tsv. Reruns skip finished inputs."
        ),
        epilog=(
            "Outputs under OUT_DIR: video/<id>.mp4 (video/<id>__track<k>.mp4 with several "
            "faces), audio/<id>.wav, landmarks/<id>.npz, status/<id>.json, <split>.tsv, "
            "<split>.log.jsonl. Statuses: ok, no_face, no_audio, unreadable, too_short, error. "
            "Exit status 1 if any input is not ok. With --nshard N run ranks 0..N-1 (e.g. a job "
            "array); each writes the manifest of every item finished so far, so the last to end "
            "writes the full one (or rerun any rank with --manifest-only)."
        ),
    )
    parser.add_argument("inputs", help="directory searched recursively for videos, or a list "
                        "file with one video path per line")
    parser.add_argument("out_dir", help="output folder")
    parser.add_argument("--root", help="folder that relative paths in a list file (and output "
                        "ids) are relative to (default: the list file's folder)")
    parser.add_argument("--split", default="test", help="manifest name: <split>.tsv "
                        "(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes "
                        "(default: %(default)s)")
    parser.add_argument("--nshard", type=int, default=1, help="split the inputs into this many "
                        "shards (default: %(default)s)")
    parser.add_argument("--rank", type=int, default=0, help="which shard to process, "
                        "0-based (default: %(default)s)")
    parser.add_argument("--detect-every", type=int, default=PrepareOptions.detect_every,
                        help="run the face detector every N frames and follow faces with "
                        "landmarks in between; 1 detects on every frame as the reference "
                        "does (default: %(default)s)")
    parser.add_argument("--detect-size", type=int, default=PrepareOptions.detect_size,
                        help="downscale frames so the longer side is at most this many pixels "
                        "before detection (default: %(default)s)")
    parser.add_argument("--upsample", type=int, default=PrepareOptions.upsample,
                        help="detector pyramid upsamplings; each finds faces half as large "
                        "and costs ~4x (default: %(default)s)")
    parser.add_argument("--cnn-detector", action="store_true", help="where the HOG detector "
                        "finds nothing, try dlib's CNN detector (slow on CPU)")
    parser.add_argument("--min-frames", type=int, default=PrepareOptions.min_frames,
                        help="inputs shorter than this many 25 fps frames are 'too_short' "
                        "(default: %(default)s)")
    parser.add_argument("--min-track-fraction", type=float,
                        default=PrepareOptions.min_track_fraction,
                        help="keep faces followed on at least this fraction of the frames "
                        "(default: %(default)s)")
    parser.add_argument("--retry-failed", action="store_true", help="reprocess inputs whose "
                        "record is not ok (by default only 'error' records are retried)")
    parser.add_argument("--manifest-only", action="store_true", help="process nothing; "
                        "rewrite <split>.tsv from the records on disk")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq installs a DEBUG root handler, which would flood the console.
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    out_dir = Path(args.out_dir).resolve()
    try:
        items = discover_inputs(args.inputs, args.root)
        mine = shard(items, args.nshard, args.rank)
    except (OSError, ValueError) as err:
        logger.error("%s", err)
        return 2
    if args.detect_every < 1 or args.workers < 1 or args.min_frames < 1:
        logger.error("--detect-every, --workers and --min-frames must be >= 1")
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.manifest_only:
        n = write_split_manifest(out_dir, args.split, (it.id for it in items))
        logger.info("wrote %s with %d rows", out_dir / f"{args.split}.tsv", n)
        return 0
    options = PrepareOptions(
        detect_every=args.detect_every,
        detect_size=args.detect_size,
        upsample=args.upsample,
        cnn_detector=args.cnn_detector,
        min_frames=args.min_frames,
        min_track_fraction=args.min_track_fraction,
    )
    suffix = "" if args.nshard == 1 else f".{args.rank}"
    log_path = out_dir / f"{args.split}.log{suffix}.jsonl"
    todo, counts = [], Counter()
    with open(log_path, "a", encoding="utf-8") as log:

        def emit(record: dict) -> None:
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            log.flush()
            counts[record["status"]] += 1

        for item in mine:
            record = read_status(out_dir, item.id)
            if _is_finished(record, out_dir, args.retry_failed):
                emit({**record, "resumed": True})
            else:
                todo.append(item)
        if len(todo) < len(mine):
            logger.info("resuming: %d of %d inputs already done", len(mine) - len(todo), len(mine))
        with logging_redirect_tqdm(), tqdm(
            total=len(todo), unit="video", desc=f"prepare {args.split}"
        ) as progress:
            for record in process_items(todo, out_dir, options, args.workers):
                emit(record)
                if record["status"] != "ok":
                    logger.warning(
                        "%s: %s: %s", record["input"], record["status"], record["reason"]
                    )
                progress.update()
                progress.set_postfix(failed=sum(counts.values()) - counts["ok"])
    n_rows = write_split_manifest(
        out_dir, args.split, (it.id for it in items), writer=f"rank{args.rank}"
    )
    failed = len(mine) - counts["ok"]
    detail = ", ".join(f"{s}={counts[s]}" for s in STATUSES[1:] if counts[s])
    logger.info(
        "%d inputs: %d ok, %d failed%s; manifest %s has %d rows; log %s",
        len(mine), counts["ok"], failed, f" ({detail})" if detail else "",
        out_dir / f"{args.split}.tsv", n_rows, log_path,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
