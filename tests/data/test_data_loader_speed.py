"""The faster input pipeline produces exactly what the straightforward one did.

Kept here as references: the previous implementations of ROI decoding (OpenCV with its default
threads, frames stacked), the clip transform (every step in order on the full frame), the log
filterbank (framed copy, out-of-place power) and the collater's zero-filled batch. Same bytes
for the same seed, H.264 ROIs written as ``sf-prepare`` writes them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.data.audio_features import LOG_FLOOR, logfbank, mel_filterbank
from sf_fairseq.data.av_hubert_dataset import AVHubertDataset
from sf_fairseq.data.manifest import ManifestItem, write_label_lines, write_manifest
from sf_fairseq.data.video import VideoTransform, load_video_frames
from sf_fairseq.preprocess.media import RoiWriter

LENGTHS = [37, 52, 45]


def reference_load_video(path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cap.release()
    return np.stack(frames)


def reference_transform(transform: VideoTransform, frames: np.ndarray, rng) -> np.ndarray:
    for step in transform.steps:
        frames = step(frames, rng)
    return np.ascontiguousarray(frames, dtype=np.float32)


def reference_logfbank(signal: np.ndarray) -> np.ndarray:
    x = signal.astype(np.float64)
    emphasised = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    n = len(emphasised)
    n_frames = 1 if n <= 400 else 1 + math.ceil((n - 400) / 160)
    padded = np.concatenate([emphasised, np.zeros((n_frames - 1) * 160 + 400 - n)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160].copy()
    power = np.square(np.abs(np.fft.rfft(frames, 512))) / 512
    energies = power @ mel_filterbank().T
    return np.log(np.where(energies == 0, LOG_FLOOR, energies))


def reference_collate_frames(seqs, size, starts) -> torch.Tensor:
    out = seqs[0].new_zeros((len(seqs), size, *seqs[0].shape[1:]))
    for i, (seq, start) in enumerate(zip(seqs, starts)):
        chunk = seq[start:start + size]
        out[i, : len(chunk)] = chunk
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("roi")
    rng = np.random.default_rng(3)
    items = []
    for k, n in enumerate(LENGTHS):
        with RoiWriter(root / f"c{k}.mp4", 96, 96) as writer:
            base = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            for t in range(n):
                writer.write(np.roll(base, t, axis=1))
        wav = rng.normal(0, 2000, n * 640).astype(np.int16)
        wav[:800] = 0  # silent start: energies of exactly zero take the log floor
        sf.write(root / f"c{k}.wav", wav, 16000, subtype="PCM_16")
        items.append(ManifestItem(f"c{k}", f"c{k}.mp4", f"c{k}.wav", n, n * 640))
    write_manifest(root / "train.tsv", str(root), items)
    write_label_lines(root / "train.km", [" ".join(["1"] * n) for n in LENGTHS])
    return root


def test_decode_equals_reference(corpus):
    for k, n in enumerate(LENGTHS):
        frames = load_video_frames(corpus / f"c{k}.mp4")
        assert frames.shape == (n, 96, 96) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames, reference_load_video(corpus / f"c{k}.mp4"))


@pytest.mark.parametrize("kind", ["train", "eval"])
def test_transform_equals_reference(corpus, kind):
    frames = load_video_frames(corpus / "c0.mp4")
    transform = VideoTransform.train(88) if kind == "train" else VideoTransform.eval(88)
    for seed in range(8):  # crop offsets and both flip outcomes
        fast = transform(frames, np.random.default_rng(seed))
        slow = reference_transform(transform, frames, np.random.default_rng(seed))
        assert fast.dtype == np.float32 and fast.flags.c_contiguous
        assert fast.tobytes() == slow.tobytes()
    # float input takes the step-by-step path
    as_float = frames.astype(np.float32)
    np.testing.assert_array_equal(transform(as_float, np.random.default_rng(0)),
                                  reference_transform(transform, as_float, np.random.default_rng(0)))


def test_logfbank_equals_reference(corpus):
    for k in range(len(LENGTHS)):
        wav, _ = sf.read(corpus / f"c{k}.wav", dtype="int16")
        assert logfbank(wav).tobytes() == reference_logfbank(wav).tobytes()
    short = np.arange(300, dtype=np.int16)  # shorter than one window
    assert logfbank(short).tobytes() == reference_logfbank(short).tobytes()


@pytest.mark.parametrize("pad_audio", [False, True])
def test_batches_equal_reference(corpus, pad_audio):
    ds = AVHubertDataset(
        str(corpus / "train.tsv"), sample_rate=25, label_paths=[str(corpus / "train.km")],
        label_rates=25, pad_list=[0], eos_list=[2], pad_audio=pad_audio, normalize=True,
        random_crop=True, stack_order_audio=4, image_aug=True, image_mean=0.421, image_std=0.165,
    )
    ds.set_epoch(3)
    samples = [ds[i] for i in range(len(ds))]
    for i, sample in enumerate(samples):
        rng = ds._item_rng(i)
        video = reference_transform(ds.video_transform,
                                    reference_load_video(corpus / f"c{i}.mp4"), rng)
        assert sample["video"][..., 0].numpy().tobytes() == video.tobytes()
    batch = ds.collater(samples)
    lengths = [len(s["video"]) for s in samples]
    size = max(lengths) if pad_audio else min(lengths)
    starts = ds._crop_starts(lengths, size, ds._batch_rng([s["id"] for s in samples]))
    video = reference_collate_frames([s["video"] for s in samples], size, starts)
    audio = reference_collate_frames([s["audio"] for s in samples], size, starts)
    assert torch.equal(batch["net_input"]["source"]["video"], video.permute(0, 4, 1, 2, 3))
    assert torch.equal(batch["net_input"]["source"]["audio"], audio.transpose(1, 2))
