"""The preprocessing engine of ``sf-prepare`` (:mod:`.prepare`, the command): raw videos →
96×96 mouth-ROI videos at 25 fps, 16 kHz mono wavs, landmarks and an AV-HuBERT manifest.

:class:`VideoPreprocessor` handles one video; :func:`run` a folder or list of them
(:class:`PrepareJob` → :class:`PrepareSummary`).

For every input video (any container and codec FFmpeg reads, any frame rate, with or without
audio) this writes, under the output folder::

    video/<id>.mp4          mouth ROI, 96×96 BGR, exactly 25 fps (one file per face track;
                            with several faces: video/<id>__track<k>.mp4, k = 0 the most seen)
    audio/<id>.wav          16 kHz mono int16, exactly n_frames × 640 samples (same duration)
    landmarks/<id>.npz      ``landmarks`` float32 [K, T, 68, 2] per track in pixels of the
                            upright frame (NaN where the face was not followed),
                            ``mouth_centres`` [K, T, 2] in the 256×256 aligned frame,
                            ``start_time`` (s, first frame)
    status/<id>.json        the item's record
    <split>.tsv             manifest of the items that succeeded (AV-HuBERT format)
    <split>.log.jsonl       one record per input of this run, rewritten by every run
                            (<split>.log.<rank>.jsonl when sharded)
    prepare_settings.json   the settings the outputs were made with

Ids are input paths relative to the input folder (or ``--root``) without the extension; inputs
that would share an id (``a.mp4`` and ``a.mkv``) keep their extension in it (``a.mp4``,
``a.mkv``). An output folder inside the input folder is not searched.

Every input gets a record with a ``status``: ``ok``; ``no_face`` (no face followed on enough
frames); ``no_audio`` (no audio stream or no decodable audio: the ROI is still written, the item
stays out of the manifest); ``unreadable`` (no such file, not a file, cannot be opened or no
decodable video); ``too_short`` (fewer than ``--min-frames`` frames at 25 fps); ``truncated``
(the video or audio decodes to less than the container states, by more than the larger of
0.5 s and 2 % of the stated duration, as a partial download does: every output is written but
the item stays out of the manifest unless ``--keep-truncated``); ``bad_name`` (the file name
holds a tab or line break, which the manifest cannot, or gives the id of another input: not
processed, reported in the log of every run, no status file); ``error`` (an unexpected failure,
with the exception). Bad input never stops the batch. Records also say the ``rotation``
applied (counter-clockwise degrees: phones store portrait video sideways with a display matrix,
which is applied before face detection), ``truncated`` (decoded and stated seconds per stream,
when short), ``silent_audio`` and free-text ``notes`` (e.g. "silent audio (all samples are
zero)").

Reruns: the settings that change the outputs (detector, landmark model, mean face and crop,
frame and sample rates, ROI codec, ``--min-frames``, ...) are recorded in
``prepare_settings.json``; a rerun with other settings is refused with a message naming them,
unless ``--overwrite``, which first discards the outputs made with the old ones. With the same
settings a rerun skips every input that has a status file and is unchanged (same size and
modification time as recorded); ``error`` ones are retried, ``--retry-failed`` retries every
status except ``ok``. Files are written to temporary names and renamed into place, the status
file last, so a killed run leaves no half-written output; the temporary files of killed runs
are removed by the next run. The exit status is 0 when every input is ``ok``, 1 when some are
not, 2 on a usage error or refused settings.

Pipeline per video (two streaming passes, memory independent of the video's length):
pass 1 decodes grayscale frames resampled to 25 fps by timestamps and turned upright, and
follows every face with dlib (detection every ``--detect-every`` frames on a downscaled frame,
68 landmarks on every frame); the landmarks are interpolated, smoothed and aligned to the mean
face (:mod:`.mouth_align`); pass 2 decodes colour frames again and writes the crops.

Inputs of one run that hold the same video stream (:func:`video_stream_key`: same codec
parameters, timing and packets, whatever the audio; a dubbed copy of a video, as the
benchmarks' fake-audio categories are) go to one worker in turn: the first is processed as
above, the others reuse its face tracks and copy its ROI videos, and only their audio is read.
Their outputs are the same as processing each alone; their records name the first in
``video_shared_with``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np
import soundfile as sf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sf_fairseq.data.manifest import ManifestItem, write_manifest
from sf_fairseq.data.rates import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from sf_fairseq.records import PrepareRecord, RecordError, prepare_record_path, read_json_record, read_prepare_record
from sf_fairseq.resume import (
    SettingsMismatch,
    atomic_path,
    atomic_write_json,
    check_fingerprint,
    file_sha256,
    remove_stale_temporaries,
    write_fingerprint,
)

from .faces import (
    CNN_DETECTOR,
    LANDMARKS_68,
    FaceDetector,
    FaceTrack,
    FaceTracker,
    LandmarkPredictor,
    model_path,
)
from .mean_face import MEAN_FACE_PATH, load_mean_face
from .media import (
    MediaError,
    ROI_CRF,
    TRUNCATION_TOLERANCE_FRACTION,
    TRUNCATION_TOLERANCE_S,
    FrameStream,
    RoiWriter,
    UnreadableMediaError,
    VideoStreamInfo,
    display_rotation,
    has_audio_stream,
    roi_codec,
    shortfall,
    write_aligned_audio,
)
from .mouth_align import (
    CROP_SIZE,
    SMOOTHING_WINDOW,
    STABLE_POINTS,
    crop_mouth,
    mouth_crop_matrices,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".ts"}
)
STATUSES = (
    "ok", "no_face", "no_audio", "unreadable", "too_short", "truncated", "bad_name", "error"
)
SETTINGS_FILE = "prepare_settings.json"
# Bump when a change of this code changes what is written for the same input and settings.
OUTPUT_VERSION = 1


@dataclass(frozen=True)
class InputItem:
    id: str  # output name: input path relative to the input root, without extension
    path: str
    problem: str | None = None  # why the input cannot be processed under any id (bad_name)


@dataclass(frozen=True)
class PrepareOptions:
    """Per-video settings (see the CLI help for each)."""

    detect_every: int = 10
    detect_size: int = 320
    upsample: int = 1
    cnn_detector: bool = False
    min_frames: int = 12
    min_track_fraction: float = 0.25


def settings_fingerprint(options: PrepareOptions) -> dict:
    """Everything that changes what is written for an input: the options, the model files'
    content, the alignment and output formats, and the truncation tolerance."""
    return {
        "version": OUTPUT_VERSION,
        "detector": {
            "detect_every": options.detect_every,
            "detect_size": options.detect_size,
            "upsample": options.upsample,
            "cnn_detector": file_sha256(model_path(CNN_DETECTOR)) if options.cnn_detector else None,
        },
        "landmark_model": file_sha256(model_path(LANDMARKS_68)),
        "tracks": {"min_track_fraction": options.min_track_fraction},
        "alignment": {
            "mean_face": file_sha256(MEAN_FACE_PATH),
            "stable_points": list(STABLE_POINTS),
            "smoothing_window": SMOOTHING_WINDOW,
            "crop_size": CROP_SIZE,
        },
        "video": {"fps": FPS, "codec": roi_codec(), "crf": ROI_CRF},
        "audio": {"sample_rate": SAMPLE_RATE},
        "min_frames": options.min_frames,
        "truncation_tolerance": {
            "seconds": TRUNCATION_TOLERANCE_S,
            "fraction": TRUNCATION_TOLERANCE_FRACTION,
        },
    }


class ItemFailed(Exception):
    """An input that cannot be processed for a known reason (``status`` says which)."""

    def __init__(self, status: str, reason: str, result: dict | None = None):
        super().__init__(reason)
        self.status = status
        self.result = result or {}  # what was learned or written before the failure


# A video with several face tracks gives one manifest row per track: ``<id>__track<rank>``.
TRACK_SEPARATOR = "__track"


def _track_id(item_id: str, rank: int, n_tracks: int) -> str:
    return item_id if n_tracks == 1 else f"{item_id}{TRACK_SEPARATOR}{rank}"


def input_identity(path: str | os.PathLike) -> dict:
    """What a record keeps of its input to notice a changed file: size and modification time
    (empty when the input is missing)."""
    try:
        stat = os.stat(path)
    except OSError:
        return {}
    return {"input_size": stat.st_size, "input_mtime_ns": stat.st_mtime_ns}


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


def _truncation(
    stream: str, decoded_end: float, stated: float | None, start: float
) -> dict | None:
    """``{stream: {decoded_s, stated_s}}`` when the stream is shorter than stated beyond the
    tolerance (:func:`.media.shortfall`), else None."""
    if shortfall(decoded_end, stated, start) is None:
        return None
    return {
        stream: {"decoded_s": round(decoded_end - start, 3), "stated_s": round(stated - start, 3)}
    }


def _describe_truncation(truncated: dict) -> str:
    parts = [
        f"{stream} decodes to {t['decoded_s']:.2f} s of the {t['stated_s']:.2f} s the container "
        "states" for stream, t in truncated.items()
    ]
    return "; ".join(parts) + " (truncated file, e.g. a partial download)"


@dataclass(frozen=True)
class VideoAnalysis:
    """What pass 1 finds in a video stream (the same for every input holding that stream)."""

    info: VideoStreamInfo
    result: dict  # the record's video fields: n_frames, source_fps, size, rotation, notes, truncated
    tracks: list[FaceTrack]  # the tracks kept, most seen first
    landmarks: np.ndarray  # [K, T, 68, 2] dense, per kept track
    aligned: list[tuple[np.ndarray, np.ndarray]]  # per track: crop matrices [T, 2, 3], mouth centres [T, 2]


@dataclass
class _SharedVideo:
    """The last input's pass 1 (or its failure) and ROI videos, for the next input whose video
    stream has the same :func:`video_stream_key`."""

    key: str
    item_id: str
    analysis: VideoAnalysis | None = None
    failure: ItemFailed | None = None
    roi_videos: list[Path] = field(default_factory=list)  # written by this process, per track


def _header_fields(container, stream) -> tuple:
    """What the container says of ``stream`` and what decoding it depends on, packets aside."""
    context = stream.codec_context
    side_data = getattr(stream, "side_data", None) or {}
    return (
        container.format.name, context.name, context.width, context.height,
        context.format.name if context.format else None, bytes(context.extradata or b"").hex(),
        str(stream.time_base), stream.start_time, stream.duration, stream.frames,
        str(stream.average_rate), str(stream.guessed_rate), sorted(stream.metadata.items()),
        container.start_time, container.duration,
        len(container.streams.video) + len(container.streams.audio),
        sorted((str(k), repr(v)) for k, v in side_data.items()),
    )


def video_stream_key(path: str | os.PathLike, packets: bool = True) -> str | None:
    """SHA-256 of everything pass 1 reads from the first video stream of ``path``: the container
    format, the codec parameters (extradata included), the stream's clock, stated length and
    rotation, and (with ``packets``) every packet: bytes, timestamps, key flag. Two inputs with
    the same key decode to the same frames at the same times, so they have the same face tracks
    and mouth ROIs whatever their audio (a dubbed copy of a video, a re-muxed file). Without
    ``packets`` only the header is read: a cheap test that two streams may be the same. None
    when the file cannot be demuxed (it is then processed on its own and fails there)."""
    digest = hashlib.sha256()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            digest.update(repr(_header_fields(container, stream)).encode())
            if packets:
                for packet in container.demux(stream):
                    digest.update(repr((packet.pts, packet.dts, packet.duration, packet.is_keyframe,
                                        packet.size)).encode())
                    digest.update(bytes(packet))
        if packets:
            # The display matrix reaches PyAV on decoded frames only.
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                first = next(container.decode(stream), None)
                digest.update(repr(display_rotation(first, stream) if first else None).encode())
    except (*MediaError, ValueError, TypeError):
        return None
    return digest.hexdigest()


def group_by_video_stream(items: list[InputItem]) -> list[tuple[str | None, list[InputItem]]]:
    """``items`` grouped by :func:`video_stream_key`, each group with its key, in the order of
    their first members; an input that shares its stream with no other input is a group of its
    own (key None). Streams are read in full only where headers alone do not tell inputs apart."""
    by_header: dict[str, list[InputItem]] = defaultdict(list)
    for item in items:
        header = video_stream_key(item.path, packets=False)
        by_header[header if header is not None else f"unread:{item.id}"].append(item)
    keys: dict[str, str | None] = {}
    for members in by_header.values():
        if len(members) > 1:
            keys.update((item.id, video_stream_key(item.path)) for item in members)
    groups: dict[str, list[InputItem]] = {}
    for item in items:
        key = keys.get(item.id)
        groups.setdefault(key if key is not None else f"alone:{item.id}", []).append(item)
    return [(None if len(group) == 1 else key, group) for key, group in groups.items()]


class VideoPreprocessor:
    """Turns one video into ROI video(s), a wav, landmarks and a status record."""

    def __init__(self, options: PrepareOptions = PrepareOptions()):
        self.options = options
        self.detector = FaceDetector(options.detect_size, options.upsample, options.cnn_detector)
        self.predictor = LandmarkPredictor()
        self.mean_face = load_mean_face()
        self._last: _SharedVideo | None = None

    def process(
        self, item: InputItem, out_dir: str | os.PathLike, video_key: str | None = None
    ) -> dict:
        """Process ``item`` into ``out_dir`` and return its record in its on-disk form
        (:class:`~sf_fairseq.records.PrepareRecord`, also saved as ``status/<id>.json``). Never
        raises for bad input.

        ``video_key`` (:func:`video_stream_key`): when it is that of the input processed just
        before, that input's face tracks (and ROI videos, copied) are reused, since the same
        stream decodes to the same frames; only the audio is read anew. The record's
        ``video_shared_with`` names that input."""
        out_dir = Path(out_dir)
        start = time.perf_counter()
        record: dict = {"id": item.id, "input": item.path, "status": "ok", "reason": ""}
        record.update(input_identity(item.path))
        try:
            record.update(self._process(item, out_dir, video_key))
        except ItemFailed as failure:
            record.update(failure.result, status=failure.status, reason=str(failure))
        except UnreadableMediaError as err:
            record.update(status="unreadable", reason=str(err))
        except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
            logger.exception("%s: unexpected failure", item.path)
            record.update(status="error", reason=f"{type(err).__name__}: {err}")
        record["seconds"] = round(time.perf_counter() - start, 3)
        written = PrepareRecord.from_dict(record).to_dict()
        atomic_write_json(prepare_record_path(out_dir, item.id), written)
        return written

    def _analysis(self, item: InputItem, video_key: str | None) -> tuple[VideoAnalysis, _SharedVideo | None]:
        """Pass 1 of ``item``, or that of the previous input when it has the same
        ``video_key`` (returned with it; a failure of pass 1 is shared the same way)."""
        shared = self._last
        if video_key is not None and shared is not None and shared.key == video_key:
            if shared.failure is not None:
                raise ItemFailed(shared.failure.status, str(shared.failure),
                                 {**copy.deepcopy(shared.failure.result), "video_shared_with": shared.item_id})
            return shared.analysis, shared
        self._last = None
        try:
            analysis = self._find_faces(item)
        except ItemFailed as failure:
            if video_key is not None:
                self._last = _SharedVideo(video_key, item.id, failure=failure)
            raise
        if video_key is not None:
            self._last = _SharedVideo(video_key, item.id, analysis=analysis)
        return analysis, None

    def _find_faces(self, item: InputItem) -> VideoAnalysis:
        """Pass 1: landmarks for every face on every 25 fps frame, the tracks kept and their
        alignment. Raises :class:`ItemFailed` (``too_short``, ``no_face``)."""
        opts = self.options
        if not os.path.isfile(item.path):
            kind = "a directory" if os.path.isdir(item.path) else "missing"
            what = "no such file" if kind == "missing" else f"not a file ({kind})"
            raise UnreadableMediaError(f"{item.path}: {what}")
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
            "rotation": info.rotation,
            "notes": [],
        }
        if info.decode_error:
            result["notes"].append(info.decode_error)
        if abs((info.rotation - info.rotation_stored + 180) % 360 - 180) > 1:
            result["notes"].append(
                f"the file asks for a {info.rotation_stored:g}° rotation; turned by "
                f"{info.rotation}° (quarter turns only)"
            )
        truncated = _truncation("video", info.end_time, info.stated_end, info.start_time) or {}
        if truncated:
            result["truncated"] = truncated
            result["notes"].append(_describe_truncation(truncated))
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
        return VideoAnalysis(info, result, tracks, landmarks, aligned)

    def _process(self, item: InputItem, out_dir: Path, video_key: str | None) -> dict:
        analysis, shared = self._analysis(item, video_key)
        info, tracks, landmarks, aligned = analysis.info, analysis.tracks, analysis.landmarks, analysis.aligned
        result = copy.deepcopy(analysis.result)
        truncated = result.get("truncated", {})
        if shared is not None:
            result["video_shared_with"] = shared.item_id

        # Audio on the video's clock, exactly n_frames * 640 samples.
        n_samples = info.n_frames * SAMPLES_PER_FRAME
        audio_problem = None
        try:
            if not has_audio_stream(item.path):
                raise UnreadableMediaError("no audio stream")
            with atomic_path(out_dir / "audio" / f"{item.id}.wav") as wav_tmp:
                audio = write_aligned_audio(item.path, wav_tmp, info.start_time, n_samples)
        except UnreadableMediaError as err:
            audio_problem = str(err)
        else:
            result.update(
                audio=f"audio/{item.id}.wav",
                n_samples=n_samples,
                source_sample_rate=audio.source_rate,
                source_channels=audio.source_channels,
                audio_offset_s=round(audio.offset_samples / SAMPLE_RATE, 4),
                silent_audio=audio.peak == 0,
            )
            if audio.peak == 0:
                result["notes"].append("silent audio (all samples are zero)")
            if audio.n_decoded < 0.9 * n_samples:
                result["notes"].append(
                    f"audio covers {audio.n_decoded / SAMPLE_RATE:.2f} s of the "
                    f"{n_samples / SAMPLE_RATE:.2f} s video; the rest is silence"
                )
            if audio.decoded_end is not None and audio.stated_end is not None:
                # The stream ran out early: short of what it states, within the video's span?
                expected = min(audio.stated_end, info.end_time)
                audio_cut = _truncation("audio", audio.decoded_end, expected, info.start_time)
                if audio_cut:
                    truncated.update(audio_cut)
                    result["truncated"] = truncated
                    result["notes"].append(_describe_truncation(audio_cut))

        # Pass 2: the crops, one ROI video per track; everything renamed into place together.
        outputs = []
        for k, track in enumerate(tracks):
            track_id = _track_id(item.id, k, len(tracks))
            outputs.append(
                {
                    "track": k,
                    "id": track_id,
                    "video": f"video/{track_id}.mp4",
                    "face_frames": int(len(track.frames)),
                }
            )
        with contextlib.ExitStack() as renames:
            video_tmps = [
                renames.enter_context(atomic_path(out_dir / output["video"])) for output in outputs
            ]
            if shared is not None and shared.roi_videos:
                for source, tmp in zip(shared.roi_videos, video_tmps):
                    shutil.copyfile(source, tmp)
            else:
                with contextlib.ExitStack() as open_writers:
                    writers = [
                        open_writers.enter_context(RoiWriter(tmp, CROP_SIZE, CROP_SIZE))
                        for tmp in video_tmps
                    ]
                    for t, bgr in enumerate(FrameStream(item.path, "bgr24", max_frames=info.n_frames)):
                        for writer, (matrices, _) in zip(writers, aligned):
                            writer.write(crop_mouth(bgr, matrices[t]))
            for tmp in video_tmps:
                n, fps = roi_frame_count(tmp)
                if n != info.n_frames or round(fps) != FPS:
                    raise RuntimeError(
                        f"written ROI reads back as {n} frames at {fps} fps, "
                        f"expected {info.n_frames} at {FPS}"
                    )
            lm_path = out_dir / "landmarks" / f"{item.id}.npz"
            with atomic_path(lm_path) as lm_tmp, open(lm_tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    landmarks=landmarks,
                    mouth_centres=np.stack([centres for _, centres in aligned]).astype(np.float32),
                    fps=np.float64(FPS),
                    start_time=np.float64(info.start_time),
                )
        result.update(landmarks=f"landmarks/{item.id}.npz", tracks=outputs)
        if shared is None and self._last is not None and self._last.item_id == item.id:
            self._last.roi_videos = [out_dir / output["video"] for output in outputs]
        if audio_problem:
            raise ItemFailed("no_audio", audio_problem, result)
        if truncated:
            raise ItemFailed("truncated", _describe_truncation(truncated), result)
        return result


# ---- inputs, sharding, resume ----------------------------------------------------------------


def _bad_characters(name: str) -> bool:
    """A tab, or anything ``str.splitlines`` breaks a line at: the manifest cannot hold it."""
    return "\t" in name or len(f"x{name}x".splitlines()) > 1


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def discover_inputs(
    source: str | os.PathLike,
    root: str | os.PathLike | None = None,
    exclude: str | os.PathLike | None = None,
) -> list[InputItem]:
    """Inputs from a directory (searched recursively for names with a video extension, files
    or not: a folder named ``x.mp4`` gets an ``unreadable`` record, not silence; nothing under
    ``exclude``, the output folder, is taken) or a list file (one path per line; blank lines and
    ``#`` comments skipped; relative paths are relative to ``root``, by default the list file's
    folder; a path listed twice is taken once). Ids are paths relative to the directory (or
    root) without extension; inputs that would share an id keep their extension in it. An
    input whose id still clashes, or whose name holds a tab or line break, gets a ``problem``.
    Sorted by id."""
    source = Path(source)
    excluded = Path(exclude).resolve() if exclude is not None else None
    if source.is_dir():
        base = Path(root) if root is not None else source
        paths = sorted(
            p for p in source.rglob("*")
            if p.suffix.lower() in VIDEO_EXTENSIONS and not _inside(p.resolve(), excluded)
        )
    elif source.is_file():
        base = Path(root) if root is not None else source.parent
        lines = source.read_text(encoding="utf-8").splitlines()
        paths = [base / line.strip() for line in lines if line.strip() and not line.startswith("#")]
    else:
        raise FileNotFoundError(f"{source}: no such directory or list file")
    base = base.resolve()
    by_stem: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    for path in dict.fromkeys(p.resolve() for p in paths):
        try:
            rel = path.relative_to(base)
        except ValueError:
            rel = path.relative_to(path.anchor)
        by_stem[rel.with_suffix("").as_posix()].append((path, rel))
    named: list[tuple[str, Path]] = []
    for stem_id, group in by_stem.items():
        for path, rel in group:
            named.append((stem_id if len(group) == 1 else rel.as_posix(), path))
    items: list[InputItem] = []
    taken: dict[str, Path] = {}
    for item_id, path in sorted(named, key=lambda pair: (pair[0], str(pair[1]))):
        problem = None
        if _bad_characters(item_id):
            problem = (
                f"the name holds a tab or line break, which the manifest cannot hold: "
                f"{item_id!r}; rename the file"
            )
        elif item_id in taken:
            problem = (
                f"its output id {item_id!r} is also that of {taken[item_id]}; rename one of them"
            )
        else:
            taken[item_id] = path
        items.append(InputItem(item_id, str(path), problem))
    return items


def shard(items: list[InputItem], nshard: int, rank: int) -> list[InputItem]:
    """The ``rank``-th of ``nshard`` contiguous, near-equal parts of ``items``."""
    if not 0 <= rank < nshard:
        raise ValueError(f"--rank must be in [0, {nshard}), got {rank}")
    per_shard = -(-len(items) // nshard)
    return items[rank * per_shard:(rank + 1) * per_shard]


def _outputs(record: PrepareRecord) -> list[str]:
    """Paths (relative to the output folder) of the files a record lists."""
    paths = [path for path in (record.audio, record.landmarks) if path]
    return paths + [t["video"] for t in record.tracks or ()]


def _is_finished(record: PrepareRecord | None, item: InputItem, out_dir: Path, retry_failed: bool) -> bool:
    if record is None or record.status == "error":
        return False
    recorded = {k: record[k] for k in ("input_size", "input_mtime_ns") if k in record}
    if input_identity(item.path) != recorded:
        return False  # the input changed since its record was written
    if record.status != "ok" and retry_failed:
        return False
    if record.status in ("ok", "truncated"):
        return all((out_dir / p).is_file() for p in _outputs(record))
    return True


def _bad_name_record(item: InputItem) -> PrepareRecord:
    return PrepareRecord(id=item.id, input=item.path, status="bad_name", reason=item.problem or "")


def _made_here(path: Path, out_dir: Path) -> bool:
    """Whether ``path`` (a manifest) has ``out_dir`` as its root line."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == str(out_dir)
    except (OSError, UnicodeDecodeError):
        return False


def has_outputs(out_dir: Path) -> bool:
    status = out_dir / "status"
    return status.is_dir() and any(p.is_file() for p in status.rglob("*.json"))


def discard_outputs(out_dir: Path) -> int:
    """Remove what earlier runs wrote into ``out_dir`` (the files the status records list, the
    records, manifests rooted here, logs and the settings record); other files are left
    alone. Returns the number of records removed."""
    n = 0
    for status in sorted((out_dir / "status").rglob("*.json")):
        try:
            outputs = _outputs(read_json_record(PrepareRecord, status))
        except (OSError, RecordError):
            outputs = []
        for rel in outputs:
            target = (out_dir / rel).resolve()
            if _inside(target, out_dir):
                target.unlink(missing_ok=True)
        status.unlink()
        n += 1
    for path in out_dir.glob("*.tsv"):
        if _made_here(path, out_dir):
            path.unlink()
    for pattern in ("*.log.jsonl", "*.log.*.jsonl"):
        for path in out_dir.glob(pattern):
            path.unlink()
    (out_dir / SETTINGS_FILE).unlink(missing_ok=True)
    return n


def prepare_output_folder(out_dir: Path, options: PrepareOptions, overwrite: bool) -> None:
    """Check (or record) the settings of ``out_dir``'s outputs; with ``overwrite``, discard
    outputs made with other settings. Raises :class:`SettingsMismatch` when they differ, or
    when outputs exist without a settings record (made by an older version), and
    ``overwrite`` is off."""
    fingerprint = settings_fingerprint(options)
    record = out_dir / SETTINGS_FILE
    if check_fingerprint(record, fingerprint, "sf-prepare's output", overwrite=overwrite):
        return
    if has_outputs(out_dir):
        if not overwrite and not record.exists():
            raise SettingsMismatch(
                "sf-prepare's output", record, [f"<no {SETTINGS_FILE}: made by an older version>"],
                "pass --overwrite to discard them, or write to another directory",
            )
        n = discard_outputs(out_dir)
        logger.warning("--overwrite: discarded the outputs of %d inputs (other settings)", n)
    write_fingerprint(record, fingerprint)


# ---- worker pool -----------------------------------------------------------------------------

_worker: VideoPreprocessor | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _worker
    cv2.setNumThreads(1)  # parallelism comes from the pool
    _worker = VideoPreprocessor(options)


def _process_group(
    preprocessor: VideoPreprocessor, key: str | None, group: list[InputItem], out_dir: str | os.PathLike
) -> list[dict]:
    """Records of a group of inputs sharing a video stream (``key``), processed in turn so that
    each after the first reuses the first's face tracks and ROI videos."""
    return [preprocessor.process(item, out_dir, key) for item in group]


def _run_in_worker(job: tuple[str | None, list[InputItem], str]) -> list[dict]:
    return _process_group(_worker, *job)


def process_items(
    items: list[InputItem], out_dir: Path, options: PrepareOptions, workers: int = 1
) -> Iterator[dict]:
    """Process ``items``, yielding records as they finish (any order with ``workers > 1``).
    Inputs holding the same video stream go to one worker, one after the other
    (:func:`group_by_video_stream`): faces are found once per stream."""
    groups = group_by_video_stream(items)
    shared = sum(len(group) - 1 for key, group in groups if key is not None)
    if shared:
        logger.info("%d inputs share their video stream with another input: their face tracks "
                    "and mouth ROIs are found once", shared)
    if workers <= 1 or len(groups) <= 1:
        preprocessor = VideoPreprocessor(options)
        for key, group in groups:
            yield from _process_group(preprocessor, key, group, out_dir)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(groups)), _init_worker, (options,)) as pool:
        for records in pool.imap_unordered(_run_in_worker, [(key, group, str(out_dir)) for key, group in groups]):
            yield from records


# ---- manifest --------------------------------------------------------------------------------


def manifest_items(
    out_dir: Path, item_ids: Iterable[str], keep_truncated: bool = False
) -> tuple[list[ManifestItem], int]:
    """Manifest rows for the ``ok`` items among ``item_ids`` (and the ``truncated`` ones with
    ``keep_truncated``), one per face track, with frame and sample counts checked against the
    files on disk (an item whose files disagree is left out, with an error logged). Returns
    (rows, items not ready)."""
    wanted = {"ok", "truncated"} if keep_truncated else {"ok"}
    rows, pending = [], 0
    for item_id in item_ids:
        record = read_prepare_record(out_dir, item_id)
        if record is None or record.status not in wanted:
            pending += record is None
            continue
        try:
            item_rows = _checked_rows(out_dir, record)
        except (OSError, RuntimeError) as err:
            logger.error("%s: left out of the manifest: %s", item_id, err)
            continue
        rows += item_rows
    return rows, pending


def _checked_rows(out_dir: Path, record: PrepareRecord) -> list[ManifestItem]:
    audio = out_dir / record["audio"]
    n_samples = sf.info(str(audio)).frames
    if n_samples != record["n_samples"]:
        raise RuntimeError(f"{audio}: {n_samples} samples, its record says {record['n_samples']}")
    rows = []
    for track in record["tracks"]:
        n_frames, _ = roi_frame_count(out_dir / track["video"])
        if n_frames != record["n_frames"]:
            raise RuntimeError(
                f"{out_dir / track['video']}: {n_frames} frames, its record says "
                f"{record['n_frames']}"
            )
        rows.append(ManifestItem(track["id"], track["video"], record["audio"], n_frames, n_samples))
    return rows


def write_split_manifest(
    out_dir: Path, split: str, item_ids: Iterable[str], keep_truncated: bool = False
) -> int:
    """Write ``<split>.tsv`` (root = ``out_dir``, relative paths) for the ``ok`` items among
    ``item_ids`` (and ``truncated`` ones with ``keep_truncated``) and return its row count."""
    rows, pending = manifest_items(out_dir, item_ids, keep_truncated)
    with atomic_path(out_dir / f"{split}.tsv") as tmp:
        write_manifest(tmp, str(out_dir.resolve()), rows)
    if pending:
        logger.info("%d inputs have no record yet (other shards still running?)", pending)
    return len(rows)


# ---- one run over an input folder or list ------------------------------------------------------


class PrepareError(ValueError):
    """A run that cannot start: bad options, unreadable inputs or outputs of other settings
    (``sf-prepare`` exits with status 2)."""


@dataclass(frozen=True)
class PrepareJob:
    """One ``sf-prepare`` run (the command's options; see :func:`run`).

    Attributes:
        inputs: a directory searched recursively for videos, or a list file (one path a line).
        out_dir: the output folder.
        root: folder that relative paths of a list file (and ids) are relative to.
        split: the manifest's name (``<split>.tsv``).
        workers: parallel processes.
        nshard, rank: process the ``rank``-th of ``nshard`` parts of the inputs.
        options: the settings that change the outputs.
        retry_failed: reprocess every input whose record is not ``ok`` (else only ``error``).
        overwrite: discard outputs made with other settings instead of refusing.
        keep_truncated: list ``truncated`` inputs in the manifest.
        manifest_only: process nothing, rewrite the manifest from the records on disk.
    """

    inputs: str | os.PathLike
    out_dir: str | os.PathLike
    root: str | os.PathLike | None = None
    split: str = "test"
    workers: int = 1
    nshard: int = 1
    rank: int = 0
    options: PrepareOptions = PrepareOptions()
    retry_failed: bool = False
    overwrite: bool = False
    keep_truncated: bool = False
    manifest_only: bool = False


@dataclass(frozen=True)
class PrepareSummary:
    """What one :func:`run` did.

    Attributes:
        counts: records of this run per status (resumed ones included); empty with
            ``manifest_only``.
        n_inputs: inputs of this shard.
        manifest: the ``<split>.tsv`` written, and ``n_rows`` its rows (one per face track).
        log: this run's ``<split>.log[.<rank>].jsonl`` (None with ``manifest_only``).
    """

    counts: dict[str, int]
    n_inputs: int
    manifest: Path
    n_rows: int
    log: Path | None

    @property
    def n_failed(self) -> int:
        """Inputs of this run whose status is not ``ok``."""
        return 0 if self.log is None else self.n_inputs - self.counts.get("ok", 0)

    @property
    def exit_status(self) -> int:
        """``sf-prepare``'s exit status: 0 when every input is ``ok``, 1 when some are not."""
        return 1 if self.n_failed else 0


def add_prepare_options(parser: argparse.ArgumentParser) -> None:
    """Every option of ``sf-prepare`` but its input and output folders (for
    :func:`job_from_arguments`)."""
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
    parser.add_argument("--overwrite", action="store_true", help="if OUT_DIR holds outputs "
                        f"made with other settings (see {SETTINGS_FILE}), discard them and "
                        "start again instead of refusing")
    parser.add_argument("--keep-truncated", action="store_true", help="list 'truncated' inputs "
                        "(shorter than their container states, e.g. partial downloads) in the "
                        "manifest with what they hold, instead of leaving them out")
    parser.add_argument("--manifest-only", action="store_true", help="process nothing; "
                        "rewrite <split>.tsv from the records on disk")


def job_from_arguments(
    inputs: str | os.PathLike, out_dir: str | os.PathLike, args: argparse.Namespace
) -> PrepareJob:
    """The :class:`PrepareJob` of :func:`add_prepare_options`' options."""
    options = PrepareOptions(
        detect_every=args.detect_every,
        detect_size=args.detect_size,
        upsample=args.upsample,
        cnn_detector=args.cnn_detector,
        min_frames=args.min_frames,
        min_track_fraction=args.min_track_fraction,
    )
    return PrepareJob(
        inputs, out_dir, root=args.root, split=args.split, workers=args.workers, nshard=args.nshard,
        rank=args.rank, options=options, retry_failed=args.retry_failed, overwrite=args.overwrite,
        keep_truncated=args.keep_truncated, manifest_only=args.manifest_only,
    )


def run(job: PrepareJob) -> PrepareSummary:
    """Preprocess the inputs of ``job`` into its output folder (resuming finished, unchanged
    inputs), write this run's log and the split's manifest.

    Raises:
        PrepareError: bad options, unreadable inputs, or outputs of other settings in
            ``out_dir`` without ``overwrite`` (nothing is processed).
    """
    out_dir = Path(job.out_dir).resolve()
    if job.options.detect_every < 1 or job.workers < 1 or job.options.min_frames < 1:
        raise PrepareError("--detect-every, --workers and --min-frames must be >= 1")
    # Outputs are not inputs: skip the output folder, or only its ROIs when it holds the inputs.
    exclude = out_dir / "video" if _inside(Path(job.inputs).resolve(), out_dir) else out_dir
    try:
        items = discover_inputs(job.inputs, job.root, exclude=exclude)
        mine = shard(items, job.nshard, job.rank)
    except (OSError, ValueError) as err:
        raise PrepareError(str(err)) from err
    out_dir.mkdir(parents=True, exist_ok=True)
    valid_ids = [it.id for it in items if it.problem is None]
    manifest = out_dir / f"{job.split}.tsv"
    if job.manifest_only:
        n = write_split_manifest(out_dir, job.split, valid_ids, job.keep_truncated)
        logger.info("wrote %s with %d rows", manifest, n)
        return PrepareSummary({}, len(mine), manifest, n, None)
    try:
        prepare_output_folder(out_dir, job.options, job.overwrite)
    except SettingsMismatch as err:
        raise PrepareError(str(err)) from err
    remove_stale_temporaries(out_dir)
    suffix = "" if job.nshard == 1 else f".{job.rank}"
    log_path = out_dir / f"{job.split}.log{suffix}.jsonl"
    todo, counts = [], Counter()
    with open(log_path, "w", encoding="utf-8") as log:

        def emit(record: PrepareRecord | dict) -> None:
            record = PrepareRecord.coerce(record)
            log.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            log.flush()
            counts[record.status] += 1
            if record.status != "ok" and not record.resumed:
                logger.warning("%s: %s: %s", record.input, record.status, record.reason)

        for item in mine:
            if item.problem is not None:
                emit(_bad_name_record(item))
                continue
            record = read_prepare_record(out_dir, item.id)
            if _is_finished(record, item, out_dir, job.retry_failed):
                emit(replace(record, resumed=True))
            else:
                todo.append(item)
        n_valid = sum(it.problem is None for it in mine)
        if len(todo) < n_valid:
            logger.info("resuming: %d of %d inputs already done", n_valid - len(todo), n_valid)
        with logging_redirect_tqdm(), tqdm(
            total=len(todo), unit="video", desc=f"prepare {job.split}"
        ) as progress:
            for record in process_items(todo, out_dir, job.options, job.workers):
                emit(record)
                progress.update()
                progress.set_postfix(failed=sum(counts.values()) - counts["ok"])
    n_rows = write_split_manifest(out_dir, job.split, valid_ids, job.keep_truncated)
    summary = PrepareSummary(dict(counts), len(mine), manifest, n_rows, log_path)
    detail = ", ".join(f"{s}={counts[s]}" for s in STATUSES[1:] if counts[s])
    logger.info(
        "%d inputs: %d ok, %d failed%s; manifest %s has %d rows; log %s",
        len(mine), counts["ok"], summary.n_failed, f" ({detail})" if detail else "",
        manifest, n_rows, log_path,
    )
    return summary
