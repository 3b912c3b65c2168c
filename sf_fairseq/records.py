"""The typed records the stages hand each other: score records, their transcripts, prepare records.

One class per record, each with one JSON Schema (``sf_fairseq/schemas/``) and a schema version:

* :class:`ScoreRecord` (``score-record.schema.json``): one line of a score file
  (``scores.jsonl``) as ``sf-score-batch``, ``sf-score-ray``, ``sf-benchmark`` and
  ``sf-robustness`` write it; files are read and written by :mod:`sf_fairseq.eval.results`.
* :class:`Transcripts` (``transcripts.schema.json``): a score record's ``transcripts`` field.
* :class:`PrepareRecord` (``prepare-record.schema.json``): ``sf-prepare``'s
  ``status/<id>.json`` (and the lines of its ``<split>.log.jsonl``).

``to_dict`` gives what goes on disk, ``from_dict`` reads it back and checks every field's type,
raising :class:`RecordError` with the field's name. Versions: a record holds ``schema_version``
(records written before versions existed have none and read as version 0, upgraded without
loss: fields they lack read as null). Adding a field keeps the version; an incompatible change
bumps it, and readers keep reading the older versions. A record of a newer version than this
code knows is refused with a message saying so. Keys a record holds that this code does not
know are kept in ``extra`` and written back unchanged.

Score record (a JSON object; ``sf-score-batch`` writes every field below except those marked
"optional key")::

    {"schema_version": 1, "id": ..., "video": ..., "audio": ..., "label": 1 | 0 | null,
     "category": str | null, "status": "ok" | "failed", "score": float | null,
     "best_offset": int | null, "best_offset_ms": float | null, "n_frames": int | null,
     "curve": [S(-K) .. S(K)] | null, "error_type": str | null, "error": str | null,
     "inputs": {"video": {"size": int, "mtime_ns": int} | null, "audio": {...} | null} | null,
     "notes": [str], <verdict fields>, "provenance": {...} | null}

``inputs`` is the size and modification time of each input file when it was read (null for a
file that did not exist): a rerun scores an item again when either changed, so an input
replaced by another file is never reported with the old file's score (a file rewritten with
the same size within the file system's timestamp resolution would go unnoticed; the content is
not hashed, to keep reruns cheap). ``notes`` carries what preprocessing noted about the item
(e.g. ``silent audio (all samples are zero)``), read from ``sf-prepare``'s
``status/<id>.json`` when the ROI video lies in a prepare output folder (``video/<id>.mp4``),
else empty.

Verdict fields (:mod:`sf_fairseq.eval.verdict`)::

    {"verdict": "real" | "fake" | "inconclusive" | null, "reasons": [code] | null,
     "p_value": float | null, "alpha": float | null, "reference": {...} | null,
     "score_speech": float | null, "best_offset_speech": int | null, "curve_speech": [...] | null,
     "speech_frames": int | null, "speech_seconds": float | null, "speech_fraction": float | null,
     "audio_stats": {...} | null, "drift": {...} | null}

``score`` stays the paper's score; ``score_speech`` is the same offset search over speech
frames only. A failed record has every verdict field null, except an item ``sf-prepare`` found
no face or no audio in, or too short: ``inconclusive`` with that reason (``no_face``,
``no_audio``, ``clip_too_short``). ``provenance`` (:mod:`sf_fairseq.eval.provenance`) is null
when the scorer's checkpoint file is not known (library use without it) and for failed items.

Optional keys (absent from a record that does not have them, :data:`ABSENT` in the class):
``face`` (face-track statistics, prepared items only), ``threshold_verdict`` (``"real"`` or
``"fake"``, with ``--calibration``), ``frame_agreement`` (per-frame agreement at the best
offset, ``sf-benchmark`` on localisation datasets), ``transcripts`` (with ``--transcribe``: a
:class:`Transcripts` object, or null for a clip that could not be loaded) and ``track``
(``sf-score-ray``: ``{"input": <input id>, "index": k, "count": n}``, or null for an input with
no scored track).

Transcripts (the lips-only and audio-only transcripts of a clip, see
:mod:`sf_fairseq.eval.transcriber`)::

    {"lips": str | null, "audio": str | null, "word_disagreement": float | null,
     "char_disagreement": float | null, "model": checkpoint path,
     "error_type": str | null, "error": str | null}

A clip that was scored but could not be transcribed keeps its score; its transcript fields are
null and ``error_type``/``error`` say why (a rerun transcribes it again). The transcripts object
carries no version of its own: it has the version of the score record that holds it.

Prepare record (``status/<id>.json``, read with :func:`read_prepare_record`; see
:mod:`sf_fairseq.preprocess.prepare_engine` for the statuses): ``id``, ``input``, ``status``,
``reason`` always; ``seconds`` for every processed input; ``input_size``/``input_mtime_ns``
when the input existed; the source facts (``n_frames``, ``source_fps``, ``width``, ``height``,
``rotation``, ``notes``, ``truncated``) once decoding started; the audio fields (``audio``,
``n_samples``, ``source_sample_rate``, ``source_channels``, ``audio_offset_s``,
``silent_audio``) when a wav was written; ``landmarks`` and ``tracks`` (``[{"track": k, "id",
"video", "face_frames"}]``, paths relative to the output folder) when faces were followed;
``resumed`` in the log of a rerun that kept it.

This module is standard library only (numpy-free, torch-free), so that reports and other readers
stay light.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

SCHEMA_VERSION_KEY = "schema_version"

logger = logging.getLogger(__name__)


class RecordError(ValueError):
    """A record that does not match its schema (the message names the field)."""


class Absent(enum.Enum):
    """Type of :data:`ABSENT`."""

    ABSENT = "absent"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = Absent.ABSENT
"""Value of an optional key a record does not hold (falsy; omitted by ``to_dict``)."""


def _json(types: str | tuple[str, ...], *, optional_key: bool = False, items: str | tuple[str, ...] | None = None,
          enum_values: tuple[Any, ...] | None = None, default: Any = None) -> Any:
    """A record field: its JSON types (JSON Schema names), whether it is an optional key (absent
    unless set), the type of array items and the allowed values. The schema files repeat these
    (``tests/test_records.py`` checks that they agree)."""
    spec: dict[str, Any] = {"type": [types] if isinstance(types, str) else list(types)}
    if items is not None:
        spec["items"] = {"type": [items] if isinstance(items, str) else list(items)}
    if enum_values is not None:
        spec["enum"] = list(enum_values)
    metadata = {"json": spec, "optional_key": optional_key}
    if optional_key:
        return field(default=ABSENT, metadata=metadata)
    if isinstance(default, list):
        return field(default_factory=list, metadata=metadata)
    return field(default=default, metadata=metadata)


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "array": list, "object": dict}[name])


def _check(cls: type, name: str, value: Any, spec: Mapping[str, Any]) -> None:
    if not any(_is_type(value, t) for t in spec["type"]):
        raise RecordError(f"{cls.__name__} field {name!r}: expected {' or '.join(spec['type'])}, "
                          f"got {type(value).__name__} {value!r:.80}")
    if "enum" in spec and value not in spec["enum"]:
        raise RecordError(f"{cls.__name__} field {name!r}: {value!r} is not one of {spec['enum']}")
    if "items" in spec and isinstance(value, list):
        item_types = spec["items"]["type"]
        for item in value:
            if not any(_is_type(item, t) for t in item_types):
                raise RecordError(f"{cls.__name__} field {name!r}: expected a list of {' or '.join(item_types)}, "
                                  f"holding {type(item).__name__} {item!r:.80}")


def _version(cls: type, data: Mapping[str, Any]) -> int:
    """The schema version of ``data`` (0 without one); refuses a newer one than ``cls`` knows."""
    version = data.get(SCHEMA_VERSION_KEY, 0)
    if not _is_type(version, "integer") or version < 0:
        raise RecordError(f"{cls.__name__} field {SCHEMA_VERSION_KEY!r}: expected a non-negative integer, "
                          f"got {version!r}")
    if version > cls.SCHEMA_VERSION:
        raise RecordError(f"{cls.SCHEMA} version {version} was written by a newer sf_fairseq (this one reads "
                          f"versions up to {cls.SCHEMA_VERSION}); upgrade sf_fairseq to read it")
    return version


class _Record:
    """What the record classes share: typed fields checked against their JSON types, unknown
    keys kept in ``extra``, optional keys omitted while :data:`ABSENT`."""

    SCHEMA: str
    SCHEMA_VERSION: int
    SCHEMA_FILE: str  # in sf_fairseq/schemas/ (see schema_path)
    # Fields a record of the current version must hold (older versions: only ``_REQUIRED_V0``).
    _REQUIRED_V0: tuple[str, ...] = ()
    # Whether to_dict writes ``schema_version`` (a sub-record has its holder's).
    _WRITES_VERSION = True

    extra: dict[str, Any]

    @classmethod
    def record_fields(cls) -> list:
        """The typed fields (every dataclass field but ``extra``), in on-disk order."""
        return [f for f in fields(cls) if f.name != "extra"]

    @classmethod
    def required(cls) -> list[str]:
        """Keys a record of the current version always holds (besides ``schema_version``)."""
        return [f.name for f in cls.record_fields() if not f.metadata["optional_key"]]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The record ``data`` (a decoded JSON object) holds, checked field by field.

        Raises:
            RecordError: not an object, a missing or mistyped field, or a newer schema version.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        version = _version(cls, data)
        required = cls.required() if version == cls.SCHEMA_VERSION else cls._REQUIRED_V0
        missing = [name for name in required if name not in data]
        if missing:
            raise RecordError(f"{cls.__name__} (version {version}) lacks field(s) {', '.join(map(repr, missing))}")
        values: dict[str, Any] = {}
        for f in cls.record_fields():
            if f.name not in data:
                continue  # older versions: the field's default (null, [] or ABSENT)
            _check(cls, f.name, data[f.name], f.metadata["json"])
            values[f.name] = cls._parse_field(f.name, data[f.name])
        known = {f.name for f in cls.record_fields()} | {SCHEMA_VERSION_KEY}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    @classmethod
    def _parse_field(cls, name: str, value: Any) -> Any:
        """The typed value of a checked field (sub-records override this)."""
        return value

    @classmethod
    def coerce(cls, record: Any) -> Any:
        """``record`` if it is already of this class, else :meth:`from_dict` of it (for functions
        that also take records as plain mappings, e.g. built by hand in a test)."""
        return record if isinstance(record, cls) else cls.from_dict(record)

    def to_dict(self) -> dict[str, Any]:
        """The record as written to disk (JSON-ready): ``schema_version``, the fields (optional
        keys only when set), then the unknown keys it was read with."""
        out: dict[str, Any] = {SCHEMA_VERSION_KEY: self.SCHEMA_VERSION} if self._WRITES_VERSION else {}
        for f in self.record_fields():
            value = getattr(self, f.name)
            if value is ABSENT:
                continue
            out[f.name] = value.to_dict() if isinstance(value, _Record) else value
        out.update(self.extra)
        return out

    # Read-only mapping access to the on-disk form, for code not yet converted to the typed
    # fields (``record["score"]``, ``record.get("status")``, ``"transcripts" in record``): the
    # value is that of ``to_dict()``, and unknown keys are found in ``extra``. New code reads
    # the attributes.
    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        if key == SCHEMA_VERSION_KEY and self._WRITES_VERSION:
            return self.SCHEMA_VERSION
        if key not in self._field_names() or (value := getattr(self, key)) is ABSENT:
            raise KeyError(key)
        return value.to_dict() if isinstance(value, _Record) else value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    __iter__ = None  # not a full mapping: iterate over to_dict()

    @classmethod
    def _field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in cls.record_fields())


@dataclass
class Transcripts(_Record):
    """A score record's ``transcripts`` field: the lips-only and audio-only transcripts of one
    clip and their disagreement (module docstring)."""

    SCHEMA = "sf_fairseq/transcripts"
    SCHEMA_VERSION = 1
    SCHEMA_FILE = "transcripts.schema.json"
    _REQUIRED_V0 = ("model",)
    _WRITES_VERSION = False

    lips: str | None = _json(("string", "null"))
    audio: str | None = _json(("string", "null"))
    word_disagreement: float | None = _json(("number", "null"))
    char_disagreement: float | None = _json(("number", "null"))
    model: str = _json("string", default="")
    error_type: str | None = _json(("string", "null"))
    error: str | None = _json(("string", "null"))
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Transcripts":
        # Versioned with the score record that holds it: no version of its own to read.
        return super().from_dict(data if SCHEMA_VERSION_KEY in data else {**data, SCHEMA_VERSION_KEY: 1})

    @classmethod
    def failure(cls, model: str, error: BaseException) -> "Transcripts":
        """The transcripts field of a clip that could not be transcribed."""
        return cls(model=model, error_type=type(error).__name__, error=str(error))

    @property
    def ok(self) -> bool:
        """Whether the clip was transcribed (not a failed transcription)."""
        return self.word_disagreement is not None


OK = "ok"
FAILED = "failed"


@dataclass
class ScoreRecord(_Record):
    """One clip's score record (module docstring); ``to_dict`` is its JSONL line."""

    SCHEMA = "sf_fairseq/score-record"
    SCHEMA_VERSION = 1
    SCHEMA_FILE = "score-record.schema.json"
    _REQUIRED_V0 = ("id",)

    id: str = _json("string", default="")
    video: str | None = _json(("string", "null"))
    audio: str | None = _json(("string", "null"))
    label: int | None = _json(("integer", "null"))
    category: str | None = _json(("string", "null"))
    status: str = _json("string", enum_values=(OK, FAILED), default=FAILED)
    score: float | None = _json(("number", "null"))
    best_offset: int | None = _json(("integer", "null"))
    best_offset_ms: float | None = _json(("number", "null"))
    n_frames: int | None = _json(("integer", "null"))
    curve: list[float] | None = _json(("array", "null"), items="number")
    frame_agreement: list[float] | Absent = _json("array", items="number", optional_key=True)
    error_type: str | None = _json(("string", "null"))
    error: str | None = _json(("string", "null"))
    inputs: dict[str, Any] | None = _json(("object", "null"))
    notes: list[str] = _json("array", items="string", default=[])
    verdict: str | None = _json(("string", "null"), enum_values=("real", "fake", "inconclusive", None))
    reasons: list[str] | None = _json(("array", "null"), items="string")
    p_value: float | None = _json(("number", "null"))
    alpha: float | None = _json(("number", "null"))
    reference: dict[str, Any] | None = _json(("object", "null"))
    score_speech: float | None = _json(("number", "null"))
    best_offset_speech: int | None = _json(("integer", "null"))
    # null where no speech frame meets the offset
    curve_speech: list[float | None] | None = _json(("array", "null"), items=("number", "null"))
    speech_frames: int | None = _json(("integer", "null"))
    speech_seconds: float | None = _json(("number", "null"))
    speech_fraction: float | None = _json(("number", "null"))
    audio_stats: dict[str, Any] | None = _json(("object", "null"))
    drift: dict[str, Any] | None = _json(("object", "null"))
    face: dict[str, Any] | Absent = _json("object", optional_key=True)
    provenance: dict[str, Any] | None = _json(("object", "null"))
    threshold_verdict: str | Absent = _json("string", enum_values=("real", "fake"), optional_key=True)
    transcripts: Transcripts | None | Absent = _json(("object", "null"), optional_key=True)
    track: dict[str, Any] | None | Absent = _json(("object", "null"), optional_key=True)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse_field(cls, name: str, value: Any) -> Any:
        if name == "transcripts" and value is not None:
            try:
                return Transcripts.from_dict(value)
            except RecordError as err:
                raise RecordError(f"ScoreRecord field 'transcripts': {err}") from None
        return value

    @property
    def ok(self) -> bool:
        """Whether the clip was scored."""
        return self.status == OK


@dataclass
class PrepareRecord(_Record):
    """``sf-prepare``'s record of one input (``status/<id>.json``; module docstring). Fields
    an input's record does not hold are :data:`ABSENT`."""

    SCHEMA = "sf_fairseq/prepare-record"
    SCHEMA_VERSION = 1
    SCHEMA_FILE = "prepare-record.schema.json"
    _REQUIRED_V0 = ("id", "status")

    STATUSES = ("ok", "no_face", "no_audio", "unreadable", "too_short", "truncated", "bad_name", "error")

    id: str = _json("string", default="")
    input: str = _json("string", default="")
    status: str = _json("string", enum_values=STATUSES, default="error")
    reason: str = _json("string", default="")
    input_size: int | Absent = _json("integer", optional_key=True)
    input_mtime_ns: int | Absent = _json("integer", optional_key=True)
    n_frames: int | Absent = _json("integer", optional_key=True)
    source_fps: float | Absent = _json("number", optional_key=True)
    width: int | Absent = _json("integer", optional_key=True)
    height: int | Absent = _json("integer", optional_key=True)
    rotation: float | Absent = _json("number", optional_key=True)
    notes: list[str] | Absent = _json("array", items="string", optional_key=True)
    truncated: dict[str, Any] | Absent = _json("object", optional_key=True)
    audio: str | Absent = _json("string", optional_key=True)
    n_samples: int | Absent = _json("integer", optional_key=True)
    source_sample_rate: int | Absent = _json("integer", optional_key=True)
    source_channels: int | Absent = _json("integer", optional_key=True)
    audio_offset_s: float | Absent = _json("number", optional_key=True)
    silent_audio: bool | Absent = _json("boolean", optional_key=True)
    landmarks: str | Absent = _json("string", optional_key=True)
    tracks: list[dict[str, Any]] | Absent = _json("array", items="object", optional_key=True)
    video_shared_with: str | Absent = _json("string", optional_key=True)
    seconds: float | Absent = _json("number", optional_key=True)
    resumed: bool | Absent = _json("boolean", optional_key=True)
    extra: dict[str, Any] = field(default_factory=dict)


def schema_path(cls: type) -> Path:
    """The JSON Schema file of record class ``cls`` (installed with the package)."""
    return Path(__file__).with_name("schemas") / cls.SCHEMA_FILE


def read_json_record(cls: type, path: Any) -> Any:
    """The record of class ``cls`` in the JSON file ``path``.

    Raises:
        OSError: the file cannot be read.
        RecordError: it holds no valid record (the message names the file).
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return cls.from_dict(json.loads(text))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not JSON ({err})") from None
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from None


def prepare_record_path(out_dir: str | os.PathLike, item_id: str) -> Path:
    """Where ``sf-prepare`` keeps the record of item ``item_id`` in its output folder ``out_dir``."""
    return Path(out_dir) / "status" / f"{item_id}.json"


def read_prepare_record(out_dir: str | os.PathLike, item_id: str) -> PrepareRecord | None:
    """``sf-prepare``'s record of item ``item_id`` in its output folder ``out_dir``; None when
    there is none, or when the file holds no valid record (logged: the item counts as not
    prepared)."""
    path = prepare_record_path(out_dir, item_id)
    try:
        return read_json_record(PrepareRecord, path)
    except FileNotFoundError:
        return None
    except (OSError, RecordError) as err:
        logger.warning("ignoring an unreadable prepare record: %s", err)
        return None


__all__ = ["ABSENT", "Absent", "FAILED", "OK", "PrepareRecord", "RecordError", "ScoreRecord", "Transcripts",
           "prepare_record_path", "read_json_record", "read_prepare_record", "schema_path"]
