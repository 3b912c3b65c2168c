"""SpeechForensics' lip-speech agreement score, as pure tensor functions.

The published rule (``evaluate.py::calc_cos_dist`` of Eleven4AI/SpeechForensics), for lip
features ``V`` [Tv, D] and speech features ``A`` [Ta, D] of one clip:

1. L2-normalise every row of ``V`` and ``A`` (with the reference's epsilons, including its
   second normalisation of rows whose norm is below 1e-12: see :func:`unit_rows`).
2. If ``Tv != Ta``, resample ``V`` to ``Ta`` rows by index ``floor(linspace(0, Tv - 1, Ta))``
   (numpy's float64 ``linspace`` cast to int, reproduced bit for bit).
3. Zero-pad ``A`` by ``K`` rows at both ends (``K = 15`` = ±0.6 s at 25 fps).
4. ``s_i(k) = cos(V_i, A_{i+k})`` for ``k = -K..K`` (0 where ``A_{i+k}`` is padding).
5. ``S(k) = mean_i s_i(k)``; the score is ``max_k S(k)``. Higher means more likely real.

Offset sign: the best ``k > 0`` means the lips at frame ``i`` agree with the speech at frame
``i + k``, i.e. the audio lags the video by ``k`` frames (``k * 1000 / fps`` ms).

Beyond the paper:

* :func:`window_scores` - the same rule over sliding windows (window/hop in seconds), each with
  its own best offset, so a partly manipulated clip shows *where* agreement breaks down. A
  window's ``s_i(k)`` still reads speech frames outside the window (real neighbouring audio, not
  padding), so only the averaging is local.
* :func:`dynamic_offset_score` - lets the offset drift along the clip: each frame takes the
  offset that maximises ``s(k)`` averaged over a centred neighbourhood of ``smooth_frames``
  frames, and the score is ``mean_i s_i(k_i)`` over those per-frame offsets ``k_i``. With a
  neighbourhood as long as the clip it equals the global score; shorter neighbourhoods tolerate drifting sync
  (variable frame rate, re-timed video) but also raise the scores of fakes, so it is a
  diagnostic, not the paper's score.

Everything is vectorised over frames and offsets (no Python loop over either); batched
variants take zero-padded batches plus lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sf_fairseq.data.rates import FPS

DEFAULT_MAX_OFFSET = 15
DEFAULT_FPS = float(FPS)  # a float: score settings and records store 25.0
DEFAULT_MAX_SECONDS = 50.0
# Frames per block in the banded similarity product: larger blocks waste more multiply-adds
# (block + 2K columns per row instead of 2K + 1), smaller ones make more, tinier matmuls.
_BLOCK = 64
# The reference's epsilons: ``F.normalize`` divides a row by max(norm, 1e-12), then
# ``F.cosine_similarity`` divides it again by max(its new norm, 1e-8).
NORMALIZE_EPS = 1e-12
COSINE_EPS = 1e-8


@dataclass
class ClipScore:
    """Result of :func:`score_clip`.

    Attributes:
        score: ``max_k S(k)``.
        best_offset: the maximising ``k`` in frames (first one on ties).
        best_offset_ms: ``best_offset * 1000 / fps``.
        curve: ``S(k)`` for ``k = -K..K``, shape ``(2K + 1,)``.
        n_frames: number of frames averaged (the speech length after capping).
    """

    score: float
    best_offset: int
    best_offset_ms: float
    curve: torch.Tensor
    n_frames: int


@dataclass
class WindowScores:
    """Per-window scores of one clip (:func:`window_scores`).

    Attributes:
        start_s, end_s: window bounds in seconds, shape ``(n_windows,)``.
        scores: ``max_k`` of the window's ``S(k)``, shape ``(n_windows,)``.
        best_offsets: maximising ``k`` in frames, shape ``(n_windows,)``.
    """

    start_s: torch.Tensor
    end_s: torch.Tensor
    scores: torch.Tensor
    best_offsets: torch.Tensor


def resample_index(n_video: int, n_audio: int) -> np.ndarray:
    """Rows of ``V`` kept when resampling ``n_video`` rows to ``n_audio``: the reference's
    ``np.linspace(0, n_video - 1, n_audio).astype(int)`` (float64, truncation = floor)."""
    if n_video < 1 or n_audio < 1:
        raise ValueError(f"empty stream: {n_video} video and {n_audio} audio frames")
    return np.linspace(0, n_video - 1, n_audio).astype(np.int64)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (last dimension) scaled as the reference scales them before its dot product:
    ``u = F.normalize(x)``, then ``u / max(|u|, COSINE_EPS)`` as ``F.cosine_similarity`` does.

    A row whose norm is at least ``NORMALIZE_EPS`` is ``F.normalize``'s output unchanged: its
    second division is by ``|u| = 1`` up to rounding, so skipping it keeps ordinary scores
    bit-identical. A row below ``NORMALIZE_EPS`` (a near-silent or collapsed feature) is not
    unit after ``F.normalize`` and takes the second division exactly as the reference does, so
    it counts as a direction, not as a near-zero similarity (an all-zero row stays zero).
    """
    u = F.normalize(x, p=2, dim=-1, eps=NORMALIZE_EPS)
    tiny = torch.linalg.vector_norm(x, dim=-1, keepdim=True) < NORMALIZE_EPS
    again = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(COSINE_EPS)
    return torch.where(tiny, again, u)


def _banded_dot(v: torch.Tensor, a_padded: torch.Tensor, max_offset: int) -> torch.Tensor:
    """``out[b, i, j] = v[b, i] . a_padded[b, i + j]`` for ``j = 0..2K``.

    Args:
        v: ``(B, T, D)``.
        a_padded: ``(B, T + 2K, D)``.

    Returns:
        ``(B, T, 2K + 1)``. Computed block-wise: each block of ``_BLOCK`` frames is one matmul
        against the ``_BLOCK + 2K`` speech rows it can reach, and the band is read out of the
        product with a strided view, so memory stays ``O(B * T * (_BLOCK + 2K))``.
    """
    b, t, d = v.shape
    width = 2 * max_offset + 1
    n_blocks = -(-t // _BLOCK)
    extra = n_blocks * _BLOCK - t
    v_blocks = F.pad(v, (0, 0, 0, extra)).view(b, n_blocks, _BLOCK, d)
    reach = _BLOCK + 2 * max_offset
    a_blocks = F.pad(a_padded, (0, 0, 0, extra)).unfold(1, reach, _BLOCK)  # (B, n, D, reach)
    prod = torch.matmul(v_blocks, a_blocks).contiguous()  # (B, n, _BLOCK, reach)
    band = prod.as_strided(
        (b, n_blocks, _BLOCK, width),
        (n_blocks * _BLOCK * reach, _BLOCK * reach, reach + 1, 1),
    )
    return band.reshape(b, n_blocks * _BLOCK, width)[:, :t]


def batch_frame_similarities(
    video: torch.Tensor,
    video_lengths: torch.Tensor,
    audio: torch.Tensor,
    audio_lengths: torch.Tensor,
    max_offset: int = DEFAULT_MAX_OFFSET,
    max_frames: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``s_i(k)`` for a zero-padded batch (steps 1-4 of the rule).

    Args:
        video: lip features ``(B, Tv_max, D)``; rows past ``video_lengths[b]`` are ignored.
        video_lengths: ``(B,)`` valid rows per clip.
        audio: speech features ``(B, Ta_max, D)``.
        audio_lengths: ``(B,)``.
        max_offset: ``K``.
        max_frames: cap both streams at this many frames (the 50 s cap; None = no cap).

    Returns:
        ``(sims, mask)``: ``sims`` ``(B, T, 2K + 1)`` float32 with ``T = max(audio length)``,
        ``sims[b, i, k + K] = s_i(k)``, zero for ``i`` past the clip; ``mask`` ``(B, T)`` bool,
        True for valid frames.
    """
    if video.dim() != 3 or audio.dim() != 3 or video.shape[-1] != audio.shape[-1]:
        raise ValueError(f"expected (B, T, D) features, got {tuple(video.shape)} and {tuple(audio.shape)}")
    vlen = [int(n) for n in video_lengths.tolist()]
    alen = [int(n) for n in audio_lengths.tolist()]
    if max_frames is not None:
        vlen = [min(n, max_frames) for n in vlen]
        alen = [min(n, max_frames) for n in alen]
    t = max(alen)
    device = audio.device
    # Resampling index per clip (numpy, to match the reference's float64 linspace exactly).
    index = np.zeros((len(alen), t), dtype=np.int64)
    for row, (nv, na) in enumerate(zip(vlen, alen)):
        index[row, :na] = resample_index(nv, na)
    index_t = torch.from_numpy(index).to(device)
    mask = torch.arange(t, device=device)[None, :] < torch.tensor(alen, device=device)[:, None]

    v = unit_rows(video.float())
    v = torch.gather(v, 1, index_t[..., None].expand(-1, -1, v.shape[-1]))
    v = v * mask[..., None]
    a = unit_rows(audio[:, :t].float()) * mask[..., None]
    a = F.pad(a, (0, 0, max_offset, max_offset))
    return _banded_dot(v, a, max_offset), mask


def batch_offset_curves(sims: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``S(k)`` per clip: ``(B, T, 2K + 1)``, ``(B, T)`` -> ``(B, 2K + 1)``."""
    return sims.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


def batch_score(
    video: torch.Tensor,
    video_lengths: torch.Tensor,
    audio: torch.Tensor,
    audio_lengths: torch.Tensor,
    max_offset: int = DEFAULT_MAX_OFFSET,
    max_frames: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The SpeechForensics score of every clip of a padded batch.

    Returns:
        ``(scores (B,), best_offsets (B,) in frames, curves (B, 2K + 1))``.
    """
    sims, mask = batch_frame_similarities(
        video, video_lengths, audio, audio_lengths, max_offset, max_frames
    )
    curves = batch_offset_curves(sims, mask)
    scores, best = curves.max(dim=1)
    return scores, best - max_offset, curves


def frame_similarities(
    video: torch.Tensor,
    audio: torch.Tensor,
    max_offset: int = DEFAULT_MAX_OFFSET,
    max_frames: int | None = None,
) -> torch.Tensor:
    """``s_i(k)`` of one clip: ``V (Tv, D)``, ``A (Ta, D)`` -> ``(Ta', 2K + 1)``."""
    sims, _ = batch_frame_similarities(
        video[None],
        torch.tensor([video.shape[0]]),
        audio[None],
        torch.tensor([audio.shape[0]]),
        max_offset,
        max_frames,
    )
    return sims[0]


def score_clip(
    video: torch.Tensor,
    audio: torch.Tensor,
    max_offset: int = DEFAULT_MAX_OFFSET,
    fps: float = DEFAULT_FPS,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> ClipScore:
    """The SpeechForensics score of one clip.

    Args:
        video: lip features ``(Tv, D)``.
        audio: speech features ``(Ta, D)``.
        max_offset: ``K``, the largest offset searched, in frames.
        fps: feature frame rate (25 for AV-HuBERT), for the offset in ms and the cap.
        max_seconds: cap both streams at this duration (None = no cap).
    """
    max_frames = None if max_seconds is None else int(round(max_seconds * fps))
    sims = frame_similarities(video, audio, max_offset, max_frames)
    curve = sims.mean(0)
    score, best = curve.max(dim=0)
    offset = int(best) - max_offset
    return ClipScore(
        score=float(score),
        best_offset=offset,
        best_offset_ms=offset * 1000.0 / fps,
        curve=curve,
        n_frames=sims.shape[0],
    )


def window_scores(
    sims: torch.Tensor,
    window_s: float = 2.0,
    hop_s: float = 1.0,
    fps: float = DEFAULT_FPS,
) -> WindowScores:
    """Per-window scores from ``s_i(k)`` of one clip.

    Windows of ``window_s`` seconds start every ``hop_s`` seconds; a last window is aligned to
    the clip's end when the hops leave frames uncovered, and a clip shorter than one window is a
    single window. Each window's score is ``max_k mean_{i in window} s_i(k)``.

    Args:
        sims: ``(T, 2K + 1)`` from :func:`frame_similarities`.
    """
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window and hop must be positive, got {window_s} and {hop_s}")
    t, width = sims.shape
    max_offset = (width - 1) // 2
    win = max(1, min(t, int(round(window_s * fps))))
    hop = max(1, int(round(hop_s * fps)))
    starts = torch.arange(0, t - win + 1, hop)
    if int(starts[-1]) + win < t:
        starts = torch.cat([starts, torch.tensor([t - win])])
    prefix = F.pad(sims.double().cumsum(0), (0, 0, 1, 0))  # (T + 1, 2K + 1)
    curves = (prefix[starts + win] - prefix[starts]) / win
    scores, best = curves.max(dim=1)
    return WindowScores(
        start_s=starts.double() / fps,
        end_s=(starts + win).double() / fps,
        scores=scores.float(),
        best_offsets=best - max_offset,
    )


def dynamic_offset_score(
    sims: torch.Tensor, smooth_frames: int = 25
) -> tuple[float, torch.Tensor]:
    """Score with an offset that may drift along the clip (see the module docstring).

    Args:
        sims: ``(T, 2K + 1)`` from :func:`frame_similarities`.
        smooth_frames: neighbourhood length (frames, centred; clipped at the clip's ends) over
            which ``s(k)`` is averaged before each frame picks its offset.

    Returns:
        ``(score, offsets)``: ``mean_i s_i(k_i)``, and the chosen offset ``k_i`` of every
        frame in frames, shape ``(T,)``.
    """
    if smooth_frames < 1:
        raise ValueError(f"smooth_frames must be >= 1, got {smooth_frames}")
    t, width = sims.shape
    max_offset = (width - 1) // 2
    prefix = F.pad(sims.double().cumsum(0), (0, 0, 1, 0))
    centre = torch.arange(t)
    lo = (centre - smooth_frames // 2).clamp(min=0)
    hi = (lo + smooth_frames).clamp(max=t)
    lo = (hi - smooth_frames).clamp(min=0)
    local = (prefix[hi] - prefix[lo]) / (hi - lo)[:, None]
    best = local.argmax(dim=1)
    achieved = sims.gather(1, best[:, None]).squeeze(1)
    return float(achieved.double().mean()), best - max_offset
