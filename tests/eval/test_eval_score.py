"""The vectorised score equals a direct, loop-based transcription of SpeechForensics' rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sf_fairseq.eval import score as sc


def reference_curve(
    feat_v: torch.Tensor, feat_a: torch.Tensor, vshift: int = 15, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """SpeechForensics ``calc_cos_dist`` + the mean over frames, one frame at a time."""
    feat_v = F.normalize(feat_v.to(dtype), p=2, dim=1)
    feat_a = F.normalize(feat_a.to(dtype), p=2, dim=1)
    if len(feat_v) != len(feat_a):
        sample = np.linspace(0, len(feat_v) - 1, len(feat_a), dtype=int)
        feat_v = feat_v[torch.tensor(sample)]
    feat_a_p = F.pad(feat_a, (0, 0, vshift, vshift))
    win = 2 * vshift + 1
    dists = []
    for i in range(len(feat_v)):
        dists.append(F.cosine_similarity(feat_v[[i], :].repeat(win, 1), feat_a_p[i : i + win, :]))
    return torch.stack(dists).mean(0)


LENGTHS = [(100, 100), (100, 137), (137, 100), (7, 9), (9, 7), (1, 1), (3, 40), (200, 64)]


@pytest.mark.parametrize("tv,ta", LENGTHS)
def test_score_clip_matches_reference(tv: int, ta: int) -> None:
    gen = torch.Generator().manual_seed(tv * 1000 + ta)
    v = torch.randn(tv, 48, generator=gen)
    a = torch.randn(ta, 48, generator=gen)
    # A correlated component so the curve has a real peak away from 0.
    a[: min(tv, ta) - 3] += 0.8 * v[3 : min(tv, ta)] if min(tv, ta) > 3 else 0
    ref = reference_curve(v, a)
    got = sc.score_clip(v, a, max_seconds=None)
    torch.testing.assert_close(got.curve.double(), ref, atol=1e-6, rtol=0)
    assert got.score == pytest.approx(float(ref.max()), abs=1e-6)
    assert got.best_offset == int(ref.argmax()) - 15
    assert got.best_offset_ms == got.best_offset * 40.0
    assert got.n_frames == ta


def test_known_offset_is_found() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(120, 32, generator=gen)
    v = torch.roll(a, shifts=-4, dims=0)  # lips at i match speech at i + 4: audio lags by 4
    got = sc.score_clip(v, a)
    assert got.best_offset == 4
    assert got.best_offset_ms == 160.0
    assert got.score > 0.9


@pytest.mark.parametrize("k", [0, 3, 15, 20])
def test_other_offset_ranges(k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    v, a = torch.randn(30, 16, generator=gen), torch.randn(25, 16, generator=gen)
    torch.testing.assert_close(
        sc.score_clip(v, a, max_offset=k).curve.double(), reference_curve(v, a, k), atol=1e-6, rtol=0
    )


def test_batch_matches_single_clips_with_padding() -> None:
    gen = torch.Generator().manual_seed(1)
    lengths = LENGTHS
    b, d = len(lengths), 24
    vmax, amax = max(t for t, _ in lengths), max(t for _, t in lengths)
    v = torch.randn(b, vmax, d, generator=gen)
    a = torch.randn(b, amax, d, generator=gen)
    scores, offsets, curves = sc.batch_score(
        v, torch.tensor([t for t, _ in lengths]), a, torch.tensor([t for _, t in lengths])
    )
    for row, (tv, ta) in enumerate(lengths):
        ref = reference_curve(v[row, :tv], a[row, :ta])
        torch.testing.assert_close(curves[row].double(), ref, atol=1e-6, rtol=0)
        assert float(scores[row]) == pytest.approx(float(ref.max()), abs=1e-6)
        assert int(offsets[row]) == int(ref.argmax()) - 15


def test_cap_truncates_both_streams() -> None:
    gen = torch.Generator().manual_seed(2)
    v, a = torch.randn(90, 16, generator=gen), torch.randn(80, 16, generator=gen)
    got = sc.score_clip(v, a, fps=25.0, max_seconds=2.0)  # 50 frames
    torch.testing.assert_close(got.curve.double(), reference_curve(v[:50], a[:50]), atol=1e-6, rtol=0)
    assert got.n_frames == 50


def test_zero_feature_rows_give_zero_similarity() -> None:
    v = torch.zeros(10, 8)
    a = torch.randn(10, 8)
    assert sc.score_clip(v, a).score == 0.0


def test_window_scores_localise_a_broken_segment() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(250, 32, generator=gen)  # 10 s
    v = a.clone()
    v[125:] = torch.randn(125, 32, generator=gen)  # second half: lips unrelated to speech
    sims = sc.frame_similarities(v, a)
    win = sc.window_scores(sims, window_s=2.0, hop_s=1.0)
    assert win.start_s.tolist() == [float(s) for s in range(9)]
    assert win.end_s.tolist() == [float(s) + 2 for s in range(9)]
    assert (win.scores[:4] > 0.9).all() and (win.scores[-4:] < 0.5).all()
    assert (win.best_offsets[:4] == 0).all()
    # Each window equals the rule applied to the window's own rows of s_i(k).
    first = sims[50:100].mean(0)
    assert float(win.scores[2]) == pytest.approx(float(first.max()), abs=1e-6)


def test_window_scores_cover_the_clip_end_and_short_clips() -> None:
    sims = torch.rand(60, 31)
    win = sc.window_scores(sims, window_s=1.0, hop_s=1.0)  # 25-frame windows, 60 frames
    assert win.end_s.tolist()[-1] == pytest.approx(60 / 25)
    short = sc.window_scores(torch.rand(10, 31), window_s=2.0, hop_s=1.0)
    assert short.start_s.tolist() == [0.0] and short.end_s.tolist() == [0.4]


def test_dynamic_offset_follows_a_drift_and_equals_global_for_full_window() -> None:
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(200, 32, generator=gen)
    v = torch.cat([torch.roll(a, -2, 0)[:100], torch.roll(a, -6, 0)[100:]])  # offset 2 then 6
    sims = sc.frame_similarities(v, a)
    glob = sc.score_clip(v, a)
    full, _ = sc.dynamic_offset_score(sims, smooth_frames=200)
    assert full == pytest.approx(glob.score, abs=1e-6)
    dyn, offsets = sc.dynamic_offset_score(sims, smooth_frames=25)
    assert dyn > glob.score + 0.2
    assert (offsets[10:90] == 2).all() and (offsets[110:190] == 6).all()


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError):
        sc.score_clip(torch.randn(5, 8), torch.randn(5, 9))
    with pytest.raises(ValueError):
        sc.score_clip(torch.randn(0, 8), torch.randn(5, 8))


@pytest.mark.parametrize("scale", [1e-13, 1e-21, 0.0])
def test_near_zero_rows_are_normalised_as_the_reference_does(scale: float) -> None:
    """F.normalize leaves a row of norm < 1e-12 short of unit length and the reference's
    F.cosine_similarity divides it again by max(norm, 1e-8): the row keeps its direction."""
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(40, 32, generator=gen)
    a = v + 0.2 * torch.randn(40, 32, generator=gen)
    v[5] *= scale
    a[17] *= scale
    ref = reference_curve(v, a, dtype=torch.float32)  # the reference runs on float32 features
    got = sc.score_clip(v, a)
    torch.testing.assert_close(got.curve, ref, atol=1e-6, rtol=0)
    assert got.score == pytest.approx(float(ref.max()), abs=1e-6)


def test_a_clip_of_tiny_rows_scores_as_its_directions() -> None:
    gen = torch.Generator().manual_seed(6)
    v = torch.randn(30, 16, generator=gen)
    a = v + 0.1 * torch.randn(30, 16, generator=gen)
    tiny = sc.score_clip(v * 1e-13, a)
    ref = reference_curve(v * 1e-13, a, dtype=torch.float32)
    assert tiny.score == pytest.approx(float(ref.max()), abs=1e-6)
    assert tiny.score == pytest.approx(sc.score_clip(v, a).score, abs=1e-6)


def test_ordinary_rows_keep_plain_normalisation_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(3, 50, 24, generator=gen) * torch.logspace(-11, 3, 50)[None, :, None]
    assert torch.equal(sc.unit_rows(x), F.normalize(x, p=2, dim=-1))
