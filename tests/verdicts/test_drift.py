"""Offset drift on similarity matrices with a known offset change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sf_fairseq.eval import score as sc
from sf_fairseq.eval.drift import DriftSettings, change_point, offset_drift

K = 15


def peaked_sims(offsets: np.ndarray, width: float = 1.5, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """``s_i(k)``: a bump at each frame's true offset plus noise, shape ``(T, 2K + 1)``."""
    rng = np.random.default_rng(seed)
    k = np.arange(-K, K + 1)
    sims = 0.6 * np.exp(-((k[None, :] - offsets[:, None]) ** 2) / (2 * width ** 2))
    return sims + rng.normal(0, noise, sims.shape)


def shifted_features(n_frames: int, shift_at: int, shift: int, dim: int = 32, seed: int = 0):
    """Lip and speech features whose audio is aligned until ``shift_at`` and delayed by
    ``shift`` frames after it (a spliced, re-timed second half)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_frames + shift, dim))
    smooth = np.stack([np.convolve(base[:, d], np.ones(3) / 3, mode="same") for d in range(dim)], 1)
    video = smooth[:n_frames]
    audio = video.copy()
    audio[shift_at + shift:] = video[shift_at: n_frames - shift]  # audio j shows lips j - shift
    audio += rng.normal(0, 0.3, audio.shape)
    return torch.tensor(video, dtype=torch.float32), torch.tensor(audio, dtype=torch.float32)


def test_constant_offset_does_not_drift():
    sims = peaked_sims(np.full(250, 4))
    result = offset_drift(sims)
    assert not result.drifting and result.change_times_s == []
    assert all(result.window_confident)
    assert set(result.window_offset) == {4}
    assert [s.offset for s in result.segments] == [4]
    assert result.segments[0].start_s == 0 and result.segments[0].end_s == 10.0


def test_shift_of_eight_frames_halfway_is_flagged_with_its_time():
    offsets = np.r_[np.zeros(125), np.full(125, 8)].astype(int)  # 10 s, shift at 5.0 s
    result = offset_drift(peaked_sims(offsets))
    assert result.drifting and result.max_disagreement == 8
    assert [s.offset for s in result.segments] == [0, 8]
    assert result.change_times_s == [pytest.approx(5.0, abs=0.12)]  # within 3 frames
    record = result.as_record()
    assert record["drifting"] and record["segments"][1]["offset_ms"] == 320.0
    assert record["settings"]["max_disagreement"] == 3


def test_shift_on_encoded_features():
    """Features with a real splice, through the scorer's own s_i(k)."""
    video, audio = shifted_features(300, shift_at=150, shift=8)
    sims = sc.frame_similarities(video, audio, K)
    result = offset_drift(sims, settings=DriftSettings(min_prominence=0.1))
    assert result.drifting
    assert [s.offset for s in result.segments] == [0, 8]
    # lips 150..157 match the audio at both offsets (the spliced audio starts at frame 158)
    assert 150 / 25 - 0.1 <= result.change_times_s[0] <= 158 / 25 + 0.1
    clean = offset_drift(sc.frame_similarities(*shifted_features(300, 300, 0), K),
                         settings=DriftSettings(min_prominence=0.1))
    assert not clean.drifting


def test_small_jitter_is_not_drift():
    offsets = np.r_[np.zeros(100), np.full(100, 2), np.full(50, 1)].astype(int)
    result = offset_drift(peaked_sims(offsets))
    assert not result.drifting and result.max_disagreement <= 3
    assert len(result.segments) == 1


def test_flat_or_silent_windows_are_not_confident():
    rng = np.random.default_rng(0)
    offsets = np.r_[np.zeros(125), np.full(125, 8)].astype(int)
    sims = peaked_sims(offsets)
    sims[125:] = rng.normal(0, 0.01, (125, 2 * K + 1))  # flat second half: no evidence there
    result = offset_drift(sims)
    assert not result.drifting
    # same shifted clip, but the second half is silence according to the speech mask
    speech = np.r_[np.ones(125), np.zeros(125)].astype(bool)
    assert not offset_drift(peaked_sims(offsets), speech=speech).drifting
    assert offset_drift(peaked_sims(offsets), speech=np.ones(250, bool)).drifting


def test_edge_offsets_are_not_confident():
    offsets = np.r_[np.zeros(125), np.full(125, 20)].astype(int)  # beyond the window: peak at +15
    assert not offset_drift(peaked_sims(offsets)).drifting


def test_change_point_is_the_best_split():
    sims = peaked_sims(np.r_[np.zeros(60), np.full(40, 8)].astype(int), noise=0.0)
    assert change_point(sims, 0, 100, K, K + 8) == 60


def test_short_and_empty_clips():
    assert not offset_drift(np.zeros((0, 2 * K + 1))).drifting
    short = offset_drift(peaked_sims(np.full(20, 3)))
    assert len(short.window_offset) == 1 and not short.drifting


def test_an_isolated_window_is_not_a_segment():
    offsets = np.zeros(250, int)
    offsets[121:147] = 9  # 1.04 s at another offset: two 2 s windows lock onto it
    result = offset_drift(peaked_sims(offsets), settings=DriftSettings(min_segment_windows=3))
    assert result.window_offset.count(9) == 2
    assert not result.drifting and [s.offset for s in result.segments] == [0]
    strict = offset_drift(peaked_sims(np.r_[np.zeros(125), np.full(125, 9)].astype(int)),
                          settings=DriftSettings(min_segment_windows=3))
    assert strict.drifting and all(s.start_s < s.end_s for s in strict.segments)
