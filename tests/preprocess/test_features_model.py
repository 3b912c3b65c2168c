"""Model features (layer L of the fixture checkpoint, D=64) and a model-feature iteration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from sf_fairseq.data.manifest import ManifestItem, read_label_lines, read_manifest, write_manifest
from sf_fairseq.preprocess import iteration
from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.preprocess.features_model import ModelFeatureReader, align_audio_to_video

# (video frames, audio samples): audio shorter (padded), longer (trimmed), exact.
CLIPS = [(12, 12 * 640 - 1500), (18, 18 * 640 + 3000), (15, 15 * 640)]


def _write_video(path: Path, frames: np.ndarray) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (96, 96), isColor=True)
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


@pytest.fixture(scope="module")
def av_manifest_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("av")
    rng = np.random.default_rng(0)
    items = []
    for i, (n_frames, n_samples) in enumerate(CLIPS):
        # A smooth moving blob compresses well, so decoding gives back nearly these frames.
        yy, xx = np.mgrid[:96, :96]
        frames = np.stack([
            (120 + 100 * np.exp(-((xx - 30 - t) ** 2 + (yy - 48) ** 2) / 200)).astype(np.uint8)
            for t in range(n_frames)
        ])
        _write_video(root / f"clip{i}.mp4", frames)
        wav = (3000 * np.sin(np.arange(n_samples) * (0.03 + 0.01 * i))
               + 300 * rng.normal(size=n_samples)).astype(np.int16)
        sf.write(root / f"clip{i}.wav", wav, 16000, subtype="PCM_16")
        items.append(ManifestItem(f"clip{i}", f"clip{i}.mp4", f"clip{i}.wav", n_frames, n_samples))
    write_manifest(root / "train.tsv", str(root), items)
    return root


@pytest.fixture(scope="module")
def checkpoint(shared_dir) -> Path:
    return shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"


def _reference_features(reader: ModelFeatureReader, root: Path, i: int, layer: int) -> np.ndarray:
    """One clip through the recipe of the reference's dump_hubert_feature.py, built by hand."""
    from python_speech_features import logfbank

    cap = cv2.VideoCapture(str(root / f"clip{i}.mp4"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    video = (np.stack(frames).astype(np.float32) / 255.0)[:, 4:92, 4:92]
    video = (video - 0.421) / 0.165
    wav, _ = sf.read(root / f"clip{i}.wav", dtype="int16")
    fbank = logfbank(wav, samplerate=16000).astype(np.float32)
    fbank = np.concatenate([fbank, np.zeros(((-len(fbank)) % 4, 26), np.float32)]).reshape(-1, 104)
    diff = len(fbank) - len(video)
    fbank = np.concatenate([fbank, np.zeros((-diff, 104), np.float32)]) if diff < 0 else fbank[: len(video)]
    audio = F.layer_norm(torch.from_numpy(fbank), (104,))
    with torch.no_grad():
        feats, _ = reader.model.extract_features(
            source={"audio": audio.T[None], "video": torch.from_numpy(video)[None, None]},
            padding_mask=None, mask=False, ret_conv=layer == 0,
            output_layer=None if layer == 0 else layer,
        )
    return feats[0].numpy()


def test_align_audio_to_video() -> None:
    audio = np.arange(12, dtype=np.float32).reshape(6, 2) + 1
    assert align_audio_to_video(audio, 4).tolist() == audio[:4].tolist()
    padded = align_audio_to_video(audio, 8)
    assert padded.shape == (8, 2) and (padded[6:] == 0).all() and (padded[:6] == audio).all()


@pytest.mark.parametrize("layer", [1, 0])
def test_model_features_match_reference_recipe(av_manifest_dir, checkpoint, layer: int, two_torch_threads) -> None:
    manifest = read_manifest(av_manifest_dir / "train.tsv")
    batched = ModelFeatureReader(checkpoint, layer, max_batch_frames=1000, workers=2)
    feats = list(batched.iter_features(manifest, manifest.items))
    assert [f.shape for f in feats] == [(n, 64) for n, _ in CLIPS]  # 25 Hz: one row per video frame
    for i, got in enumerate(feats):
        np.testing.assert_allclose(got, _reference_features(batched, av_manifest_dir, i, layer),
                                   rtol=1e-4, atol=1e-4)
    if layer == 1:  # clips one at a time (no padding) give the same features as batched
        single = ModelFeatureReader(checkpoint, layer, max_batch_frames=1, workers=0)
        for got, want in zip(single.iter_features(manifest, manifest.items), feats):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_length_batches_under_a_frame_budget_only() -> None:
    """The shared batcher as the clustering features use it (frame budget, no count or padding cap)."""

    def batches(lengths: list[int], max_frames: int) -> list[list[int]]:
        return length_batches(lengths, BatchLimits(batch_size=max(len(lengths), 1), max_frames=max_frames,
                                                   max_padding=None))

    # Shortest first, ties in input order; batch size x longest clip within the budget.
    assert batches([60, 6, 6, 6], 60) == [[1, 2, 3], [0]]
    assert batches([40, 10, 40, 10], 80) == [[1, 3], [0, 2]]
    assert batches([100, 5], 50) == [[1], [0]]  # a clip over the budget goes alone
    assert batches([], 10) == []


def test_batches_group_similar_lengths_in_input_order(av_manifest_dir, checkpoint, two_torch_threads) -> None:
    """Long and short clips alternate: batched in list order, each short clip would be padded to
    the long one. Grouped by length, nothing is padded and features match one clip at a time."""
    manifest = read_manifest(av_manifest_dir / "train.tsv")
    short, long_ = manifest.items[0], manifest.items[1]  # 12 and 18 frames
    items = [short, long_, replace(short, id="short2"), replace(long_, id="long2")]
    reader = ModelFeatureReader(checkpoint, 1, max_batch_frames=36, workers=0)
    batch_lengths: list[list[int]] = []
    features = reader.features

    def spy(batch):
        batch_lengths.append([len(video) for video, _ in batch])
        return features(batch)

    reader.features = spy
    feats = list(reader.iter_features(manifest, items))
    assert sorted(batch_lengths) == [[12, 12], [18, 18]]
    assert [len(f) for f in feats] == [12, 18, 12, 18]  # input order
    single = ModelFeatureReader(checkpoint, 1, max_batch_frames=1, workers=0)
    for got, want in zip(feats, single.iter_features(manifest, items)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_float_wav_gives_the_features_of_its_int16_copy(av_manifest_dir, checkpoint, tmp_path) -> None:
    manifest = read_manifest(av_manifest_dir / "train.tsv")
    item = manifest.items[0]
    samples, _ = sf.read(manifest.resolve(item.audio), dtype="int16")
    sf.write(tmp_path / "float.wav", samples / 32768.0, 16000, subtype="FLOAT")
    reader = ModelFeatureReader(checkpoint, 1, workers=0)
    _, want = reader.load_inputs(manifest, item)
    _, got = reader.load_inputs(manifest, replace(item, audio=str(tmp_path / "float.wav")))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_fine_tuned_checkpoint_encoder(av_manifest_dir, shared_dir) -> None:
    # A published fine-tuned (seq2seq) file: its AV-HuBERT encoder gives the features.
    reader = ModelFeatureReader(shared_dir / "fixtures" / "avhubert_tiny_vsr" / "checkpoint.pt", 2)
    manifest = read_manifest(av_manifest_dir / "train.tsv")
    (feats,) = reader.iter_features(manifest, manifest.items[:1])
    assert feats.shape == (CLIPS[0][0], 64) and np.isfinite(feats).all()
    np.testing.assert_allclose(feats, _reference_features(reader, av_manifest_dir, 0, 2), rtol=1e-4, atol=1e-4)


def test_layer_out_of_range(checkpoint) -> None:
    with pytest.raises(ValueError, match=r"layer must be in \[0, 2\]"):
        ModelFeatureReader(checkpoint, 3)


def test_missing_video_names_the_file(av_manifest_dir, checkpoint) -> None:
    manifest = read_manifest(av_manifest_dir / "train.tsv")
    item = ManifestItem("gone", "gone.mp4", "clip0.wav", 12, 12 * 640)
    with pytest.raises(OSError, match="gone.mp4"):
        ModelFeatureReader(checkpoint, 1).load_inputs(manifest, item)


@pytest.mark.slow
def test_model_feature_iteration(tmp_path, av_manifest_dir, checkpoint) -> None:
    out = tmp_path / "it2"
    code = iteration.main([
        str(av_manifest_dir), "--out-dir", str(out), "--feature", "model",
        "--checkpoint", str(checkpoint), "--layer", "2", "--n-clusters", "5", "--percent", "-1",
        "--kmeans-n-init", "2", "--nshard", "2",
    ])
    assert code == 0
    lines = read_label_lines(out / "train.km")
    assert [len(line.split()) for line in lines] == [n for n, _ in CLIPS]  # 25 Hz labels
    assert {int(k) for line in lines for k in line.split()} <= set(range(5))
    assert [line.split()[0] for line in (out / "dict.km.txt").read_text().splitlines()] == list("01234")
    info = json.loads((out / "km.iteration.json").read_text())
    assert info["label_rate"] == 25 and info["layer"] == 2 and info["feature"] == "model"
    assert info["splits"]["train"]["duration_mismatches"] == 0
