"""Provenance of a score record: which file, model, settings and code produced it.

``provenance`` (a JSON object in every record)::

    {"input_sha256", "input_size", "input": path,         # the file the user gave
     "streams": {"video": {...}, "audio": {...}},          # as decoded from that file
     "files": {"video": {path, sha256, size}, "audio": {...}},   # what the scorer read
     "checkpoint", "checkpoint_sha256", "layer",
     "settings": {"score": ..., "input": ..., "speech": ...},    # everything that changes a score
     "verdict_settings": ..., "drift_settings": ...,
     "precision", "device", "code_version": {"version", "git_commit", "git_dirty"},
     "versions": {"python", "torch", "fairseq", "numpy", "silero_vad"}, "time_utc"}

``streams`` holds, per stream, what the container says and the decoder sees: codec, fps,
frame count, width, height, rotation (degrees, counter-clockwise, from the display matrix),
sample rate, channels, duration. ``code_version`` is the installed package version plus, when
the code runs from a git checkout that tracks this file, the commit and whether the work tree
had uncommitted changes (None elsewhere; never an error).
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import logging
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import av
import numpy as np
import torch

from sf_fairseq.resume import file_sha256

from .speech import SpeechSettings

if TYPE_CHECKING:
    from .pipeline import Scorer

logger = logging.getLogger(__name__)

_GIT_TIMEOUT_S = 10


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=_GIT_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"version", "git_commit", "git_dirty"}`` of the running code (git fields None when it
    does not run from a checkout that tracks this file)."""
    here = Path(__file__).resolve()
    commit = dirty = None
    # A checkout counts only if it tracks this very file (an installed copy inside some other
    # repository's folder, e.g. a venv in a checkout, must not borrow that repository's commit).
    if _git(["ls-files", "--error-unmatch", here.name], here.parent) is not None:
        commit = _git(["rev-parse", "HEAD"], here.parent)
        status = _git(["status", "--porcelain", "--untracked-files=no"], here.parent)
        dirty = None if status is None else bool(status)
    return {"version": _version("sf_fairseq"), "git_commit": commit or None, "git_dirty": dirty}


def library_versions() -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fairseq": _version("ve-fairseq") or _version("fairseq"),
        "numpy": np.__version__,
        "silero_vad": _version("silero-vad"),
    }


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Display rotation of a video stream in degrees (counter-clockwise), from the first
    decoded frame's display matrix or the legacy ``rotate`` tag; 0 when none."""
    try:
        frame = next(container.decode(stream))
    except (StopIteration, av.error.FFmpegError):
        frame = None
    rotation = float(getattr(frame, "rotation", 0) or 0) if frame is not None else 0.0
    if not rotation and stream.metadata.get("rotate"):
        rotation = -float(stream.metadata["rotate"])
    return rotation


def stream_info(path: str | os.PathLike) -> dict[str, Any]:
    """Stream parameters of a media file: ``{"video": {...} | None, "audio": {...} | None,
    "duration_s"}`` (an ``error`` entry instead when it cannot be opened)."""
    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError) as err:
        return {"error": f"{type(err).__name__}: {err}"}
    with container:
        duration = None if container.duration is None else container.duration / av.time_base
        video = audio = None
        if container.streams.video:
            v = container.streams.video[0]
            video = {
                "codec": v.codec_context.name,
                "fps": None if v.average_rate is None else float(v.average_rate),
                "frames": int(v.frames) or None,
                "width": v.codec_context.width,
                "height": v.codec_context.height,
                "duration_s": None if v.duration is None else float(v.duration * v.time_base),
                "rotation": _rotation(container, v),
            }
        if container.streams.audio:
            a = container.streams.audio[0]
            audio = {
                "codec": a.codec_context.name,
                "sample_rate": a.codec_context.sample_rate,
                "channels": a.codec_context.channels,
                "duration_s": None if a.duration is None else float(a.duration * a.time_base),
            }
    return {"video": video, "audio": audio, "duration_s": duration}


def file_entry(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "sha256", "size"}`` of a file."""
    return {"path": os.path.abspath(path), "sha256": file_sha256(path), "size": os.path.getsize(path)}


def score_settings(scorer: "Scorer", speech: SpeechSettings) -> dict[str, Any]:
    """Every setting that changes a score of a given input with a given checkpoint."""
    return {"score": asdict(scorer.options), "input": asdict(scorer.settings), "speech": speech.as_record()}


def clip_provenance(
    input_path: str | os.PathLike,
    files: Mapping[str, str | os.PathLike],
    checkpoint: str | os.PathLike,
    scorer: "Scorer",
    speech: SpeechSettings = SpeechSettings(),
    **extra_settings: Any,
) -> dict[str, Any]:
    """The ``provenance`` field of one clip's record.

    Args:
        input_path: the file the user gave (raw video, or the ROI video).
        files: what the scorer read, by role (``{"video": roi.mp4, "audio": clip.wav}``).
        checkpoint: the checkpoint file.
        scorer: the :class:`.pipeline.Scorer` used (options, input settings, layer, precision,
            device).
        speech: voice-activity settings of the gated score.
        extra_settings: further settings to record as they are (e.g. ``verdict_settings``,
            ``drift_settings``, ``windows``): JSON-ready values.
    """
    encoder = scorer.encoder
    entry = file_entry(input_path)
    return {
        "input": entry["path"],
        "input_sha256": entry["sha256"],
        "input_size": entry["size"],
        "streams": stream_info(input_path),
        "files": {role: file_entry(p) for role, p in files.items()},
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "layer": encoder.output_layer,
        "settings": score_settings(scorer, speech),
        **extra_settings,
        "precision": encoder.precision,
        "device": str(encoder.device),
        "code_version": code_version(),
        "versions": library_versions(),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
