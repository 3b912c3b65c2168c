"""Span masks for masked prediction and AV-HuBERT's input substitutions, vectorised over the batch.

The masks follow AV-HuBERT's ``compute_mask_indices`` (static span length): per sequence
``int(p * T_valid / L + U(0, 1))`` spans (at least ``min_masks``) of length ``L`` start at distinct
positions in ``[0, T_valid - L)``; spans may overlap; every row is then subsampled to the same number
of masked frames, the smallest in the batch.
"""

from __future__ import annotations

import torch


def _random_rank(candidates: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Rank of each True entry of ``candidates`` [B, T] in a random order per row; False -> T."""
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    keys = keys.masked_fill(~candidates, 2.0)
    order = keys.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(candidates.size(1), device=candidates.device).expand_as(order))
    return ranks.masked_fill(~candidates, candidates.size(1))


def compute_mask_indices(
    shape: tuple[int, int],
    padding_mask: torch.Tensor | None,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Boolean mask [B, T] (True = masked), never on padded frames.

    Args:
        shape: (batch, frames).
        padding_mask: [B, T], True at padded frames, or None.
        mask_prob: expected fraction of frames to mask (before span overlap).
        mask_length: span length L.
        min_masks: minimum number of spans per sequence.
    """
    batch, frames = shape
    if padding_mask is None:
        lengths = torch.full((batch,), frames, device=device)
    else:
        lengths = (~padding_mask).sum(dim=1).to(device)
    positions = torch.arange(frames, device=device)
    # Spans start in [0, T_valid - L); a sequence shorter than a span can still start at 0.
    n_starts = (lengths - mask_length).clamp(min=1)
    uniform = torch.rand(batch, generator=generator, device=device)
    n_spans = (mask_prob * lengths.float() / mask_length + uniform).long().clamp(min=min_masks)
    n_spans = torch.minimum(n_spans, n_starts)
    start_candidates = positions[None, :] < n_starts[:, None]
    is_start = _random_rank(start_candidates, generator) < n_spans[:, None]
    # A frame is masked when a span started within the last L frames: a windowed count of starts.
    started = is_start.long().cumsum(dim=1)
    shifted = torch.nn.functional.pad(started, (mask_length, 0))[:, :frames]
    mask = (started - shifted > 0) & (positions[None, :] < lengths[:, None])
    # Equalise the number of masked frames across rows (a random subset of each row's frames).
    n_keep = mask.sum(dim=1).min()
    return _random_rank(mask, generator) < n_keep


def span_bounds(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs of True in ``mask`` [B, T]: (batch index, start, end) per run, end exclusive."""
    padded = torch.nn.functional.pad(mask, (1, 1))
    rises = padded[:, 1:-1] & ~padded[:, :-2]
    falls = padded[:, 1:-1] & ~padded[:, 2:]
    batch_index, starts = rises.nonzero(as_tuple=True)
    _, last = falls.nonzero(as_tuple=True)
    return batch_index, starts, last + 1


def substitute_same_sequence(
    video: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``same_seq``: each masked span [s, e) of a clip is replaced by an equally long span of the
    same clip starting at a random position outside [s - len, e), so it never overlaps itself.

    Args:
        video: [B, C, T, H, W].
        mask: [B, T] spans to replace.
        lengths: [B] valid frames per clip.
    Returns:
        The video with masked frames substituted (zeros where a clip has no room for a source).
    """
    batch, _, frames = video.shape[:3]
    span_batch, starts, ends = span_bounds(mask)
    span_len = ends - starts
    # Candidate source starts are [0, T_valid - len) minus the excluded [s - len, e).
    n_positions = (lengths[span_batch] - span_len).clamp(min=0)
    excluded_low = (starts - span_len).clamp(min=0)
    excluded_high = torch.minimum(ends, n_positions)
    n_excluded = (excluded_high - excluded_low).clamp(min=0)
    n_allowed = n_positions - n_excluded
    draw = (torch.rand(starts.shape, generator=generator, device=video.device) * n_allowed).long()
    source = torch.where(draw < excluded_low, draw, draw + n_excluded)
    has_source = n_allowed > 0

    # Per frame: the source frame index, via the span each masked frame belongs to.
    positions = torch.arange(frames, device=video.device)
    index = positions.expand(batch, frames).clone()
    span_of_frame = torch.zeros(batch, frames, dtype=torch.long, device=video.device)
    span_ids = torch.arange(starts.numel(), device=video.device)
    span_of_frame[span_batch, starts] = span_ids
    span_of_frame = span_of_frame.cummax(dim=1).values  # spans never overlap: runs are disjoint
    frame_span = span_of_frame[mask]
    offset = positions.expand(batch, frames)[mask] - starts[frame_span]
    index[mask] = (source[frame_span] + offset).clamp(max=frames - 1)
    gathered = video.gather(2, index[:, None, :, None, None].expand_as(video))
    no_source = torch.zeros_like(mask)
    no_source[mask] = ~has_source[frame_span]
    return gathered.masked_fill(no_source[:, None, :, None, None], 0.0)


def substitute_other_sequence(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``same_other_seq``: masked frames take the same positions of the next clip in the batch
    (a cyclic shift); with a single clip there is no other clip and masked frames become zeros."""
    if video.size(0) == 1:
        return video.masked_fill(mask[:, None, :, None, None], 0.0)
    other = video.roll(shifts=1, dims=0)
    return torch.where(mask[:, None, :, None, None], other, video)
