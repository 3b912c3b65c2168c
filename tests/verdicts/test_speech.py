"""Voice activity per 25 fps frame, the speech-gated score and the audio checks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.eval import score as sc
from sf_fairseq.eval import speech
from sf_fairseq.preprocess.synthetic.speech import Voice, speak

K = 15


@pytest.fixture(scope="module")
def utterance():
    return speak("The old teacher finds a red boat near the river in the morning.", Voice("en-us", 160))


def padded(audio: np.ndarray, lead_s: float, tail_s: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.zeros(int(lead_s * 16000)), audio, np.zeros(int(tail_s * 16000))])
    return np.clip(x + rng.normal(0, noise, x.shape), -32768, 32767).astype(np.int16)


def test_vad_finds_the_speech_between_silences(utterance):
    x = padded(utterance.audio, 2.0, 1.5, noise=30.0)
    mask = speech.speech_frames(x, speech.SpeechSettings(pad_frames=0))
    assert mask.shape == (speech.frame_count(x.size),)
    voiced = [p for p in utterance.phonemes if not p.symbol.startswith("_")]
    first, last = 2.0 + voiced[0].start, 2.0 + voiced[-1].end
    t = (np.arange(mask.size) + 0.5) / 25
    assert not mask[t < first - 0.2].any() and not mask[t > last + 0.3].any()
    inside = mask[(t > first + 0.1) & (t < last - 0.1)]
    assert inside.mean() > 0.85
    assert abs(mask.sum() / 25 - (last - first)) < 0.6


def test_vad_on_silence_and_noise_only():
    rng = np.random.default_rng(0)
    assert not speech.speech_frames(np.zeros(48000, np.int16)).any()
    noise = rng.normal(0, 300, 48000).astype(np.int16)
    assert speech.speech_frames(noise).mean() < 0.05
    assert speech.speech_frames(np.zeros(0, np.int16)).shape == (0,)


def test_chunk_to_frames_and_dilate():
    probs = np.array([0.0, 1.0, 1.0, 0.0, 0.0])  # 512-sample chunks
    frames = speech.chunk_to_frames(probs, 5 * 512)
    assert frames.shape == (4,)  # 2560 samples: 4 frames, the last one partial
    # frame 0 = samples 0..639: 512 of chunk 0 (p 0) and 128 of chunk 1 (p 1)
    assert frames[0] == pytest.approx(128 / 640)
    assert frames[1] == pytest.approx(1.0)
    mask = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    assert speech.dilate(mask, 2).tolist() == [0, 1, 1, 1, 1, 1, 0]
    assert speech.dilate(mask, 0).tolist() == mask.tolist()


def gated_reference(sims: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``S_speech(k)`` by loops: speech audio frames j against lips j - k."""
    t, width = sims.shape
    out = np.full(width, np.nan)
    for c in range(width):
        k = c - K
        vals = [sims[i, c] for i in range(t) if 0 <= i + k < t and m[i + k]]
        if vals:
            out[c] = np.mean(vals)
    return out


def test_gated_score_matches_its_definition():
    rng = np.random.default_rng(0)
    video, audio = torch.randn(80, 8), torch.randn(80, 8)
    sims = sc.frame_similarities(video, audio, K)
    m = rng.random(80) < 0.4
    gated = speech.gated_score(sims, m)
    ref = gated_reference(sims.double().numpy(), m)
    assert gated.curve_speech == pytest.approx(ref.tolist())
    assert gated.score_speech == pytest.approx(np.nanmax(ref))
    assert gated.best_offset_speech == int(np.nanargmax(ref)) - K
    assert gated.speech_frames == m.sum() and gated.speech_seconds == m.sum() / 25
    assert gated.speech_fraction == pytest.approx(m.mean())


def test_gated_score_ignores_silence_and_keeps_paper_score():
    rng = np.random.default_rng(1)
    video, audio = torch.randn(100, 8), torch.randn(100, 8)
    sims = sc.frame_similarities(video, audio, K)
    paper = sc.score_clip(video, audio, K)
    m = np.r_[np.zeros(40), np.ones(60)].astype(bool)
    a = speech.gated_score(sims, m)
    # rows whose speech pairings are all silence can change freely
    changed = sims.clone()
    changed[: 40 - K] = torch.from_numpy(rng.normal(size=(40 - K, 2 * K + 1))).float()
    b = speech.gated_score(changed, m)
    assert a.score_speech == b.score_speech and a.curve_speech == b.curve_speech
    # the paper's rule is not touched: mean over all frames, max over k
    assert paper.score == pytest.approx(float(sims.mean(0).max()))


def test_gated_score_without_speech_and_short_masks():
    sims = torch.randn(50, 2 * K + 1)
    none = speech.gated_score(sims, np.zeros(50, bool))
    assert none.score_speech is None and none.best_offset_speech is None
    assert none.curve_speech == [None] * (2 * K + 1) and none.speech_seconds == 0
    # a mask shorter than the clip: the rest is silence; a longer one is cut
    short = speech.gated_score(sims, np.ones(10, bool))
    assert short.speech_frames == 10
    assert speech.gated_score(sims, np.ones(80, bool)).speech_frames == 50


def test_audio_stats():
    x = np.zeros(16000, np.int16)
    stats = speech.audio_stats(x)
    assert stats.peak == 0 and stats.rms_dbfs is None and stats.duration_s == 1.0
    y = (np.sin(np.arange(16000) / 5) * 32767).astype(np.int16)
    clipped = speech.audio_stats(np.clip(y.astype(np.int32) * 4, -32768, 32767).astype(np.int16))
    assert clipped.clipped_fraction > 0.5
    quiet = speech.audio_stats((y // 100).astype(np.int16))
    assert quiet.rms_dbfs == pytest.approx(20 * np.log10(0.01 / np.sqrt(2)), abs=0.2)
    assert speech.audio_stats(np.zeros(0, np.int16)).n_samples == 0


def test_analyse_wav_caps_like_the_scorer(tmp_path, utterance):
    x = padded(utterance.audio, 1.0, 0.5)
    path = tmp_path / "a.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    full = speech.analyse_wav(str(path), max_seconds=None)
    capped = speech.analyse_wav(str(path), max_seconds=2.0)
    assert full.full_duration_s == capped.full_duration_s == pytest.approx(x.size / 16000)
    assert capped.stats.n_samples == 32000 and capped.speech.size == 50
    assert full.speech.size == speech.frame_count(x.size)
    assert (full.speech[:50] == capped.speech).mean() > 0.9  # same detector, streamed state aside


def test_the_same_speech_is_analysed_once(utterance, monkeypatch):
    """A wav met again (a real clip's speech under its fakes' videos) reuses the probabilities;
    what comes back is a copy, so a caller's change cannot reach the next caller."""
    x = padded(utterance.audio, 0.5, 0.5, noise=30.0, seed=7)
    first = speech.speech_probabilities(x)
    calls = []
    model = speech._silero_model()

    class Counting:
        def reset_states(self):
            model.reset_states()

        def audio_forward(self, *args):
            calls.append(1)
            return model.audio_forward(*args)

    monkeypatch.setattr(speech, "_silero_model", lambda: Counting())
    again = speech.speech_probabilities(x.copy())
    assert calls == [] and np.array_equal(again, first)
    again[:] = -1.0
    assert np.array_equal(speech.speech_probabilities(x), first)
    other = speech.speech_probabilities(padded(utterance.audio, 0.5, 0.5, noise=30.0, seed=8))
    assert calls == [1] and other.shape == first.shape and not np.array_equal(other, first)
    assert len(speech._RECENT_PROBABILITIES) >= 2
    assert speech._RECENT_PROBABILITIES.nbytes <= speech._RECENT_PROBABILITIES.max_bytes
