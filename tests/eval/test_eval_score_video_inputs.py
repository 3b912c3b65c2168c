"""sf-score-video on awkward inputs and reruns: clear errors on stderr, outputs never mixed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.eval import score_video as sv
from sf_fairseq.eval import video_engine as ve
from sf_fairseq.eval.encode import InputSettings, StreamEncoder
from sf_fairseq.eval.pipeline import Scorer, ScoreOptions


@pytest.fixture
def cli(tmp_path: Path, monkeypatch, envelope_encoder):
    """``sv.main`` with a stand-in scorer (the checkpoint file is only hashed)."""

    def load(args, checkpoint, device) -> Scorer:
        options = ScoreOptions(max_offset=args.max_offset, max_seconds=args.max_seconds or None)
        return Scorer(StreamEncoder(envelope_encoder), InputSettings(normalize=False), options)

    monkeypatch.setattr(sv, "load_scorer_from_arguments", load)
    checkpoint = tmp_path / "stand_in.pt"
    checkpoint.write_bytes(b"stand-in")

    def run(*args: str) -> int:
        return sv.main([*args, "--checkpoint", str(checkpoint), "--cpu"])

    return run


def test_roi_without_its_wav_is_not_preprocessed_as_raw(tmp_path: Path, roi_clip, envelope_encoder) -> None:
    scorer = Scorer(StreamEncoder(envelope_encoder))
    video, wav = roi_clip(tmp_path / "mouth.mp4", n_frames=30)
    wav.unlink()
    with pytest.raises(ve.ScoreVideoError, match=r"no audio for this ROI: expected .*mouth\.wav"):
        ve.score_video(scorer, str(video), work_dir=str(tmp_path / "work"))


def test_directory_and_degenerate_inputs(tmp_path: Path, roi_clip, envelope_encoder) -> None:
    scorer = Scorer(StreamEncoder(envelope_encoder))
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(ve.ScoreVideoError, match=r"not a file.*x\.mp4"):
        ve.score_video(scorer, str(tmp_path / "x.mp4"))
    video, wav = roi_clip(tmp_path / "four.mp4", n_frames=4)
    sf.write(wav, np.zeros(401, np.int16), 16000, subtype="PCM_16")
    with pytest.raises(ve.ScoreVideoError, match="too short"):
        ve.score_video(scorer, str(video))
    video, wav = roi_clip(tmp_path / "long_audio.mp4", n_frames=30, seconds=6.0)
    with pytest.raises(ve.ScoreVideoError, match=r"video 1\.20 s .*audio 6\.00 s"):
        ve.score_video(scorer, str(video))


def test_errors_go_to_stderr(tmp_path: Path, cli, capsys) -> None:
    assert cli(str(tmp_path / "none.mp4"), "--out", str(tmp_path / "out")) == 2
    captured = capsys.readouterr()
    assert "error: video file not found" in captured.err
    assert "error" not in captured.out


def test_same_name_from_another_input_is_not_overwritten(tmp_path: Path, cli, roi_clip, capsys) -> None:
    first, _ = roi_clip(tmp_path / "a" / "clip.mp4", n_frames=50, seed=0)
    second, _ = roi_clip(tmp_path / "b" / "clip.mp4", n_frames=60, seed=1)
    out = tmp_path / "out"
    assert cli(str(first), "--out", str(out)) == 0
    record = (out / "clip.score.json").read_text()
    capsys.readouterr()
    assert cli(str(second), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "holds the score of another input" in err and str(first) in err and "--overwrite" in err
    assert (out / "clip.score.json").read_text() == record
    assert cli(str(second), "--out", str(out), "--overwrite") == 0
    assert json.loads((out / "clip.score.json").read_text())["input"] == str(second)


def test_rerun_replaces_outputs_and_says_which_settings_changed(tmp_path: Path, cli, roi_clip, capsys) -> None:
    video, _ = roi_clip(tmp_path / "v.mp4", n_frames=50)
    out = tmp_path / "out"
    assert cli(str(video), "--out", str(out)) == 0
    fingerprint = json.loads((out / "v.score.json").read_text())["fingerprint"]
    assert fingerprint["max_offset"] == 15 and fingerprint["input"]["path"] == str(video)
    assert len(fingerprint["checkpoint_sha256"]) == 64
    capsys.readouterr()
    assert cli(str(video), "--out", str(out), "--max-offset", "10", "--window", "1") == 0
    err = capsys.readouterr().err
    assert "made with other settings (differing: max_offset, windows.window_s)" in err
    record = json.loads((out / "v.score.json").read_text())
    assert len(record["tracks"][0]["curve"]) == 21 and record["fingerprint"]["max_offset"] == 10
    assert cli(str(video), "--out", str(out), "--max-offset", "10", "--window", "1") == 0
    assert "same settings" in capsys.readouterr().err
    assert not list(out.glob(".*tmp*"))
