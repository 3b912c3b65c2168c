"""Verdict fields on clips made by the synthetic generator: leading silence, silent audio,
a mid-clip audio shift, too little speech, truncated audio (scored through the real loader and
scorer with an encoder that reads mouth opening and loudness)."""

from __future__ import annotations

import numpy as np
import pytest

from sf_fairseq.eval import conformal
from sf_fairseq.eval.encode import InputSettings, StreamEncoder, load_clip
from sf_fairseq.eval.pipeline import Scorer, ScoreOptions
from sf_fairseq.eval.speech import analyse_wav
from sf_fairseq.eval.verdict import MediaChecks, assess_clip

from verdict_clips import OpeningEncoder, speech_clip, utterance

SETTINGS = InputSettings(normalize=False)
OPTIONS = ScoreOptions()


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer(StreamEncoder(OpeningEncoder()), SETTINGS, OPTIONS)


@pytest.fixture(scope="module")
def utt():
    return utterance()


@pytest.fixture(scope="module")
def reference() -> conformal.ReferenceSet:
    """Stand-in real reference (this encoder's real clips score about 0.7-0.8)."""
    rng = np.random.default_rng(0)
    records = [{"id": str(i), "status": "ok", "label": 1, "score_speech": float(s)}
               for i, s in enumerate(rng.uniform(0.3, 0.9, 200))]
    return conformal.build_reference_set(records)


def score(scorer, video, wav, reference=None):
    clip = load_clip(str(video), str(wav), SETTINGS, OPTIONS.max_seconds, OPTIONS.fps)
    result = scorer.score_clips([clip])[0]
    media = MediaChecks(video_frames=clip.video.shape[0], audio_frames=clip.audio.shape[0])
    fields = assess_clip(result, OPTIONS, analyse_wav(str(wav), max_seconds=OPTIONS.max_seconds),
                         reference=reference, media=media)
    return result, fields


def voiced_seconds(utt) -> float:
    voiced = [p for p in utt.phonemes if not p.symbol.startswith("_")]
    return voiced[-1].end - voiced[0].start


def test_leading_silence_is_left_out_of_the_gated_score(tmp_path, scorer, utt, reference):
    video, wav = speech_clip(tmp_path / "lead.mp4", utt, lead=3.0)
    result, fields = score(scorer, video, wav, reference)
    # the paper's score is computed as always: mean over every frame, max over offsets
    assert result.score == float(result.sims.mean(0).max())
    assert fields["speech_seconds"] == pytest.approx(voiced_seconds(utt), abs=0.5)
    assert fields["speech_fraction"] < 0.7
    # three seconds of silence pull the paper's score down; the gated score ignores them
    assert fields["score_speech"] > result.score + 0.1
    assert fields["best_offset_speech"] == 0
    assert fields["verdict"] == "real" and fields["reasons"] == []


def test_silent_audio_fake_is_inconclusive_not_real(tmp_path, scorer, utt, reference):
    video, wav = speech_clip(tmp_path / "silent.mp4", utt, silent=True)
    result, fields = score(scorer, video, wav, reference)
    assert fields["verdict"] == "inconclusive"
    assert {"silent_audio", "too_little_speech"} <= set(fields["reasons"])
    assert fields["score_speech"] is None and fields["speech_seconds"] == 0
    assert result.score is not None  # the paper's score is still recorded


def test_mid_clip_shift_of_eight_frames_is_drift(tmp_path, scorer, utt, reference):
    n_frames = int(np.ceil((0.3 + utt.duration + 0.3) * 25))
    half = n_frames // 2
    video, wav = speech_clip(tmp_path / "shift.mp4", utt, audio_shift_frames_after=(half, 8))
    _, fields = score(scorer, video, wav, reference)
    drift = fields["drift"]
    assert drift["drifting"] and "offset_drift" in fields["reasons"]
    assert [s["offset"] for s in drift["segments"]][0] == 0
    assert any(abs(s["offset"] - 8) <= 1 for s in drift["segments"])
    assert drift["change_times_s"][0] == pytest.approx(half / 25, abs=0.5)
    assert fields["verdict"] != "real"
    _, clean = score(scorer, *speech_clip(tmp_path / "clean.mp4", utt), reference)
    assert not clean["drift"]["drifting"] and clean["verdict"] == "real"


def test_too_little_speech(tmp_path, scorer, reference):
    short = utterance("Yes.")
    video, wav = speech_clip(tmp_path / "short.mp4", short, lead=1.5, tail=1.5)
    _, fields = score(scorer, video, wav, reference)
    assert 0 < fields["speech_seconds"] < 1.5
    assert fields["verdict"] == "inconclusive" and "too_little_speech" in fields["reasons"]


def test_truncated_audio(tmp_path, scorer, utt, reference):
    """Audio 0.56 s shorter than the video: load_clip still accepts it (it refuses more than
    max(0.5 s, 10 %)), the verdict does not judge it."""
    n_frames = int(np.ceil((0.6 + utt.duration) * 25))
    video, wav = speech_clip(tmp_path / "cut.mp4", utt, audio_seconds=n_frames / 25 - 0.56)
    _, fields = score(scorer, video, wav, reference)
    assert fields["verdict"] == "inconclusive" and "truncated_input" in fields["reasons"]
