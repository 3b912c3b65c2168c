"""Typed records (sf_fairseq.records): the dataclasses and the JSON Schema files agree, what the
real writers write validates against the schemas, old records stay readable, newer ones are
refused, unknown keys survive a round trip, and a bad record is named with its file and line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from sf_fairseq.records import (
    ABSENT, PrepareRecord, RecordError, ScoreRecord, Transcripts, read_json_record, schema_path,
)

CLASSES = (ScoreRecord, Transcripts, PrepareRecord)

# A complete record as sf-score-batch wrote it before records had a schema version.
OLD_RECORD = {
    "id": "real/a.mp4", "video": "/d/real/a.mp4", "audio": "/d/real/a.wav", "label": 1, "category": "real",
    "status": "ok", "score": 0.61, "best_offset": -1, "best_offset_ms": -40.0, "n_frames": 50,
    "curve": [0.2, 0.61, 0.3], "error_type": None, "error": None,
    "inputs": {"video": {"size": 10, "mtime_ns": 5}, "audio": {"size": 20, "mtime_ns": 6}}, "notes": [],
    "verdict": "inconclusive", "reasons": ["uncalibrated"], "p_value": None, "alpha": 0.05, "reference": None,
    "score_speech": 0.7, "best_offset_speech": -1, "curve_speech": [None, 0.7, 0.2], "speech_frames": 40,
    "speech_seconds": 1.6, "speech_fraction": 0.8, "audio_stats": {"peak": 0.5}, "drift": {"drifting": False},
    "provenance": None, "threshold_verdict": "real",
    "transcripts": {"lips": "a b", "audio": "a c", "word_disagreement": 0.5, "char_disagreement": 0.5,
                    "model": "/m/vsr.pt", "error_type": None, "error": None},
}


def _schema(cls: type) -> dict:
    return json.loads(schema_path(cls).read_text(encoding="utf-8"))


def _validate(cls: type, document: dict) -> None:
    jsonschema.Draft202012Validator(_schema(cls)).validate(document)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_schema_files_and_dataclasses_cannot_drift_apart(cls: type) -> None:
    schema = _schema(cls)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "urn:" + cls.SCHEMA.replace("/", ":")
    assert schema["x-schema-version"] == cls.SCHEMA_VERSION
    fields = {f.name: f.metadata["json"] for f in cls.record_fields()}
    version_key = ["schema_version"] if cls._WRITES_VERSION else []
    assert list(schema["properties"]) == version_key + list(fields)  # same names, same order
    assert schema["required"] == version_key + cls.required()
    if version_key:
        assert schema["properties"]["schema_version"]["const"] == cls.SCHEMA_VERSION

    def as_list(spec: dict) -> list:
        return spec["type"] if isinstance(spec["type"], list) else [spec["type"]]

    for name, spec in fields.items():
        prop = schema["properties"][name]
        assert as_list(prop) == spec["type"], name
        assert ("items" in prop) == ("items" in spec) and (
            "items" not in spec or as_list(prop["items"]) == spec["items"]["type"]), name
        assert prop.get("enum") == spec.get("enum"), name
        assert prop.get("description"), name


def test_old_records_read_losslessly_and_gain_only_the_version(tmp_path: Path) -> None:
    from sf_fairseq.eval.results import latest_records

    path = tmp_path / "scores.jsonl"
    path.write_text(json.dumps(OLD_RECORD) + "\n", encoding="utf-8")
    record = latest_records([path])["real/a.mp4"]
    assert isinstance(record, ScoreRecord) and record.score == 0.61 and record.curve_speech[0] is None
    assert isinstance(record.transcripts, Transcripts) and record.transcripts.ok
    assert record.threshold_verdict == "real" and record.face is ABSENT and record.track is ABSENT
    assert record.to_dict() == {"schema_version": ScoreRecord.SCHEMA_VERSION, **OLD_RECORD}
    _validate(ScoreRecord, record.to_dict())

    # Older still: before verdicts, provenance, inputs and notes. Missing fields read as null.
    bare = {k: OLD_RECORD[k] for k in ("id", "video", "audio", "label", "category", "status", "score",
                                       "best_offset", "best_offset_ms", "n_frames", "curve", "error_type", "error")}
    record = ScoreRecord.from_dict(bare)
    assert record.verdict is None and record.provenance is None and record.notes == [] and record.inputs is None
    assert {k: v for k, v in record.to_dict().items() if k in bare} == bare
    _validate(ScoreRecord, record.to_dict())


def test_unknown_keys_survive_and_optional_keys_stay_absent() -> None:
    record = ScoreRecord.from_dict({**OLD_RECORD, "language": "de", "transcripts": None})
    assert record.extra == {"language": "de"} and record["language"] == "de"
    again = ScoreRecord.from_dict(record.to_dict())
    assert again == record and again.to_dict()["language"] == "de"
    # null and absent are different things on disk: a clip that could not be loaded for the
    # transcriber has "transcripts": null; a run without one writes no such key.
    assert "transcripts" in record and record.transcripts is None and record["transcripts"] is None
    plain = ScoreRecord.from_dict({k: v for k, v in OLD_RECORD.items() if k != "transcripts"})
    assert "transcripts" not in plain and "transcripts" not in plain.to_dict() and not plain.transcripts
    with pytest.raises(KeyError):
        plain["transcripts"]
    assert plain.get("transcripts", "none") == "none"
    # The read-only mapping view gives the on-disk values.
    assert record["score"] == 0.61 and plain["schema_version"] == ScoreRecord.SCHEMA_VERSION
    assert ScoreRecord.from_dict(OLD_RECORD)["transcripts"] == OLD_RECORD["transcripts"]


def test_a_newer_version_is_refused_with_a_message() -> None:
    newer = {**OLD_RECORD, "schema_version": ScoreRecord.SCHEMA_VERSION + 1}
    with pytest.raises(RecordError, match="newer sf_fairseq .*upgrade"):
        ScoreRecord.from_dict(newer)
    with pytest.raises(RecordError, match="newer"):
        PrepareRecord.from_dict({"id": "a", "input": "a.mp4", "status": "ok", "reason": "", "schema_version": 99})


def test_a_current_version_record_must_hold_every_field() -> None:
    record = ScoreRecord.from_dict(OLD_RECORD).to_dict()
    del record["verdict"]
    with pytest.raises(RecordError, match="'verdict'"):
        ScoreRecord.from_dict(record)


@pytest.mark.parametrize("field,value", [("score", "0.5"), ("label", True), ("status", "done"), ("notes", [1]),
                                         ("curve", [0.1, "x"]), ("verdict", "maybe")])
def test_mistyped_fields_are_named(field: str, value: object) -> None:
    with pytest.raises(RecordError, match=f"ScoreRecord field '{field}'"):
        ScoreRecord.from_dict({**OLD_RECORD, field: value})


def test_a_bad_record_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    from sf_fairseq.eval.results import ResultWriter, latest_records

    path = tmp_path / "scores.jsonl"
    bad = {**OLD_RECORD, "id": "b", "score_speech": "high"}
    path.write_text(json.dumps(OLD_RECORD) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(RecordError, match=r"scores\.jsonl:2: ScoreRecord field 'score_speech'"):
        latest_records([path])
    # The writer checks a record before writing anything.
    good = tmp_path / "good.jsonl"
    with ResultWriter(good) as writer:
        writer.write(OLD_RECORD)
        with pytest.raises(RecordError, match="'score_speech'"):
            writer.write(bad)
    assert len(good.read_text().splitlines()) == 1


def test_prepare_records_as_prepare_writes_them(tmp_path: Path) -> None:
    # Keys as preprocess/prepare.py writes status/<id>.json (no schema version yet).
    written = {"id": "x/clip", "input": "/in/x/clip.mp4", "status": "truncated", "reason": "video decodes to ...",
               "input_size": 1234, "input_mtime_ns": 99, "n_frames": 30, "source_fps": 29.97, "width": 640,
               "height": 360, "rotation": 90, "notes": ["audio covers 0.80 s of the 1.20 s video; the rest is silence"],
               "truncated": {"video": {"decoded_s": 1.2, "stated_s": 2.0}}, "audio": "audio/x/clip.wav",
               "n_samples": 19200, "source_sample_rate": 48000, "source_channels": 2, "audio_offset_s": 0.0,
               "silent_audio": False, "landmarks": "landmarks/x/clip.npz",
               "tracks": [{"track": 0, "id": "x/clip", "video": "video/x/clip.mp4", "face_frames": 30}],
               "seconds": 1.5}
    path = tmp_path / "clip.json"
    path.write_text(json.dumps(written), encoding="utf-8")
    record = read_json_record(PrepareRecord, path)
    assert record.status == "truncated" and record.tracks[0]["video"] == "video/x/clip.mp4"
    assert record.resumed is ABSENT and not record.resumed
    assert record.to_dict() == {"schema_version": PrepareRecord.SCHEMA_VERSION, **written}
    _validate(PrepareRecord, record.to_dict())
    bad_name = PrepareRecord.from_dict({"id": "a\tb", "input": "/in/a\tb.mp4", "status": "bad_name", "reason": "tab"})
    assert bad_name.seconds is ABSENT and "seconds" not in bad_name.to_dict()
    _validate(PrepareRecord, bad_name.to_dict())
    path.write_text(json.dumps({**written, "width": "wide"}), encoding="utf-8")
    with pytest.raises(RecordError, match=r"clip\.json: PrepareRecord field 'width'"):
        read_json_record(PrepareRecord, path)


def test_prepare_status_gives_the_typed_record(tmp_path: Path) -> None:
    from sf_fairseq.eval.results import prepare_notes, prepare_status

    (tmp_path / "status").mkdir()
    (tmp_path / "status" / "a.json").write_text(json.dumps({
        "id": "a", "input": "/in/a.mp4", "status": "ok", "reason": "", "notes": ["silent audio (all samples are zero)"],
        "tracks": [{"track": 0, "id": "a__track0", "video": "video/a__track0.mp4", "face_frames": 9},
                   {"track": 1, "id": "a__track1", "video": "video/a__track1.mp4", "face_frames": 8}]}))
    status = prepare_status(tmp_path / "video" / "a__track1.mp4")
    assert isinstance(status.record, PrepareRecord) and status.track == 1 and status.out_dir == tmp_path
    assert prepare_notes(tmp_path / "video" / "a__track0.mp4") == ["silent audio (all samples are zero)"]
    # An invalid status record is ignored (logged), never a failed score record.
    (tmp_path / "status" / "a.json").write_text(json.dumps({"id": "a", "status": 3}))
    assert prepare_status(tmp_path / "video" / "a__track0.mp4") is None


def test_prepare_status_of_an_id_holding_a_video_folder(tmp_path: Path) -> None:
    """Item ``a/video/b``: its ROI video is ``video/a/video/b.mp4``; the record is found from the
    folder and the id, and from the video path (not in ``video/a/status/``)."""
    from sf_fairseq.eval.results import prepare_item_status, prepare_status
    from sf_fairseq.records import read_prepare_record

    (tmp_path / "status" / "a" / "video").mkdir(parents=True)
    (tmp_path / "status" / "a" / "video" / "b.json").write_text(json.dumps({
        "id": "a/video/b", "input": "/in/a/video/b.mp4", "status": "ok", "reason": "",
        "tracks": [{"track": 0, "id": "a/video/b", "video": "video/a/video/b.mp4", "face_frames": 9}]}))
    assert read_prepare_record(tmp_path, "a/video/b").id == "a/video/b"
    assert read_prepare_record(tmp_path, "a/video/c") is None
    status = prepare_item_status(tmp_path, "a/video/b")
    assert status.out_dir == tmp_path and status.record.id == "a/video/b" and status.track == 0
    found = prepare_status(tmp_path / "video" / "a" / "video" / "b.mp4")
    assert found is not None and found.out_dir == tmp_path and found.record.id == "a/video/b"


def test_records_written_by_the_batch_engine_validate(tmp_path: Path) -> None:
    """sf-score-batch's writer (with provenance, calibration, transcripts, a missing file, an
    item of a prepare folder) and sf-score-ray's input-level failure, against the schemas."""
    from sf_fairseq.eval import batch_engine, lists
    from sf_fairseq.eval.encode import InputSettings, StreamEncoder
    from sf_fairseq.eval.metrics import Calibration
    from sf_fairseq.eval.pipeline import ScoreOptions, Scorer
    from sf_fairseq.eval.ray_pipeline import VideoItem, input_failed_record
    from sf_fairseq.eval.results import ResultWriter
    from sf_fairseq.eval.transcriber import ClipTranscripts

    from verdict_clips import OpeningEncoder, speech_clip, utterance

    class StubTranscriber:
        settings = InputSettings(normalize=False)

        def transcribe_clips(self, clips):
            return [ClipTranscripts.compare("a b", "a c") for _ in clips]

    root = tmp_path / "rois"
    _, wav = speech_clip(root / "video" / "a.mp4", utterance())
    for folder in ("audio", "status", "landmarks"):
        (root / folder).mkdir()
    wav.rename(root / "audio" / "a.wav")
    square = np.array([[0, 0], [30, 0], [30, 30], [0, 30]], np.float32)
    np.savez(root / "landmarks" / "a.npz", landmarks=np.tile(np.resize(square, (68, 2))[None, None], (1, 200, 1, 1)))
    (root / "status" / "a.json").write_text(json.dumps({
        "id": "a", "input": "/in/a.mp4", "status": "ok", "reason": "", "width": 120, "height": 100, "notes": [],
        "landmarks": "landmarks/a.npz",
        "tracks": [{"track": 0, "id": "a", "video": "video/a.mp4", "face_frames": 200}]}))
    listing = root / "list.csv"
    listing.write_text("path,label,audio\nvideo/a.mp4,1,audio/a.wav\nvideo/gone.mp4,0,audio/gone.wav\n")
    checkpoint = tmp_path / "stand_in.pt"
    checkpoint.write_bytes(b"stand-in")
    scorer = Scorer(StreamEncoder(OpeningEncoder()), InputSettings(normalize=False), ScoreOptions())
    out = tmp_path / "scores.jsonl"
    with ResultWriter(out) as writer:
        batch_engine.score_items(lists.read_list(listing, str(root)), scorer, writer, progress=False,
                                 checkpoint=str(checkpoint), transcriber=StubTranscriber(), transcriber_name="t.pt",
                                 calibration=Calibration(threshold=0.5, target_fpr=0.1, achieved_fpr=0.1, n_real=9))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    video = tmp_path / "raw.mp4"
    video.write_bytes(b"x")
    lines.append(input_failed_record(VideoItem("raw", str(video)), "no_face", "none found").to_dict())
    assert {line["status"] for line in lines} == {"ok", "failed"}
    for line in lines:
        _validate(ScoreRecord, line)
        if isinstance(line.get("transcripts"), dict):
            _validate(Transcripts, line["transcripts"])
        assert ScoreRecord.from_dict(line).to_dict() == line
    scored = next(line for line in lines if line["status"] == "ok")
    assert {"provenance", "threshold_verdict", "transcripts", "face"} <= set(scored) and scored["provenance"]
    assert lines[-1]["track"] is None


def test_replace_keeps_a_record_typed() -> None:
    record = replace(ScoreRecord.from_dict(OLD_RECORD), status="failed", score=None)
    assert not record.ok and record.to_dict()["score"] is None


def test_the_records_module_imports_neither_numpy_nor_torch() -> None:
    code = ("import sys, sf_fairseq.records; "
            "print(sorted(m for m in ('numpy', 'torch', 'fairseq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_records_written_by_prepare_validate(tmp_path: Path) -> None:
    """sf-prepare's writer on a clip with a face and on a missing file: the status files read as
    PrepareRecords without loss and validate once versioned (what prepare writes with to_dict)."""
    from prepare_media import make_clip

    from sf_fairseq.preprocess.prepare_engine import STATUSES, InputItem, PrepareOptions, VideoPreprocessor

    assert PrepareRecord.STATUSES == STATUSES
    preprocessor = VideoPreprocessor(PrepareOptions())
    clip = make_clip(tmp_path / "a.mp4", seconds=1.2)
    for item in (InputItem("a", str(clip)), InputItem("gone", str(tmp_path / "gone.mp4"))):
        returned = preprocessor.process(item, tmp_path / "out")
        written = json.loads((tmp_path / "out" / "status" / f"{item.id}.json").read_text())
        assert written == returned
        record = PrepareRecord.from_dict(written)
        assert record.to_dict() == {"schema_version": PrepareRecord.SCHEMA_VERSION, **written}
        _validate(PrepareRecord, record.to_dict())
    assert read_json_record(PrepareRecord, tmp_path / "out" / "status" / "a.json").status == "ok"
