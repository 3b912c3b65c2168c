"""sf-score-batch records carry the verdict fields of issue 15 (verdict, reasons, the paper's
score unchanged, speech-gated score, speech, p-value, drift, provenance), from clips made with
the synthetic generator's speech and an encoder that reads mouth opening and loudness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sf_fairseq.eval import batch_engine, conformal, lists
from sf_fairseq.eval.encode import InputSettings, StreamEncoder, load_clip
from sf_fairseq.eval.metrics import Calibration
from sf_fairseq.eval.pipeline import Scorer, ScoreOptions
from sf_fairseq.eval.results import ResultWriter, latest_records
from sf_fairseq.eval.verdict import VERDICT_FIELDS, VerdictConfig
from sf_fairseq.resume import file_sha256

from verdict_clips import OpeningEncoder, speech_clip, utterance

RECORD_FIELDS = ("verdict", "reasons", "score", "best_offset", "curve", "score_speech", "best_offset_speech",
                 "speech_seconds", "speech_fraction", "p_value", "alpha", "drift", "audio_stats", "provenance")


@pytest.fixture(scope="module")
def utt():
    return utterance()


def _scorer() -> Scorer:
    return Scorer(StreamEncoder(OpeningEncoder()), InputSettings(normalize=False), ScoreOptions())


def _corpus(root: Path, utt) -> list[lists.EvalItem]:
    """Two reals (one with 1.5 s of silence before and after the speech), a silent-audio fake
    and a missing file."""
    speech_clip(root / "real/plain.mp4", utt)
    speech_clip(root / "real/padded.mp4", utt, lead=1.5, tail=1.5)
    speech_clip(root / "silent/fake.mp4", utt, silent=True)
    listing = root / "list.csv"
    listing.write_text("path,label,category\nreal/plain.mp4,1,real\nreal/padded.mp4,1,real\n"
                       "silent/fake.mp4,0,silent\ngone/x.mp4,0,gone\n", encoding="utf-8")
    return lists.read_list(listing, str(root))


def _score(items, out: Path, **kwargs) -> dict[str, dict]:
    with ResultWriter(out) as writer:
        batch_engine.score_items(items, _scorer(), writer, batch_size=2, progress=False, **kwargs)
    return latest_records([out])


def test_every_record_carries_the_verdict_fields(tmp_path: Path, utt) -> None:
    items = _corpus(tmp_path / "clips", utt)
    checkpoint = tmp_path / "stand_in.pt"
    checkpoint.write_bytes(b"stand-in")
    calibration = Calibration(threshold=0.5, target_fpr=0.1, achieved_fpr=0.1, n_real=10)
    records = _score(items, tmp_path / "scores.jsonl", checkpoint=str(checkpoint), calibration=calibration)

    for item in items[:3]:
        record = records[item.id]
        assert record["status"] == "ok"
        missing = [f for f in RECORD_FIELDS if f not in record]
        assert not missing, missing
        # The paper's score, bit for bit as the scorer gives it.
        clip = load_clip(item.video, item.audio, InputSettings(normalize=False))
        assert record["score"] == _scorer().score_clips([clip])[0].score
        # Without a reference set the verdict is never a guess; the older threshold call is
        # its own field.
        assert record["verdict"] == "inconclusive" and "uncalibrated" in record["reasons"]
        assert record["p_value"] is None
        assert record["threshold_verdict"] == ("fake" if record["score"] < 0.5 else "real")
        prov = record["provenance"]
        assert prov["input_sha256"] == file_sha256(item.video)
        assert prov["files"]["audio"]["sha256"] == file_sha256(item.audio)
        assert prov["checkpoint_sha256"] == file_sha256(checkpoint)
        assert prov["code_version"]["version"] is not None and prov["settings"]["speech"]["threshold"] == 0.5

    plain, padded, silent = (records[i.id] for i in items[:3])
    assert plain["reasons"] == ["uncalibrated"]
    # Leading/trailing silence: less speech, and the gated score ignores the silent frames.
    assert padded["speech_seconds"] < padded["n_frames"] / 25 - 2.5
    assert padded["speech_fraction"] < plain["speech_fraction"]
    assert padded["score_speech"] > padded["score"]
    # A silent-audio fake: nothing to judge, never real.
    assert silent["verdict"] == "inconclusive"
    assert "silent_audio" in silent["reasons"] and "too_little_speech" in silent["reasons"]
    assert silent["score_speech"] is None and silent["speech_seconds"] == 0

    gone = records["gone/x.mp4"]
    assert gone["status"] == "failed" and gone["provenance"] is None
    assert all(f in gone and gone[f] is None for f in VERDICT_FIELDS)


def test_reference_set_gives_p_values_and_verdicts(tmp_path: Path, utt) -> None:
    items = _corpus(tmp_path / "clips", utt)
    rng = np.random.default_rng(0)
    reference = conformal.build_reference_set(
        [{"id": str(i), "status": "ok", "label": 1, "score_speech": float(s)}
         for i, s in enumerate(rng.uniform(0.3, 0.9, 200))])
    path = tmp_path / "reference.json"
    reference.save(path)
    config = VerdictConfig(reference=conformal.ReferenceSet.load(path), reference_path=str(path))
    records = _score(items, tmp_path / "scores.jsonl", verdict=config)
    plain, silent = records["real/plain.mp4"], records["silent/fake.mp4"]
    assert plain["p_value"] == conformal.conformal_p_value(plain["score_speech"], reference.groups["all"])
    assert plain["verdict"] in ("real", "fake") and plain["reference"]["n"] == 200
    assert silent["verdict"] == "inconclusive" and silent["p_value"] is None


def test_prepare_status_feeds_the_input_checks(tmp_path: Path, utt) -> None:
    """A ROI folder written by sf-prepare: its status records give the source size, truncation
    and the face landmarks; an item prepare found no face in is inconclusive, not a bare failure."""
    root = tmp_path / "rois"
    video, wav = speech_clip(root / "video" / "a.mp4", utt)
    (root / "audio").mkdir()
    wav.rename(root / "audio" / "a.wav")
    (root / "status").mkdir()
    (root / "landmarks").mkdir()
    n = 200
    square = np.array([[0, 0], [30, 0], [30, 30], [0, 30]], np.float32)
    landmarks = np.tile(np.resize(square, (68, 2))[None, None], (1, n, 1, 1)) + 100  # a 30 px face
    np.savez(root / "landmarks" / "a.npz", landmarks=landmarks)
    (root / "status" / "a.json").write_text(json.dumps({
        "id": "a", "status": "ok", "width": 120, "height": 100, "notes": ["decoding stopped early at 3.1 s"],
        "landmarks": "landmarks/a.npz", "tracks": [{"track": 0, "id": "a", "video": "video/a.mp4"}]}))
    (root / "status" / "b.json").write_text(json.dumps({"id": "b", "status": "no_face", "notes": []}))
    listing = root / "list.csv"
    listing.write_text("path,label,audio\nvideo/a.mp4,1,audio/a.wav\nvideo/b.mp4,1,audio/b.wav\n")
    records = _score(lists.read_list(listing, str(root)), tmp_path / "scores.jsonl")

    a, b = records["video/a.mp4"], records["video/b.mp4"]
    assert {"low_resolution", "truncated_input", "face_too_small"} <= set(a["reasons"])
    assert a["face"]["size_px"] == pytest.approx(30.0) and a["notes"] == ["decoding stopped early at 3.1 s"]
    assert b["status"] == "failed" and b["verdict"] == "inconclusive" and b["reasons"] == ["no_face"]
    assert b["score"] is None
