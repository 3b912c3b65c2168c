"""Score files: JSON Lines of :class:`sf_fairseq.records.ScoreRecord`, one line per clip,
appended and flushed as it is scored; and the reader of ``sf-prepare``'s status record of a ROI
video (:class:`sf_fairseq.records.PrepareRecord`).

The record formats, their JSON Schemas and versions are described in :mod:`sf_fairseq.records`.
Every record goes through :class:`ResultWriter`, which checks it against its schema, and is read
back through :func:`iter_records` / :func:`latest_records`, which return typed records.

A file may hold several records for one id (a failed item retried on a rerun); the last one
wins. A run killed mid-line leaves a partial last line: readers skip it with a warning and
:class:`ResultWriter` cuts it off before appending, so no record is ever glued to it. A complete
line that is not a valid record stops the reader with a :class:`~sf_fairseq.records.RecordError`
naming the file and line.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sf_fairseq.records import (FAILED, OK, PrepareRecord, RecordError, ScoreRecord, Transcripts, prepare_record_path,
                                read_prepare_record)

logger = logging.getLogger(__name__)

__all__ = ["FAILED", "OK", "PrepareStatus", "ResultWriter", "file_stamp", "has_transcripts", "input_stamps",
           "iter_records", "latest_records", "prepare_item_status", "prepare_notes", "prepare_status",
           "result_files"]


def has_transcripts(record: ScoreRecord | None, model: str) -> bool:
    """Whether ``record`` holds transcripts from ``model`` (not a failed transcription)."""
    t = None if record is None else record.transcripts
    return isinstance(t, Transcripts) and t.model == model and t.ok


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
        record: the status record.
        track: the face track the ROI video holds (index into the landmarks).
    """

    out_dir: Path
    record: PrepareRecord
    track: int


def prepare_item_status(out_dir: str | os.PathLike, item_id: str, video: str | None = None) -> PrepareStatus | None:
    """The status record of item ``item_id`` of the prepare output folder ``out_dir``
    (``<out_dir>/status/<item_id>.json``), for its ROI video ``<out_dir>/video/<video>.mp4``
    (default ``item_id``, the first track); None when the record is missing or invalid (logged)."""
    record = read_prepare_record(out_dir, item_id)
    if record is None:
        return None
    rel = item_id if video is None else video
    track = next((t.get("track", 0) for t in record.tracks or ()
                  if isinstance(t, dict) and t.get("video") == f"video/{rel}.mp4"), None)
    if track is None:
        suffix = _TRACK_SUFFIX.search(rel)
        track = int(suffix.group(1)) if suffix else 0
    return PrepareStatus(Path(out_dir), record, int(track))


def prepare_status(video: str | os.PathLike) -> PrepareStatus | None:
    """The status record ``<out>/status/<id>.json`` of the ROI video
    ``<out>/video/<id>[__track<k>].mp4`` (the video itself need not exist: an item prepare
    found no face in has a status but no video); None when the video is not in a prepare
    output folder or the status file is missing or unreadable (best effort: it never fails a
    record; an invalid status record is logged).

    The output folder is the parent of a folder named ``video`` above the file, the nearest
    one with the item's status record (an id may hold a folder named ``video`` itself). Callers
    that know the folder and the id use :func:`prepare_item_status`."""
    video = Path(video)
    for folder in video.parents:
        if folder.name != "video":
            continue
        rel = video.relative_to(folder).with_suffix("").as_posix()
        item_id = _TRACK_SUFFIX.sub("", rel)
        if prepare_record_path(folder.parent, item_id).exists():
            return prepare_item_status(folder.parent, item_id, rel)
    return None


def prepare_notes(video: str | os.PathLike) -> list[str]:
    """Notes ``sf-prepare`` recorded for the ROI video ``<out>/video/<id>[__track<k>].mp4``, from
    ``<out>/status/<id>.json`` (see :func:`prepare_status`); empty without one."""
    status = prepare_status(video)
    return list(status.record.notes or ()) if status is not None else []


def iter_records(path: str | os.PathLike) -> Iterator[ScoreRecord]:
    """Records of one JSONL file in file order (malformed lines, e.g. a partially written last
    one, skipped with a warning).

    Raises:
        RecordError: a line is a score record that does not match its schema (the message
            names the file and line).
    """
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
            try:
                yield ScoreRecord.from_dict(record)
            except RecordError as err:
                raise RecordError(f"{path}:{lineno}: {err}") from None


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


def latest_records(paths: Iterable[str | os.PathLike]) -> dict[str, ScoreRecord]:
    """The last record of every id over ``paths`` (files or directories), in first-seen order."""
    latest: dict[str, ScoreRecord] = {}
    for path in result_files(paths):
        for record in iter_records(path):
            latest[record.id] = record
    return latest


class ResultWriter:
    """Appends records to a JSONL file, one flushed line each (checked against the score
    record's schema first: :meth:`write`).

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

    def write(self, record: ScoreRecord | Mapping[str, Any]) -> ScoreRecord:
        """Append ``record`` (a mapping is read with :meth:`ScoreRecord.from_dict`, so a writer's
        mistake raises :class:`RecordError` here, before anything is written); returns it typed."""
        if not isinstance(record, ScoreRecord):
            record = ScoreRecord.from_dict(record)
        self._file.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()
        self._note(record)
        return record

    def _note(self, record: ScoreRecord) -> None:
        if record.status == OK:
            self.done.add(record.id)
            self.inputs[record.id] = record.inputs
        else:
            self.done.discard(record.id)
            self.inputs.pop(record.id, None)

    def unchanged(self, item_id: str, inputs: dict[str, Any]) -> bool:
        """Whether ``item_id`` was scored successfully from input files with these stamps."""
        return item_id in self.done and self.inputs.get(item_id) == inputs

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
