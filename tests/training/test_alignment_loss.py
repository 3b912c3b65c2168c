"""The alignment terms of ``av_hubert_alignment`` against direct per-frame computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sf_fairseq.criteria.av_alignment_criterion import (
    clip_alignment_loss,
    clip_pair_loss,
    frame_alignment_loss,
    shifted_excerpts,
)

# The tests seed torch's global RNG (model initialisation and the criteria draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")


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


@pytest.mark.parametrize("shift", [-3, -1, 0, 2, 3])
def test_shifted_excerpts_pair_the_same_instants(shift: int) -> None:
    frames, lengths = 10, [10, 7]
    instants = torch.arange(frames, dtype=torch.float32)
    video = instants.view(1, 1, frames, 1, 1).expand(2, 1, frames, 2, 2)  # [B, 1, T, H, W]
    audio = instants.view(1, 1, frames).expand(2, 4, frames)  # [B, F, T]
    padding_mask = torch.arange(frames)[None, :] >= torch.tensor(lengths)[:, None]

    video_in, audio_in, video_mask, audio_mask, video_rows, audio_rows = shifted_excerpts(
        video, audio, padding_mask, shift)
    assert video_in.shape[2] == audio_in.shape[2] == frames - abs(shift)
    assert video_in[0, 0, 0, 0, 0] - audio_in[0, 0, 0] == shift  # the excerpts are `shift` apart
    # An "encoder" that returns each frame's instant: the selected rows hold the same instants.
    video_rows_instants = video_in[:, 0, :, 0, 0][:, video_rows]
    audio_rows_instants = audio_in[:, 0, :][:, audio_rows]
    expected = torch.arange(abs(shift), frames - abs(shift), dtype=torch.float32).expand(2, -1)
    torch.testing.assert_close(video_rows_instants, expected)
    torch.testing.assert_close(audio_rows_instants, expected)
    # Padding follows the instants: the 7-frame clip is padded from instant 7 on in both.
    torch.testing.assert_close(video_mask[:, video_rows], expected >= torch.tensor([[10.0], [7.0]]))
    torch.testing.assert_close(audio_mask[:, audio_rows], video_mask[:, video_rows])


def test_shift_that_leaves_no_common_frame_is_refused() -> None:
    video, audio = torch.zeros(1, 1, 6, 2, 2), torch.zeros(1, 4, 6)
    with pytest.raises(ValueError, match="no common frames"):
        shifted_excerpts(video, audio, None, 3)


def test_clip_pair_term_compares_each_clip_with_the_other_clips_audio() -> None:
    video, audio, padding = _inputs()
    loss, n = clip_pair_loss(video, audio, padding, 0.1)
    valid = ~padding
    means = torch.zeros(3, 3)
    for b in range(3):
        for c in range(3):
            common = valid[b] & valid[c]
            means[b, c] = F.cosine_similarity(video[b, common], audio[c, common], dim=-1).mean()
    logits = means / 0.1
    expected = sum(float(torch.logsumexp(logits[b], 0) - logits[b, b]) +
                   float(torch.logsumexp(logits[:, b], 0) - logits[b, b]) for b in range(3)) / 6
    assert n == 3 and float(loss) == pytest.approx(expected, rel=1e-5)


def test_clip_pair_term_penalises_a_component_all_clips_share() -> None:
    # Every frame = its clip's own pattern + one component shared by all clips: with the shared
    # part, other clips' audio scores nearly as high as the clip's own, and the term is higher.
    torch.manual_seed(1)
    timing = torch.randn(4, 8, 16)
    shared = 3.0 * torch.randn(1, 1, 16)
    plain = clip_pair_loss(timing, timing, None, 0.3)[0]
    with_shared = clip_pair_loss(timing + shared, timing + shared, None, 0.3)[0]
    assert float(with_shared) > float(plain) + 0.1
    single = clip_pair_loss(timing[:1], timing[:1], None, 0.3)
    assert single[1] == 1 and float(single[0]) == 0.0
