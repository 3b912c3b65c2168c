"""Write perturbed copies of a list of videos: one robustness cell (type x level). The engine of
``sf-perturb`` (:mod:`.perturb`, the command) and of the robustness grid (:mod:`.robustness_engine`).

Types: the seven video perturbations of :mod:`.perturb_video` (``cs cc bw gnc gb jpeg vc``) and
the audio perturbations of :mod:`.perturb_audio` (``noise aac mp3 resample band``), levels 1-5.

Two kinds of input:

* **raw videos** (default; the protocol: perturb the full frames, then run
  ``python -m sf_fairseq.preprocess.prepare`` on the copies). The audio stays in the file:
  a video perturbation re-encodes the frames and copies the audio packets untouched; an audio
  perturbation copies the video packets untouched and replaces the audio with the perturbed
  signal, stored losslessly (FLAC; PCM in containers without FLAC), at the source sample rate
  and channel count. Every frame keeps its timestamp and the audio keeps its start time, so
  frame rate, frame count and audio-video sync are those of the source (only the last frame's
  duration, which the MP4 muxer infers, may differ by under a millisecond).
* **mouth-ROI clips** (``--roi``; a fast approximation that skips face tracking: the
  perturbation then acts on 96x96 crops, not on the full frame, so blur, pixelation and block
  sizes are relatively larger than the protocol's): the list's ROI videos and the wavs beside
  them (SpeechForensics' ``mouth_dir`` layout, or a CSV ``audio`` column); the wav is copied or
  perturbed, the video re-encoded or copied.

Frames of the per-frame types are re-encoded with libx264 at ``--storage-crf`` (default 18,
visually lossless; 0 = lossless luma); ``vc`` re-encodes at the level's CRF instead (libx264,
``--preset``, default ``medium`` as ``ffmpeg -crf`` does). Frame sizes with an odd side are
stored as yuv444p (yuv420p needs even sides).

After writing, each copy is read back and checked against its source: same number of video
frames, same frame rate, same audio sample count and rate, same audio start relative to the
first frame (within a millisecond). A copy that fails the check is not kept.

Randomness (block positions, noise) is seeded from ``--seed``, the type, the level and the
content of the stream it perturbs (the video stream for a video type, the audio for an audio
type: its encoded packets, or a ROI clip's wav bytes), so a copy does not depend on which other
items are processed, in what order or under what names, and items that share that stream get
the same perturbation: a real clip and its dubbed copy (same video, other speech) get the same
noisy frames, and differ only in what a fake changed. With ``--roi``, such items are perturbed
once and the others copy the result (their record says ``copied_from``).

Output under ``OUT_DIR``: the copies at the same paths relative to ``OUT_DIR`` as the inputs
relative to ``--data-root``; ``list.csv`` (``path,label,category,audio,id``, paths relative to
``OUT_DIR``, usable with ``score_batch --list OUT_DIR/list.csv --data-root OUT_DIR`` for ROI
copies); ``videos.txt`` (one copy per line, the input of ``preprocess.prepare`` with ``--root
OUT_DIR``); ``perturbation.json`` (the settings; a rerun with other settings is refused);
``perturb.log.jsonl`` (one record per item and run). Files are written under temporary names
and renamed into place, so a rerun skips every item whose copy exists. The exit status is 0
when every item has its copy, else 1.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
from av.video.reformatter import Interpolation
import numpy as np
import soundfile as sf
from tqdm import tqdm

from sf_fairseq.data.rates import FPS
from sf_fairseq.preprocess.h264 import libx264_options
from sf_fairseq.resume import atomic_path, atomic_write_text, file_sha256

from . import lists
from .perturb_audio import AUDIO_PERTURBATIONS, audio_perturbation
from .perturb_video import VIDEO_PERTURBATIONS, compression_crf, frame_perturbation

logger = logging.getLogger(__name__)

TYPES: dict[str, str] = {**{c: "video" for c in VIDEO_PERTURBATIONS}, **{c: "audio" for c in AUDIO_PERTURBATIONS}}
LEVELS = (1, 2, 3, 4, 5)
SYNC_TOLERANCE_S = 0.001
_AUDIO_CHUNK = 4096
# swscale flags for the BGR <-> YUV conversions around a frame perturbation: FFmpeg's default
# (fast bilinear, no accurate rounding) darkens a yuv420p -> bgr24 -> yuv420p round trip by
# about 2 grey levels; these flags make it unbiased (mean error < 0.01 level).
_SWS_FLAGS = (
    Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)
_LOSSLESS_AUDIO = {".mp4": "flac", ".m4v": "flac", ".mov": "flac", ".mkv": "flac"}


class PerturbCheckError(RuntimeError):
    """A written copy does not match its source's timing (the message says how)."""


@dataclass(frozen=True)
class PerturbOptions:
    """Settings shared by every item of a cell.

    Attributes:
        seed: base seed (combined with type, level and the perturbed stream's content).
        block_rule: ``reference`` or ``scaled`` (see :mod:`.perturb_video`).
        storage_crf: libx264 CRF for the frames of the per-frame video types.
        preset: libx264 preset.
        threads: libx264 threads (0 = FFmpeg's choice).
    """

    seed: int = 0
    block_rule: str = "reference"
    storage_crf: int = 18
    preset: str = "medium"
    threads: int = 0


def cell_name(code: str, level: int) -> str:
    """``vc_3`` style name of a cell (RealForensics' naming)."""
    return f"{code}_{level}"


def check_cell(code: str, level: int) -> None:
    if code not in TYPES:
        raise ValueError(f"unknown perturbation type {code!r}; choose from {', '.join(TYPES)}")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def item_rng(seed: int, code: str, level: int, key: str) -> np.random.Generator:
    """The generator of one item in one cell (independent of the other items); ``key`` names
    the item's input (:func:`perturbed_stream_key`)."""
    crc = lambda s: zlib.crc32(s.encode("utf-8"))  # noqa: E731 - stable across processes
    return np.random.default_rng(np.random.SeedSequence([seed, crc(code), level, crc(key)]))


def stream_digest(path: str | os.PathLike, kind: str) -> str:
    """SHA-256 of the first ``kind`` (``video`` or ``audio``) stream of ``path``: its codec,
    time base and encoded packets with their timestamps (nothing is decoded). Two files that
    carry the same stream beside different others get the same digest."""
    with av.open(str(path)) as container:
        streams = container.streams.video if kind == "video" else container.streams.audio
        if not streams:
            raise ValueError(f"{path}: no {kind} stream")
        stream = streams[0]
        digest = hashlib.sha256(f"{stream.codec_context.name}|{stream.time_base}|".encode())
        digest.update(bytes(stream.codec_context.extradata or b""))
        for packet in container.demux(stream):
            if packet.size:
                digest.update(f"|{packet.pts}|{packet.dts}|{packet.size}|".encode())
                digest.update(bytes(packet))
    return digest.hexdigest()


def perturbed_stream_key(video: str, audio: str | None, code: str, roi: bool) -> str:
    """What seeds an item's perturbation: the content of the stream that ``code`` perturbs.
    For a ROI clip, the video file (video types) or the wav beside it (audio types); for a raw
    video, that stream's packets (:func:`stream_digest`)."""
    kind = TYPES[code]
    if roi:
        return f"{kind}:{file_sha256(video if kind == 'video' else audio)}"
    return f"{kind}:{stream_digest(video, kind)}"


# ---- probing and checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class MediaTiming:
    """What the checks compare: video frames and rate, audio samples, rate and start."""

    n_frames: int
    fps: float
    video_start: float
    audio_rate: int | None
    audio_samples: int | None
    audio_start: float | None


def probe(path: str | os.PathLike) -> MediaTiming:
    """Count the video packets (one per frame) and decode the first audio stream of ``path``."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        vs = container.streams.video[0]
        streams = [vs] + list(container.streams.audio[:1])
        n_frames, v_start = 0, math.inf
        for packet in container.demux(vs):
            if packet.size and packet.pts is not None:
                n_frames += 1
                v_start = min(v_start, float(packet.pts * packet.time_base))
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else math.nan
        if len(streams) == 1:
            return MediaTiming(n_frames, fps, v_start, None, None, None)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples, a_start = 0, None
        for frame in container.decode(stream):
            if a_start is None and frame.time is not None:
                a_start = float(frame.time)
            samples += frame.samples
        return MediaTiming(n_frames, fps, v_start, stream.rate, samples, a_start)


def check_timing(source: MediaTiming, copy: MediaTiming, path: str | os.PathLike) -> None:
    """Raise :class:`PerturbCheckError` unless ``copy`` keeps ``source``'s frames, rate, audio
    length and sync."""
    problems = []
    if copy.n_frames != source.n_frames:
        problems.append(f"{copy.n_frames} video frames, source has {source.n_frames}")
    if not math.isclose(copy.fps, source.fps, rel_tol=1e-3):
        problems.append(f"{copy.fps:.4f} fps, source has {source.fps:.4f}")
    if (copy.audio_rate, copy.audio_samples) != (source.audio_rate, source.audio_samples):
        problems.append(
            f"audio {copy.audio_samples} samples at {copy.audio_rate} Hz, source has "
            f"{source.audio_samples} at {source.audio_rate} Hz"
        )
    elif source.audio_start is not None:
        offset_src = source.audio_start - source.video_start
        offset_copy = (copy.audio_start or 0.0) - copy.video_start
        if abs(offset_copy - offset_src) > SYNC_TOLERANCE_S:
            problems.append(
                f"audio starts {offset_copy * 1000:.1f} ms after the first frame, "
                f"source {offset_src * 1000:.1f} ms"
            )
    if problems:
        raise PerturbCheckError(f"{path}: " + "; ".join(problems))


# ---- writing ---------------------------------------------------------------------------------


def _video_encoder(out, vin, crf: int, options: PerturbOptions):
    rate = vin.average_rate or vin.guessed_rate or Fraction(FPS)
    stream = out.add_stream("libx264", rate=rate)
    width, height = vin.codec_context.width, vin.codec_context.height
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    stream.codec_context.time_base = vin.time_base  # frames keep their exact timestamps
    stream.options = libx264_options(crf, options.preset, options.threads)
    return stream


def _reencode_video(
    src: str, dst: Path, frame_fn: Callable[[np.ndarray], np.ndarray] | None, crf: int,
    options: PerturbOptions,
) -> None:
    """Decode every frame, apply ``frame_fn`` (BGR), encode with libx264 at ``crf`` keeping the
    timestamps; audio packets are copied."""
    with av.open(src) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vout = _video_encoder(out, vin, crf, options)
        aout = out.add_stream_from_template(ain) if ain is not None else None
        last_pts = None
        for packet in inp.demux(*[s for s in (vin, ain) if s is not None]):
            if ain is not None and packet.stream.index == ain.index:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                pts = frame.pts if frame.pts is not None else (last_pts + 1 if last_pts is not None else 0)
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # the encoder needs increasing timestamps
                last_pts = pts
                if frame_fn is not None:
                    bgr = frame.reformat(format="bgr24", interpolation=_SWS_FLAGS).to_ndarray()
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_fn(bgr)), format="bgr24")
                    frame = frame.reformat(format=vout.pix_fmt, interpolation=_SWS_FLAGS)
                frame.pts, frame.time_base = pts, vin.time_base
                frame.pict_type = av.video.frame.PictureType.NONE  # no keyframes forced by the source
                for out_packet in vout.encode(frame):
                    out.mux(out_packet)
        for out_packet in vout.encode(None):
            out.mux(out_packet)


def decode_audio(path: str | os.PathLike) -> tuple[np.ndarray, int, float]:
    """The first audio stream as ``int16 [channels, n]``, its rate and its start time (s)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        layout = stream.layout.name
        resampler = av.AudioResampler(format="s16p", layout=layout, rate=stream.rate)
        parts, start = [], None
        for frame in container.decode(stream):
            if start is None:
                start = float(frame.time) if frame.time is not None else 0.0
            parts += [r.to_ndarray() for r in resampler.resample(frame)]
        parts += [r.to_ndarray() for r in resampler.resample(None)]
        channels = stream.channels
    signal = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.int16)
    return signal, stream.rate, start or 0.0


def _replace_audio(src: str, dst: Path, audio_fn: Callable[[np.ndarray, int], np.ndarray]) -> None:
    """Copy the video packets; replace the first audio stream by ``audio_fn`` of its signal,
    stored losslessly, starting at the source audio's start time."""
    signal, rate, start = decode_audio(src)
    perturbed = np.ascontiguousarray(audio_fn(signal, rate).astype(np.int16))
    codec = _LOSSLESS_AUDIO.get(dst.suffix.lower(), "pcm_s16le")
    with av.open(src) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        layout = inp.streams.audio[0].layout.name
        aout = out.add_stream(codec, rate=rate, layout=layout)
        aout.codec_context.time_base = Fraction(1, rate)
        first = int(round(start * rate))
        audio_packets = []
        for begin in range(0, perturbed.shape[1], _AUDIO_CHUNK):
            frame = av.AudioFrame.from_ndarray(perturbed[:, begin : begin + _AUDIO_CHUNK], format="s16p", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, first + begin, Fraction(1, rate)
            audio_packets += aout.encode(frame)
        audio_packets += aout.encode(None)
        pending = iter(audio_packets)
        next_audio = next(pending, None)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            t = float(packet.dts * packet.time_base)
            while next_audio is not None and float(next_audio.dts * next_audio.time_base) <= t:
                out.mux(next_audio)
                next_audio = next(pending, None)
            packet.stream = vout
            out.mux(packet)
        while next_audio is not None:
            out.mux(next_audio)
            next_audio = next(pending, None)


def perturb_video_file(
    src: str | os.PathLike, dst: str | os.PathLike, code: str, level: int, key: str,
    options: PerturbOptions = PerturbOptions(),
) -> dict:
    """Write the ``code``/``level`` copy of the video (with its audio) ``src`` to ``dst`` and
    check it (see the module docstring). ``key`` seeds the item's randomness. Returns what the
    check measured."""
    check_cell(code, level)
    src, dst = str(src), Path(dst)
    source = probe(src)
    rng = item_rng(options.seed, code, level, key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:  # keeps the extension: FFmpeg picks the container from it
        if TYPES[code] == "video":
            crf = compression_crf(code, level)
            fn = frame_perturbation(code, level, rng, options.block_rule)
            _reencode_video(src, tmp, fn, options.storage_crf if crf is None else crf, options)
        else:
            if source.audio_rate is None:
                raise ValueError(f"{src}: no audio stream to perturb")
            _replace_audio(src, tmp, audio_perturbation(code, level, rng))
        check_timing(source, probe(tmp), dst)
    return asdict(source)


def read_wav_int16(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A sound file of any sample encoding as int16 ``[n, channels]`` at its true level
    (soundfile's ``dtype="int16"`` would read a float wav as values in {-1, 0, 1})."""
    samples, rate = sf.read(str(path), dtype="float64", always_2d=True)  # [-1, 1) for every encoding
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16), rate


def perturb_roi_clip(
    video: str | os.PathLike, wav: str | os.PathLike, dst_video: str | os.PathLike,
    dst_wav: str | os.PathLike, code: str, level: int, key: str,
    options: PerturbOptions = PerturbOptions(),
) -> dict:
    """Write the perturbed copy of a mouth-ROI clip (video without audio + wav beside it).
    The wav is written first and the video last, so an existing ``dst_video`` means a complete
    copy."""
    check_cell(code, level)
    dst_video, dst_wav = Path(dst_video), Path(dst_wav)
    source = probe(video)
    rng = item_rng(options.seed, code, level, key)
    for d in (dst_video, dst_wav):
        d.parent.mkdir(parents=True, exist_ok=True)
    # The wav is renamed first (inner context), the video last.
    with atomic_path(dst_video) as tmp_video, atomic_path(dst_wav) as tmp_wav:
        if TYPES[code] == "video":
            crf = compression_crf(code, level)
            fn = frame_perturbation(code, level, rng, options.block_rule)
            _reencode_video(str(video), tmp_video, fn, options.storage_crf if crf is None else crf, options)
            check_timing(source, probe(tmp_video), dst_video)
            shutil.copyfile(wav, tmp_wav)
        else:
            samples, rate = read_wav_int16(wav)
            out = audio_perturbation(code, level, rng)(np.ascontiguousarray(samples.T), rate).T
            sf.write(str(tmp_wav), out, rate, subtype="PCM_16", format="WAV")
            if sf.info(str(tmp_wav)).frames != samples.shape[0]:
                raise PerturbCheckError(f"{dst_wav}: audio length changed")
            shutil.copyfile(video, tmp_video)
    return asdict(source)


# ---- a list of items -------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyJob:
    """One item to copy: sources, destinations (absolute) and its relative output paths."""

    item: lists.EvalItem
    video: str
    audio: str | None
    rel_video: str
    rel_audio: str | None


def relative_to_root(path: str, root: str | None) -> str:
    """``path`` relative to ``root`` when inside it, else the path without its anchor."""
    p = Path(os.path.abspath(path))
    if root is not None:
        try:
            return p.relative_to(os.path.abspath(root)).as_posix()
        except ValueError:
            pass
    return p.relative_to(p.anchor).as_posix()


def plan_jobs(
    items: Iterable[lists.EvalItem], data_root: str | None, out_dir: str | os.PathLike, roi: bool
) -> list[CopyJob]:
    """Where each item's copy goes under ``out_dir`` (the same relative paths)."""
    out_dir = Path(out_dir)
    jobs, seen = [], {}
    for item in items:
        rel_video = relative_to_root(item.video, data_root)
        rel_audio = relative_to_root(item.audio, data_root) if roi else None
        if rel_video in seen:
            raise ValueError(f"items {seen[rel_video]!r} and {item.id!r} share the video {item.video}")
        seen[rel_video] = item.id
        jobs.append(CopyJob(item, str(out_dir / rel_video), str(out_dir / rel_audio) if roi else None,
                            rel_video, rel_audio))
    return jobs


def _run_job(args: tuple[CopyJob, str, int, PerturbOptions, bool, str | None]) -> dict:
    job, code, level, options, roi, key = args
    start = time.perf_counter()
    record = {"id": job.item.id, "input": job.item.video, "output": job.rel_video, "status": "ok", "error": None}
    try:
        key = key or perturbed_stream_key(job.item.video, job.item.audio, code, roi)
        if roi:
            record["source"] = perturb_roi_clip(job.item.video, job.item.audio, job.video, job.audio,
                                                code, level, key, options)
        else:
            record["source"] = perturb_video_file(job.item.video, job.video, code, level, key, options)
    except Exception as err:  # noqa: BLE001 - one bad input must not stop the others
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _roi_stream_keys(jobs: list[CopyJob], code: str) -> dict[str, str | None]:
    """:func:`perturbed_stream_key` of each ROI job, None where an input cannot be read (its
    job then fails with the reason)."""
    keys: dict[str, str | None] = {}
    for job in jobs:
        try:
            keys[job.item.id] = perturbed_stream_key(job.item.video, job.item.audio, code, True)
        except OSError:
            keys[job.item.id] = None
    return keys


def _copy_of_leader(job: CopyJob, leader: CopyJob, code: str) -> dict:
    """A ROI job whose perturbed stream equals ``leader``'s: that copy's perturbed file, and the
    job's own other file (the wav is renamed into place first, the video last)."""
    start = time.perf_counter()
    record = {"id": job.item.id, "input": job.item.video, "output": job.rel_video, "status": "ok",
              "error": None, "copied_from": leader.rel_video}
    if TYPES[code] == "video":
        video_from, audio_from = leader.video, job.item.audio
    else:
        video_from, audio_from = job.item.video, leader.audio
    try:
        if not _is_done(leader):
            raise PerturbCheckError(f"the copy of {leader.item.video}, which has the same input stream, failed")
        for d in (job.video, job.audio):
            Path(d).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(job.video) as tmp_video, atomic_path(job.audio) as tmp_wav:
            shutil.copyfile(audio_from, tmp_wav)
            shutil.copyfile(video_from, tmp_video)
    except Exception as err:  # noqa: BLE001 - one bad input must not stop the others
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _is_done(job: CopyJob) -> bool:
    return os.path.exists(job.video) and (job.audio is None or os.path.exists(job.audio))


def settings_record(code: str, level: int, options: PerturbOptions, roi: bool) -> dict:
    return {"type": code, "level": level, "roi": roi, **asdict(options)}


def claim_out_dir(out_dir: Path, settings: dict) -> None:
    """Write ``perturbation.json``, or refuse a folder made with other settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "perturbation.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        mine = {k: v for k, v in settings.items() if k != "threads"}
        theirs = {k: v for k, v in old.items() if k != "threads"}
        if mine != theirs:
            raise ValueError(f"{out_dir} holds copies made with other settings ({theirs}); "
                             f"use another folder (asked for {mine})")
        return
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def write_outputs_lists(out_dir: Path, jobs: list[CopyJob]) -> None:
    """``list.csv`` (the copies, relative to ``out_dir``) and ``videos.txt``."""
    rows = [
        {"path": j.rel_video, "label": "" if j.item.label is None else j.item.label,
         "category": j.item.category or "", "audio": j.rel_audio or "", "id": j.item.id}
        for j in jobs
    ]
    with atomic_path(out_dir / "list.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "category", "audio", "id"])
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out_dir / "videos.txt", "".join(j.rel_video + "\n" for j in jobs))


def perturb_items(
    items: list[lists.EvalItem], data_root: str | None, out_dir: str | os.PathLike, code: str,
    level: int, options: PerturbOptions = PerturbOptions(), roi: bool = False, workers: int = 1,
    progress: bool = True,
) -> dict[str, int]:
    """Write the copies of ``items`` missing under ``out_dir`` (see the module docstring);
    returns counts ``done`` (already there), ``written`` and ``failed``."""
    check_cell(code, level)
    out_dir = Path(out_dir)
    claim_out_dir(out_dir, settings_record(code, level, options, roi))
    jobs = plan_jobs(items, data_root, out_dir, roi)
    write_outputs_lists(out_dir, jobs)
    # ROI clips that share the perturbed stream: the first is perturbed, the others copy it.
    keys = _roi_stream_keys(jobs, code) if roi else {}
    first: dict[str, CopyJob] = {}
    leader: dict[str, CopyJob] = {}
    for job in jobs:
        key = keys.get(job.item.id)
        if key is not None:
            leader_job = first.setdefault(key, job)
            if leader_job is not job:
                leader[job.item.id] = leader_job
    todo = [j for j in jobs if not _is_done(j)]
    counts = {"done": len(jobs) - len(todo), "written": 0, "failed": 0}
    if workers > 1 and options.threads == 0:
        options = PerturbOptions(**{**asdict(options), "threads": 1})
    args = [(j, code, level, options, roi, keys.get(j.item.id)) for j in todo if j.item.id not in leader]
    followers = [j for j in todo if j.item.id in leader]
    with open(out_dir / "perturb.log.jsonl", "a", encoding="utf-8") as log, tqdm(
        total=len(todo), unit="video", desc=cell_name(code, level), disable=not progress
    ) as bar:
        copies = (_copy_of_leader(j, leader[j.item.id], code) for j in followers)
        for record in itertools.chain(_map(_run_job, args, workers), copies):
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            log.flush()
            if record["status"] == "ok":
                counts["written"] += 1
            else:
                counts["failed"] += 1
                logger.warning("%s: %s", record["input"], record["error"])
            bar.update()
    return counts


def _map(fn, args: list, workers: int) -> Iterator[dict]:
    if workers <= 1 or len(args) <= 1:
        yield from map(fn, args)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(fn, args)
