from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.data.audio_features import audio_features_from_wav
from sf_fairseq.data.video import VideoReadError
from sf_fairseq.eval import encode


def test_load_clip_matches_the_reference_transforms(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "a b" / "clip.mp4", n_frames=30, seconds=1.5)
    clip = encode.load_clip(str(video), str(wav))
    assert clip.video.shape == (30, 88, 88) and clip.video.dtype == np.float32
    samples, _ = sf.read(wav, dtype="int16")
    np.testing.assert_allclose(clip.audio, audio_features_from_wav(samples, 4, True))
    assert clip.audio.shape == (38, 104)  # 1.5 s: 148 logfbank frames / 4, rounded up
    # Centre crop then (x/255 - mean) / std, as SpeechForensics' visual pass.
    import cv2

    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[4:92, 4:92] / 255.0
    np.testing.assert_allclose(clip.video[0], (gray - 0.421) / 0.165, atol=1e-5)


def test_load_clip_caps_each_stream(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "c.mp4", n_frames=60, seconds=3.0)
    clip = encode.load_clip(str(video), str(wav), max_seconds=1.0)
    assert clip.video.shape[0] == 25
    assert clip.audio.shape[0] == 25  # 98 logfbank frames -> 25 stacked


def test_load_clip_errors_name_the_file(tmp_path: Path, roi_clip) -> None:
    video, wav = roi_clip(tmp_path / "c.mp4", n_frames=10)
    with pytest.raises(VideoReadError, match="missing.mp4"):
        encode.load_clip(str(tmp_path / "missing.mp4"), str(wav))
    with pytest.raises(OSError, match="nowav.wav"):
        encode.load_clip(str(video), str(tmp_path / "nowav.wav"))
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.zeros((16000, 2), dtype=np.int16), 16000)
    with pytest.raises(ValueError, match="stereo.wav"):
        encode.load_clip(str(video), str(stereo))


def test_settings_from_task_config() -> None:
    s = encode.InputSettings.from_task_config(
        {"image_crop_size": 64, "image_mean": 0.5, "image_std": 0.2, "stack_order_audio": 2, "x": 1}
    )
    assert s == encode.InputSettings(crop_size=64, mean=0.5, std=0.2, stack_order=2, normalize=True)


def test_batched_encoding_equals_one_clip_at_a_time(stand_in) -> None:
    rng = np.random.default_rng(0)
    clips = [
        encode.ClipInputs(rng.normal(size=(t, 88, 88)).astype(np.float32), rng.normal(size=(u, 104)).astype(np.float32))
        for t, u in [(12, 15), (30, 28), (5, 9)]
    ]
    enc = encode.StreamEncoder(stand_in, output_layer=2)
    v, vlen, a, alen = enc.encode(clips)
    assert v.shape == (3, 30, 16) and a.shape == (3, 28, 16)
    assert vlen.tolist() == [12, 30, 5] and alen.tolist() == [15, 28, 9]
    video_call, audio_call = stand_in.calls
    assert video_call["stream"] == "video" and audio_call["stream"] == "audio"
    assert video_call["layer"] == 2
    assert video_call["mask"].tolist()[2] == [False] * 5 + [True] * 25
    alone = encode.StreamEncoder(stand_in, output_layer=2, cache_bytes=0)  # encodes every call anew
    for row, clip in enumerate(clips):
        v1, _, a1, _ = alone.encode([clip])
        torch.testing.assert_close(v[row, : vlen[row]], v1[0])
        torch.testing.assert_close(a[row, : alen[row]], a1[0])


def test_precision_autocast(stand_in) -> None:
    clip = encode.ClipInputs(np.zeros((4, 88, 88), np.float32), np.zeros((4, 104), np.float32))
    v, _, _, _ = encode.StreamEncoder(stand_in, precision="bf16").encode([clip])
    assert stand_in.calls[0]["dtype"] == torch.bfloat16
    assert v.dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        encode.StreamEncoder(stand_in, precision="int8")


@pytest.mark.slow
def test_fixture_checkpoint_scores_do_not_depend_on_the_batch(shared_dir) -> None:
    from sf_fairseq.eval.pipeline import load_scorer

    scorer = load_scorer(shared_dir / "fixtures/avhubert_tiny/checkpoint.pt")
    rng = np.random.default_rng(0)
    clips = [
        encode.ClipInputs(rng.normal(size=(t, 88, 88)).astype(np.float32), rng.normal(size=(u, 104)).astype(np.float32))
        for t, u in [(40, 42), (25, 25), (33, 30)]
    ]
    batched = scorer.score_clips(clips)
    for clip, result in zip(clips, batched):
        alone = scorer.score_clips([clip])[0]
        assert result.score == pytest.approx(alone.score, abs=1e-5)
        assert result.curve == pytest.approx(alone.curve, abs=1e-5)
    assert [r.n_frames for r in batched] == [42, 25, 30]


def test_bf16_weights_are_stored_once_and_match_autocast(restore_torch_rng) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Conv1d(8, 4, 3))
    x = torch.randn(2, 8, 8)

    def run(m: torch.nn.Module) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = m[1](m[0](x.transpose(1, 2)))
            return m[2](h.transpose(1, 2)).float()

    expected = run(model)
    encode.store_matmul_weights_in(model, torch.bfloat16)
    assert model[0].weight.dtype == model[2].weight.dtype == torch.bfloat16
    assert model[1].weight.dtype == torch.float32  # normalisation stays float32
    torch.testing.assert_close(run(model), expected, rtol=0, atol=0)


@pytest.mark.slow
def test_fixture_checkpoint_bf16_scores_match_float32(shared_dir) -> None:
    from sf_fairseq.eval.pipeline import load_scorer

    checkpoint = shared_dir / "fixtures/avhubert_tiny/checkpoint.pt"
    rng = np.random.default_rng(1)
    clips = [
        encode.ClipInputs(rng.normal(size=(t, 88, 88)).astype(np.float32), rng.normal(size=(u, 104)).astype(np.float32))
        for t, u in [(50, 50), (30, 32)]
    ]
    fp32 = load_scorer(checkpoint).score_clips(clips)
    bf16_scorer = load_scorer(checkpoint, precision="bf16")
    linear = next(m for m in bf16_scorer.encoder.model.modules() if isinstance(m, torch.nn.Linear))
    assert linear.weight.dtype == torch.bfloat16
    bf16 = bf16_scorer.score_clips(clips)
    for a, b in zip(fp32, bf16):
        assert abs(a.score - b.score) <= 0.005
