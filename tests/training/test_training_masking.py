"""Span masks and AV-HuBERT's video substitutions (``sf_fairseq.models.masking``)."""

from __future__ import annotations

import pytest
import torch

from sf_fairseq.models.masking import (
    compute_mask_indices,
    span_bounds,
    substitute_other_sequence,
    substitute_same_sequence,
)


def _padding(lengths: list[int], frames: int) -> torch.Tensor:
    return torch.arange(frames)[None, :] >= torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("seed", range(20))
def test_equal_counts_across_rows_and_never_on_padding(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(15, 120, (6,), generator=generator).tolist()
    padding = _padding(lengths, max(lengths))
    mask = compute_mask_indices((6, max(lengths)), padding, 0.65, 10, generator=generator)
    counts = mask.sum(1)
    assert (counts == counts[0]).all() and counts[0] >= 10
    assert not (mask & padding).any()


def test_single_row_is_whole_spans_starting_before_the_last_span() -> None:
    # One row is never subsampled: runs are unions of whole spans (>= L frames) inside [0, T).
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        mask = compute_mask_indices((1, 200), None, 0.5, 10, generator=generator)
        _, starts, ends = span_bounds(mask)
        assert ((ends - starts) >= 10).all()
        # int(0.5 * 200 / 10 + U) = 10 spans of 10 frames, overlapping at most into 100 frames.
        assert 10 <= int(mask.sum()) <= 100
        assert int(ends.max()) <= 200 - 1  # starts lie in [0, T - L): the last frame is never masked


def test_expected_fraction_and_minimum_spans() -> None:
    generator = torch.Generator().manual_seed(0)
    fractions = [compute_mask_indices((1, 500), None, 0.3, 5, generator=generator).float().mean().item()
                 for _ in range(50)]
    # 30 spans of 5 frames cover 1 - (1 - 5/495)^30 ~= 26 % of the frames once overlaps merge.
    assert 0.22 < sum(fractions) / len(fractions) < 0.30
    tiny = compute_mask_indices((3, 40), None, 0.01, 4, min_masks=2, generator=generator)
    assert (tiny.sum(1) >= 4).all()  # min_masks spans even when p * T / L rounds to 0


def test_span_bounds_finds_runs() -> None:
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    batch, starts, ends = span_bounds(mask)
    assert batch.tolist() == [0, 0, 1] and starts.tolist() == [1, 4, 0] and ends.tolist() == [3, 5, 4]


def _numbered_video(batch: int, frames: int) -> torch.Tensor:
    """[B, 1, T, 2, 2] whose frame t of clip b holds 1000 * b + t, so a copy reveals its source."""
    values = 1000 * torch.arange(batch)[:, None] + torch.arange(frames)[None, :]
    return values[:, None, :, None, None].float().expand(batch, 1, frames, 2, 2).contiguous()


@pytest.mark.parametrize("seed", range(10))
def test_same_seq_copies_an_equal_span_of_the_same_clip_outside_the_excluded_window(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    lengths = [60, 45, 30]
    padding = _padding(lengths, 60)
    mask = compute_mask_indices((3, 60), padding, 0.3, 5, generator=generator)
    video = _numbered_video(3, 60)
    out = substitute_same_sequence(video, mask, torch.tensor(lengths), generator=generator)
    assert torch.equal(out[~mask[:, None, :, None, None].expand_as(out)],
                       video[~mask[:, None, :, None, None].expand_as(video)])  # unmasked frames untouched
    frame_value = out[:, 0, :, 0, 0]
    for b, start, end in zip(*(t.tolist() for t in span_bounds(mask))):
        copied = frame_value[b, start:end] - 1000 * b
        source = int(copied[0])
        length = end - start
        assert torch.equal(copied, torch.arange(source, source + length).float())  # one contiguous span
        assert 0 <= source and source + length <= lengths[b]  # from this clip's valid frames
        assert not (start - length <= source < end)  # the copy never overlaps the masked span


def test_same_other_seq_takes_the_same_positions_of_another_clip() -> None:
    generator = torch.Generator().manual_seed(3)
    mask = compute_mask_indices((4, 30), None, 0.3, 5, generator=generator)
    video = _numbered_video(4, 30)
    out = substitute_other_sequence(video, mask)
    values = out[:, 0, :, 0, 0]
    positions = torch.arange(30).float()
    for b in range(4):
        source_clip = (values[b, mask[b]] - positions[mask[b]]) / 1000
        assert (source_clip != b).all() and (source_clip == source_clip[0]).all()  # one other clip
        assert torch.equal(values[b, ~mask[b]], 1000 * b + positions[~mask[b]])
    # A batch of one has no other clip: masked frames become zeros.
    single = substitute_other_sequence(video[:1], mask[:1])
    assert (single[0, 0, mask[0]] == 0).all()
