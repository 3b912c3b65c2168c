"""The alignment terms of ``av_hubert_alignment`` against direct per-frame computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sf_fairseq.criteria.av_alignment_criterion import clip_alignment_loss, frame_alignment_loss


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    video, audio = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    padding = torch.zeros(3, 5, dtype=torch.bool)
    padding[1, 3:] = True  # clip 1 has 3 frames
    padding[2, 4:] = True  # clip 2 has 4 frames
    return video, audio, padding


def _nce(query: torch.Tensor, keys: torch.Tensor, positive: int, tau: float) -> float:
    logits = F.normalize(keys, dim=-1) @ F.normalize(query, dim=-1) / tau
    return float(torch.logsumexp(logits, 0) - logits[positive])


def test_batch_negatives_are_every_other_frame_of_the_batch() -> None:
    video, audio, padding = _inputs()
    loss, n = frame_alignment_loss(video, audio, padding, 0.1)
    v, a = video[~padding], audio[~padding]
    expected = sum(_nce(v[i], a, i, 0.1) + _nce(a[i], v, i, 0.1) for i in range(len(v))) / (2 * len(v))
    assert n == 12 and float(loss) == pytest.approx(expected, rel=1e-5)


def test_clip_negatives_are_the_other_frames_of_the_same_clip() -> None:
    video, audio, padding = _inputs()
    loss, n = clip_alignment_loss(video, audio, padding, 0.1)
    total = 0.0
    for b in range(3):
        length = int((~padding[b]).sum())
        v, a = video[b, :length], audio[b, :length]
        total += sum(_nce(v[t], a, t, 0.1) + _nce(a[t], v, t, 0.1) for t in range(length))
    assert n == 12 and float(loss) == pytest.approx(total / (2 * 12), rel=1e-5)
    # Padded frames take no part: changing them changes nothing.
    video[padding] = 100.0
    assert float(clip_alignment_loss(video, audio, padding, 0.1)[0]) == pytest.approx(float(loss), rel=1e-6)


def test_clip_negatives_ignore_which_clip_a_frame_comes_from() -> None:
    # Frames that only say which clip they belong to (a constant per clip) carry no timing:
    # they lower the batch term from chance (ln 24 frames) to ln 6, and leave the clip term at
    # chance (ln 6 frames per clip).
    video = torch.eye(4)[:, None, :].repeat(1, 6, 1)  # [4 clips, 6 frames, 4]
    audio = video.clone()
    batch_loss, _ = frame_alignment_loss(video, audio, None, 0.01)
    clip_loss, _ = clip_alignment_loss(video, audio, None, 0.01)
    chance_batch = float(frame_alignment_loss(torch.zeros(4, 6, 4) + 1, torch.zeros(4, 6, 4) + 1, None, 0.01)[0])
    assert chance_batch == pytest.approx(math.log(24), rel=1e-5)
    assert float(batch_loss) == pytest.approx(math.log(6), rel=1e-3)
    assert float(clip_loss) == pytest.approx(math.log(6), rel=1e-5)
    # A time code instead: perfect within each clip.
    time_code = torch.eye(6)[None].repeat(4, 1, 1)
    assert float(clip_alignment_loss(time_code, time_code, None, 0.01)[0]) < 1e-6
