"""One-video scoring: own audio vs another clip's audio, offsets, windows, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sf_fairseq.eval import score_video as sv
from sf_fairseq.eval import video_engine as ve
from sf_fairseq.eval.encode import InputSettings, StreamEncoder
from sf_fairseq.eval.pipeline import Scorer


def test_own_audio_beats_other_audio_and_offsets_are_found(tmp_path: Path, envelope_clip, envelope_encoder) -> None:
    rng = np.random.default_rng(2)
    env_a, env_b = rng.uniform(0, 1, 150), rng.uniform(0, 1, 150)
    video, wav = envelope_clip(tmp_path / "a.mp4", env_a)
    _, other_wav = envelope_clip(tmp_path / "b.mp4", env_b)
    late_video, _ = envelope_clip(tmp_path / "late.mp4", env_a, audio_delay_frames=5)
    scorer = Scorer(StreamEncoder(envelope_encoder), InputSettings(normalize=False))

    own = ve.score_video(scorer, str(video), input_kind="roi")["tracks"][0]
    other = ve.score_video(scorer, str(video), str(other_wav), input_kind="auto")["tracks"][0]
    late = ve.score_video(scorer, str(late_video))["tracks"][0]
    assert own["score"] > 0.6 and other["score"] < 0.4
    assert own["best_offset"] == 0
    assert late["best_offset"] == 5 and late["best_offset_ms"] == 200.0
    # 6 s clip, 2 s windows every 1 s: 5 windows, all agreeing on their own audio.
    assert own["windows"]["start_s"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert min(own["windows"]["score"]) > 0.4 > max(other["windows"]["score"])
    assert len(own["dynamic_offset"]["offsets"]) == 150
    assert own["dynamic_offset"]["score"] >= own["score"] - 1e-6


def test_input_kind_and_errors(tmp_path: Path, roi_clip, envelope_encoder) -> None:
    scorer = Scorer(StreamEncoder(envelope_encoder))
    video, wav = roi_clip(tmp_path / "r.mp4", n_frames=10)
    assert ve.roi_sized(str(video))
    wav.unlink()
    for kind in ("roi", "auto"):  # a ROI-sized video without its wav is not taken for a raw one
        with pytest.raises(ve.ScoreVideoError, match="no audio for this ROI: expected .*r.wav"):
            ve.score_video(scorer, str(video), input_kind=kind)
    with pytest.raises(ve.ScoreVideoError, match="not found"):
        ve.score_video(scorer, str(tmp_path / "nothing.mp4"))
    big, _ = roi_clip(tmp_path / "big.mp4", n_frames=3, size=256)
    assert not ve.roi_sized(str(big))


@pytest.mark.slow
def test_raw_video_without_a_face_is_reported(tmp_path: Path, roi_clip, envelope_encoder) -> None:
    scorer = Scorer(StreamEncoder(envelope_encoder))
    big, _ = roi_clip(tmp_path / "noface.mp4", n_frames=15, size=200)
    # no face: a record, inconclusive with the reason, never a score or a "real"
    result = ve.score_video(scorer, str(big), work_dir=str(tmp_path / "work"))
    assert result["input_kind"] == "raw" and result["prepare"]["status"] == "no_face"
    assert result["verdict"] == "inconclusive" and result["reasons"] == ["no_face"]
    track = result["tracks"][0]
    assert track["score"] is None and track["verdict"] == "inconclusive" and track["reasons"] == ["no_face"]
    # an input the preprocessing cannot read is still refused
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(ve.ScoreVideoError, match="preprocessing failed"):
        ve.score_video(scorer, str(garbage), work_dir=str(tmp_path / "work2"))


@pytest.mark.slow
def test_cli_writes_json_and_png(tmp_path: Path, shared_dir: Path, roi_clip, capsys) -> None:
    video, _ = roi_clip(tmp_path / "my clip.mp4", n_frames=60)
    ckpt = str(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    out = tmp_path / "out"
    rc = sv.main([str(video), "--checkpoint", ckpt, "--out", str(out), "--threshold", "0.5", "--cpu",
                  "--window", "1", "--hop", "0.5"])
    assert rc == 0
    text = capsys.readouterr().out
    record = json.loads((out / "my clip.score.json").read_text())
    assert record["input_kind"] == "roi" and record["threshold"] == 0.5
    # the threshold gives threshold_verdict; the verdict needs a reference set
    assert record["threshold_verdict"] == ("fake" if record["score"] < 0.5 else "real")
    assert record["verdict"] == "inconclusive" and "uncalibrated" in record["reasons"]
    assert f"threshold verdict (score below 0.5000: fake): {record['threshold_verdict']}" in text
    assert "verdict: inconclusive" in text and f"score (paper's rule): {record['score']:.4f}" in text
    track = record["tracks"][0]
    assert len(track["curve"]) == 31 and track["score"] == pytest.approx(max(track["curve"]))
    assert track["offsets"][track["curve"].index(max(track["curve"]))] == track["best_offset"]
    # 60 frames, 25-frame windows every 12 frames (0.5 s rounds to 12): 0, 12, 24, and one at the end.
    assert track["windows"]["start_s"] == [0.0, 0.48, 0.96, 1.4]
    assert track["windows"]["end_s"][-1] == pytest.approx(track["n_frames"] / 25.0)
    png = cv2.imread(str(out / "my clip.score.png"))
    assert png is not None and png.shape[0] > 300
    assert sv.main([str(tmp_path / "none.mp4"), "--checkpoint", ckpt, "--out", str(out), "--cpu"]) == 2
