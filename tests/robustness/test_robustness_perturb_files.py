"""File-level perturbation: frame count, fps, audio length and sync kept; the level applied;
seeded; ROI clips; a copy that fails its check is not kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robustness_media import box_x, decode_frames, write_raw_video
from sf_fairseq.eval import perturb_engine as pt
from sf_fairseq.eval.perturb_video import VIDEO_PERTURBATIONS, bgr_to_ycbcr

FAST = pt.PerturbOptions(preset="ultrafast", threads=1)


def box_positions(frames: np.ndarray) -> list[int]:
    """Left edge of the brightest column run in the box's rows, per frame."""
    h = frames.shape[1]
    rows = frames[:, h // 3 + 2 : h // 3 + h // 4 - 2].astype(float).mean(axis=(1, 3))  # [T, W]
    return [int(np.argmax(np.diff(r))) + 1 for r in rows]


@pytest.mark.parametrize("code", list(pt.TYPES))
def test_every_type_keeps_frames_fps_audio_and_sync(tmp_path, code):
    src = write_raw_video(tmp_path / "src.mp4", audio_start=0.1)
    dst = tmp_path / "out" / "clip.mp4"
    pt.perturb_video_file(src, dst, code, 4, "clip", FAST)
    before, after = pt.probe(src), pt.probe(dst)
    assert after.n_frames == before.n_frames == 20
    assert after.fps == pytest.approx(30.0)
    assert (after.audio_rate, after.audio_samples) == (before.audio_rate, before.audio_samples)
    assert after.audio_start - after.video_start == pytest.approx(before.audio_start - before.video_start, abs=1e-3)
    if pt.TYPES[code] == "video" and code not in ("gb", "jpeg"):  # the box stays sharp enough to follow
        assert box_positions(decode_frames(dst)) == box_positions(decode_frames(src))


def test_the_box_moves_as_generated(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4")
    assert box_positions(decode_frames(src)) == [box_x(i, 128) for i in range(20)]


def test_video_level_applied_and_audio_packets_copied(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4")
    src_frames = decode_frames(src)
    src_audio = pt.decode_audio(src)[0]
    dst = tmp_path / "cs5.mp4"
    pt.perturb_video_file(src, dst, "cs", 5, "clip", FAST)
    out = decode_frames(dst)
    chroma = np.abs(bgr_to_ycbcr(out)[..., 1:] - 128 / 255).mean()
    assert chroma < 0.01 < np.abs(bgr_to_ycbcr(src_frames)[..., 1:] - 128 / 255).mean()
    assert np.array_equal(pt.decode_audio(dst)[0], src_audio)
    dst = tmp_path / "cc3.mp4"
    pt.perturb_video_file(src, dst, "cc", 3, "clip", FAST)
    ratio = decode_frames(dst).astype(float).mean(axis=(1, 2, 3)) / src_frames.astype(float).mean(axis=(1, 2, 3))
    # Truncation and 4:2:0 storage cost under 0.01 (an unbiased colour conversion; FFmpeg's default
    # one would darken every frame by ~2 grey levels).
    np.testing.assert_allclose(ratio, VIDEO_PERTURBATIONS["cc"].param(3), atol=0.01)


def test_compression_crf_lowers_size_and_psnr(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4", width=160, height=128)
    src_frames = decode_frames(src).astype(float)
    sizes, psnrs = [], []
    for level in (1, 3, 5):
        dst = tmp_path / f"vc{level}.mp4"
        pt.perturb_video_file(src, dst, "vc", level, "clip", FAST)
        sizes.append(dst.stat().st_size)
        mse = np.mean((decode_frames(dst).astype(float) - src_frames) ** 2)
        psnrs.append(10 * np.log10(255**2 / mse))
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 1.3 * sizes[-1]
    assert psnrs == sorted(psnrs, reverse=True)


def test_same_seed_same_output(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4")

    def run(name: str, seed: int, key: str = "clip") -> np.ndarray:
        options = dataclasses.replace(FAST, seed=seed)
        pt.perturb_video_file(src, tmp_path / name, "gnc", 3, key, options)
        return decode_frames(tmp_path / name)

    a, b, c, d = run("a.mp4", 0), run("b.mp4", 0), run("c.mp4", 1), run("d.mp4", 0, "other")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)
    for name in ("n1.mp4", "n2.mp4"):
        pt.perturb_video_file(src, tmp_path / name, "noise", 3, "clip", FAST)
    assert np.array_equal(pt.decode_audio(tmp_path / "n1.mp4")[0], pt.decode_audio(tmp_path / "n2.mp4")[0])


def test_audio_perturbation_keeps_video_and_hits_snr(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4", sample_rate=48000, channels=1)
    dst = tmp_path / "noise.mp4"
    pt.perturb_video_file(src, dst, "noise", 3, "clip", FAST)
    assert np.array_equal(decode_frames(dst), decode_frames(src))  # video packets untouched
    clean, rate, _ = pt.decode_audio(src)
    noisy, out_rate, _ = pt.decode_audio(dst)
    assert out_rate == rate == 48000 and noisy.shape == clean.shape
    snr = 10 * np.log10(np.mean(clean.astype(float) ** 2) / np.mean((noisy.astype(float) - clean) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)  # stored losslessly: the SNR is exact


def test_roi_clip_video_and_audio_types(tmp_path):
    src = write_raw_video(tmp_path / "roi.mp4", width=96, height=96, fps=25, n_frames=25)
    wav = tmp_path / "roi.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (5000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16), 16000, subtype="PCM_16")
    out_v, out_w = tmp_path / "o" / "roi.mp4", tmp_path / "o" / "roi.wav"
    pt.perturb_roi_clip(src, wav, out_v, out_w, "gb", 5, "roi", FAST)
    assert out_w.read_bytes() == wav.read_bytes()
    assert pt.probe(out_v).n_frames == 25
    assert np.abs(np.diff(decode_frames(out_v).astype(float), axis=2)).mean() < \
        np.abs(np.diff(decode_frames(src).astype(float), axis=2)).mean() / 2
    pt.perturb_roi_clip(src, wav, out_v, out_w, "resample", 5, "roi", FAST)
    assert out_v.read_bytes() == src.read_bytes()
    signal, rate = sf.read(out_w, dtype="int16")
    assert rate == 16000 and signal.shape == (16000,) and not np.array_equal(signal, sf.read(wav, dtype="int16")[0])


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_24"])
def test_roi_audio_perturbation_reads_float_and_24_bit_wavs_at_their_level(tmp_path, subtype):
    src = write_raw_video(tmp_path / "roi.mp4", width=96, height=96, fps=25, n_frames=25)
    t = np.arange(16000) / 16000
    tone = 0.15 * np.sin(2 * np.pi * 300 * t)
    wav = tmp_path / "roi.wav"
    sf.write(wav, tone, 16000, subtype=subtype)
    out_v, out_w = tmp_path / "o" / "roi.mp4", tmp_path / "o" / "roi.wav"
    pt.perturb_roi_clip(src, wav, out_v, out_w, "noise", 1, "roi", FAST)
    noisy, _ = sf.read(out_w, dtype="float64")
    snr = 10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)  # level 1 on the real signal (read as {-1, 0, 1}: ~0 dB)


def test_check_timing_refuses_changed_copies(tmp_path, monkeypatch):
    good = pt.MediaTiming(20, 30.0, 0.0, 44100, 29400, 0.1)
    pt.check_timing(good, good, "x")
    for change, message in [
        (dict(n_frames=19), "19 video frames"),
        (dict(fps=25.0), "fps"),
        (dict(audio_samples=29000), "audio 29000 samples"),
        (dict(audio_start=0.15), "audio starts"),
    ]:
        with pytest.raises(pt.PerturbCheckError, match=message):
            pt.check_timing(good, dataclasses.replace(good, **change), "x")
    # A copy failing its check is not kept.
    src = write_raw_video(tmp_path / "src.mp4")
    real_probe = pt.probe
    monkeypatch.setattr(pt, "probe", lambda p: real_probe(p) if Path(p) == src else
                        dataclasses.replace(real_probe(p), n_frames=3))
    dst = tmp_path / "bad.mp4"
    with pytest.raises(pt.PerturbCheckError, match="3 video frames"):
        pt.perturb_video_file(src, dst, "cc", 1, "clip", FAST)
    assert list(tmp_path.iterdir()) == [src]


def test_odd_frame_size_and_unknown_type(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4", width=97, height=75)  # yuv420p needs even sides
    dst = tmp_path / "odd.mp4"
    pt.perturb_video_file(src, dst, "cc", 1, "clip", FAST)
    assert decode_frames(dst).shape == (20, 75, 97, 3)
    with pytest.raises(ValueError, match="unknown perturbation type"):
        pt.perturb_video_file(src, dst, "xx", 1, "clip", FAST)
