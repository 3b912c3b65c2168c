"""Provenance of a scored clip and sf-verify, with the tiny fixture checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.eval import provenance, verify
from sf_fairseq.eval.encode import load_clip
from sf_fairseq.eval.pipeline import load_scorer
from sf_fairseq.eval.speech import SpeechSettings, analyse_wav
from sf_fairseq.eval.verdict import VerdictConfig, assess_clip

from verdict_clips import speech_clip, utterance

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return speech_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", utterance("The cat sees a boat."))


def scored_record(video, wav, checkpoint, precision="fp32"):
    """A record as the scoring commands will write it: score fields, verdict fields, provenance."""
    scorer = load_scorer(checkpoint, precision=precision)
    clip = load_clip(str(video), str(wav), scorer.settings, scorer.options.max_seconds, scorer.options.fps)
    result = scorer.score_clips([clip])[0]
    prov = provenance.clip_provenance(video, {"video": video, "audio": wav}, checkpoint, scorer,
                                      SpeechSettings(), **VerdictConfig().provenance())
    fields = assess_clip(result, scorer.options, analyse_wav(str(wav)), provenance=prov)
    return {"id": "clip", "status": "ok", **result.as_record(), **fields, "provenance": prov}


def write(path, record):
    path.write_text(json.dumps(record, allow_nan=False))
    return str(path)


@pytest.fixture
def checkpoint(tmp_path, shared_dir):
    path = tmp_path / "model.pt"
    shutil.copy(shared_dir / FIXTURE, path)
    return path


def test_provenance_fields(clip_files, checkpoint):
    video, wav = clip_files
    record = scored_record(video, wav, checkpoint)
    prov = record["provenance"]
    assert prov["input_sha256"] == provenance.file_sha256(video) and prov["input_size"] == video.stat().st_size
    assert prov["checkpoint_sha256"] == provenance.file_sha256(checkpoint)
    assert prov["streams"]["video"]["fps"] == 25.0 and prov["streams"]["video"]["rotation"] == 0
    assert prov["streams"]["video"]["frames"] == record["n_frames"]
    assert provenance.stream_info(wav)["audio"] == {
        "codec": "pcm_s16le", "sample_rate": 16000, "channels": 1,
        "duration_s": pytest.approx(record["n_frames"] / 25, abs=0.05)}
    assert prov["files"]["audio"]["sha256"] == provenance.file_sha256(wav)
    assert prov["settings"]["score"] == {"max_offset": 15, "max_seconds": 50.0, "fps": 25.0}
    assert prov["settings"]["speech"]["detector"].startswith("silero-vad")
    assert prov["layer"] is None and prov["precision"] == "fp32" and prov["device"] == "cpu"
    assert prov["versions"]["torch"] and prov["versions"]["fairseq"]
    assert prov["verdict_settings"]["alpha"] == 0.01 and prov["reference_set"] is None
    assert prov["drift_settings"]["max_disagreement"] == 3
    assert prov["time_utc"].endswith("+00:00")
    assert record["verdict"] == "inconclusive" and "uncalibrated" in record["reasons"]


def test_code_version_in_and_outside_a_checkout(monkeypatch):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=provenance.Path(provenance.__file__).parent).stdout.strip()
    provenance.code_version.cache_clear()
    version = provenance.code_version()
    assert version["version"] == "0.1.0"
    assert version["git_commit"] == head and isinstance(version["git_dirty"], bool)

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    provenance.code_version.cache_clear()
    assert provenance.code_version() == {"version": "0.1.0", "git_commit": None, "git_dirty": None}
    provenance.code_version.cache_clear()


@pytest.mark.slow
def test_verify_reproduces_exactly_on_cpu(tmp_path, clip_files, checkpoint, capsys):
    record = scored_record(*clip_files, checkpoint)
    path = write(tmp_path / "clip.score.json", record)
    assert verify.main([path]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED (exact); files intact" in out and "changed" not in out
    # a score_video result (tracks) and a JSONL batch file with --id
    assert verify.main([write(tmp_path / "video.json", {"tracks": [record]})]) == 0
    jsonl = tmp_path / "scores.jsonl"
    jsonl.write_text(json.dumps({"id": "other"}) + "\n" + json.dumps(record) + "\n")
    assert verify.main([str(jsonl), "--id", "clip"]) == 0
    assert verify.main([str(jsonl)]) == 2


@pytest.mark.slow
def test_verify_names_the_changed_input(tmp_path, clip_files, checkpoint, capsys):
    video, wav = clip_files
    local_video, local_wav = tmp_path / "v.mp4", tmp_path / "v.wav"
    shutil.copy(video, local_video)
    shutil.copy(wav, local_wav)
    record = scored_record(local_video, local_wav, checkpoint)
    path = write(tmp_path / "r.json", record)
    samples, _ = sf.read(local_wav, dtype="int16")
    sf.write(local_wav, np.roll(samples, 4000), 16000, subtype="PCM_16")  # same length, other audio
    outcome = verify.verify_record(verify.load_record(path))
    assert not outcome.reproduced
    assert list(outcome.changed_files) == ["files.audio"]
    assert verify.main([path]) == 1
    assert "changed files.audio: sha256 changed" in capsys.readouterr().out
    # the file the user gave is gone, the scored files are intact: values reproduce, exit 1
    local_wav.write_bytes(wav.read_bytes())
    record["provenance"]["input"] = str(tmp_path / "gone.mp4")
    outcome = verify.verify_record(record)
    assert outcome.reproduced and not outcome.intact and list(outcome.changed_files) == ["input"]
    assert verify.main([write(tmp_path / "r2.json", record)]) == 1


@pytest.mark.slow
def test_verify_names_a_changed_checkpoint_or_setting(tmp_path, clip_files, checkpoint, shared_dir):
    record = scored_record(*clip_files, checkpoint)
    path = write(tmp_path / "r.json", record)
    tampered = json.loads(json.dumps(record))
    tampered["provenance"]["settings"]["input"]["mean"] = 0.5
    outcome = verify.verify_record(tampered)
    assert not outcome.reproduced and outcome.changed_settings == ["settings.input.mean"]
    assert outcome.changed_files == {}
    shutil.copy(shared_dir / "fixtures/avhubert_tiny_vsr/checkpoint.pt", checkpoint)
    outcome = verify.verify_record(verify.load_record(path))
    assert not outcome.reproduced and list(outcome.changed_files) == ["checkpoint"]
    checkpoint.unlink()
    assert verify.main([path]) == 2


@pytest.mark.slow
def test_verify_with_tolerance_for_bf16(tmp_path, clip_files, checkpoint, capsys):
    record = scored_record(*clip_files, checkpoint, precision="bf16")
    assert verify.main([write(tmp_path / "r.json", record)]) == 0
    assert "REPRODUCED (within 0.02); files intact" in capsys.readouterr().out


def test_verify_refuses_records_without_provenance(tmp_path, capsys):
    assert verify.main([write(tmp_path / "old.json", {"id": "x", "score": 0.3})]) == 2
    assert "no provenance" in capsys.readouterr().out
