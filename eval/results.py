"""Score records as JSON Lines: one line per clip, appended and flushed as it is scored.

A record (a JSON object)::

    {"id": ..., "video": ..., "audio": ..., "label": 1 | 0 | null, "category": str | null,
     "status": "ok" | "failed", "score": float | null, "best_offset": int | null,
     "best_offset_ms": float | null, "n_frames": int | null, "curve": [S(-K) .. S(K)] | null,
     "error_type": str | null, "error": str | null,
     "inputs": {"video": {"size": int, "mtime_ns": int} | null, "audio": {...} | null},
     "notes": [str]}

``inputs`` is the size and modification time of each input file when it was read (null for a
file that did not exist): a rerun scores an item again when either changed, so an input
replaced by another file is never reported with the old file's score (a file rewritten with
the same size within the file system's timestamp resolution would go unnoticed; the content is
not hashed, to keep reruns cheap). ``notes`` carries what preprocessing noted about the item
(e.g. ``silent audio (all samples are zero)``), read from ``sf-prepare``'s
``status/<id>.json`` when the ROI video lies in a prepare output folder (``video/<id>.mp4``),
else empty.

Verdict fields (:mod:`.verdict`; ``sf-score-batch`` writes them in every record)::

    {"verdict": "real" | "fake" | "inconclusive" | null, "reasons": [code] | null,
     "p_value": float | null, "alpha": float | null, "reference": {...} | null,
     "score_speech": float | null, "best_offset_speech": int | null, "curve_speech": [...] | null,
     "speech_frames": int | null, "speech_seconds": float | null, "speech_fraction": float | null,
     "audio_stats": {...} | null, "drift": {...} | null, "face": {...} (prepared items only),
     "provenance": {...} | null, "threshold_verdict": "real" | "fake" (with --calibration)}

``score`` stays the paper's score; ``score_speech`` is the same offset search over speech
frames only. A failed record has every verdict field null, except an item ``sf-prepare`` found
no face or no audio in, or too short: ``inconclusive`` with that reason (``no_face``,
``no_audio``, ``clip_too_short``). ``provenance`` (:mod:`.provenance`) is null when the
scorer's checkpoint file is not known (library use without it) and for failed items.

With a transcription model (``--transcribe``), a record also holds ``"transcripts"``: the
lips-only and audio-only transcripts of the clip (see :mod:`.transcribe`)::

    {"lips": str | null, "audio": str | null, "word_disagreement": float | null,
     "char_disagreement": float | null, "model": checkpoint path,
     "error_type": str | null, "error": str | null}

A clip that was scored but could not be transcribed keeps its score; its transcript fields are
null and ``error_type``/``error`` say why (a rerun transcribes it again). A clip that could not
be loaded has ``"transcripts": null``.

A file may hold several records for one id (a failed item retried on a rerun); the last one
wins. A run killed mid-line leaves a partial last line: readers skip it with a warning and
:class:`ResultWriter` cuts it off before appending, so no record is ever glued to it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

logger = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"


def transcript_record(transcripts: Any, model: str) -> dict[str, Any]:
    """The ``transcripts`` field of a transcribed clip (a :class:`.transcribe.ClipTranscripts`)."""
    return {
        "lips": transcripts.lips,
        "audio": transcripts.audio,
        "word_disagreement": transcripts.word_disagreement,
        "char_disagreement": transcripts.char_disagreement,
        "model": model,
        "error_type": None,
        "error": None,
    }


def transcript_failure(model: str, error: BaseException) -> dict[str, Any]:
    """The ``transcripts`` field of a clip that could not be transcribed."""
    return {"lips": None, "audio": None, "word_disagreement": None, "char_disagreement": None,
            "model": model, "error_type": type(error).__name__, "error": str(error)}


def has_transcripts(record: dict[str, Any], model: str) -> bool:
    """Whether ``record`` holds transcripts from ``model`` (not a failed transcription)."""
    t = record.get("transcripts")
    return isinstance(t, dict) and t.get("model") == model and t.get("word_disagreement") is not None


def transcribe_records(
    transcribe: Callable[[Sequence[Any]], list[Any]], clips: Sequence[Any], model: str
) -> list[dict[str, Any]]:
    """``transcripts`` fields of a batch of clips: ``transcribe`` (e.g.
    ``Transcriber.transcribe_clips``) on the whole batch, and clip by clip if the batch fails
    (e.g. out of memory), so that one bad clip only fails its own field. Never raises for a
    clip: a ``RuntimeError``/``ValueError``/``IndexError`` becomes that clip's failure."""
    errors = (RuntimeError, ValueError, IndexError)
    try:
        return [transcript_record(t, model) for t in transcribe(list(clips))]
    except errors as err:
        if len(clips) == 1:
            logger.warning("transcription failed: %s", err)
            return [transcript_failure(model, err)]
        logger.warning("transcribing a batch of %d failed (%s); transcribing its clips one at a time", len(clips), err)
    out = []
    for clip in clips:
        try:
            out.append(transcript_record(transcribe([clip])[0], model))
        except errors as err:
            out.append(transcript_failure(model, err))
    return out


def file_stamp(path: str | os.PathLike) -> dict[str, int] | None:
    """Size and modification time of a file (None when it does not exist)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def input_stamps(video: str | os.PathLike, audio: str | os.PathLike) -> dict[str, Any]:
    """The ``inputs`` field of a record for a clip read from ``video`` and ``audio``."""
    return {"video": file_stamp(video), "audio": file_stamp(audio)}


_TRACK_SUFFIX = re.compile(r"__track(\d+)$")


@dataclass
class PrepareStatus:
    """``sf-prepare``'s status record of a ROI video's item.

    Attributes:
        out_dir: the prepare output folder (paths in ``record`` are relative to it).
        record: the status record (``status``, ``notes``, ``width``, ``height``, ``tracks``,
            ``landmarks``, ``truncated``, ...).
        track: the face track the ROI video holds (index into the landmarks).
    """

    out_dir: Path
    record: dict[str, Any]
    track: int


def prepare_status(video: str | os.PathLike) -> PrepareStatus | None:
    """The status record ``<out>/status/<id>.json`` of the ROI video
    ``<out>/video/<id>[__track<k>].mp4`` (the video itself need not exist: an item prepare
    found no face in has a status but no video); None when the video is not in a prepare
    output folder or the status file is missing or unreadable (best effort: it never fails a
    record)."""
    video = Path(video)
    for folder in video.parents:
        if folder.name != "video":
            continue
        rel = video.relative_to(folder).with_suffix("").as_posix()
        item_id = _TRACK_SUFFIX.sub("", rel)
        try:
            record = json.loads((folder.parent / "status" / f"{item_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict):
            return None
        track = next((t.get("track", 0) for t in record.get("tracks") or ()
                      if isinstance(t, dict) and t.get("video") == f"video/{rel}.mp4"), None)
        if track is None:
            suffix = _TRACK_SUFFIX.search(rel)
            track = int(suffix.group(1)) if suffix else 0
        return PrepareStatus(folder.parent, record, int(track))
    return None


def prepare_notes(video: str | os.PathLike) -> list[str]:
    """Notes ``sf-prepare`` recorded for the ROI video ``<out>/video/<id>[__track<k>].mp4``, from
    ``<out>/status/<id>.json`` (see :func:`prepare_status`); empty without one."""
    status = prepare_status(video)
    notes = status.record.get("notes") if status is not None else None
    return [str(note) for note in notes] if isinstance(notes, list) else []


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of one JSONL file in file order (malformed lines skipped with a warning)."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d: skipping a malformed (partially written?) line", path, lineno)
                continue
            if not isinstance(record, dict) or "id" not in record:
                logger.warning("%s:%d: skipping a line that is not a score record", path, lineno)
                continue
            yield record


def result_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand directories to their ``*.jsonl`` files (sorted); keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise FileNotFoundError(f"no *.jsonl score files in {p}")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"score file not found: {p}")
    return out


def latest_records(paths: Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """The last record of every id over ``paths`` (files or directories), in first-seen order."""
    latest: dict[str, dict[str, Any]] = {}
    for path in result_files(paths):
        for record in iter_records(path):
            latest[record["id"]] = record
    return latest


class ResultWriter:
    """Appends records to a JSONL file, one flushed line each.

    ``done`` holds the ids already scored successfully in the file (skipped on a rerun when
    their input files are unchanged); ``inputs`` maps each of them to its record's ``inputs``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.done: set[str] = set()
        self.inputs: dict[str, Any] = {}
        if self.path.exists():
            self._cut_partial_line()
            for record in iter_records(self.path):
                self._note(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def _cut_partial_line(self) -> None:
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                cut = data.rfind(b"\n") + 1
                logger.warning("%s: removing a partially written last line", self.path)
                f.truncate(cut)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        self._note(record)

    def _note(self, record: dict[str, Any]) -> None:
        if record.get("status") == OK:
            self.done.add(record["id"])
            self.inputs[record["id"]] = record.get("inputs")
        else:
            self.done.discard(record["id"])
            self.inputs.pop(record["id"], None)

    def unchanged(self, item_id: str, inputs: dict[str, Any]) -> bool:
        """Whether ``item_id`` was scored successfully from input files with these stamps."""
        return item_id in self.done and self.inputs.get(item_id) == inputs

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
