"""One clip-input contract: training, scoring, transcription and clustering see the same tensors.

Each clip goes through the dataset (no augmentation, no noise), ``encode.load_clip`` +
``pad_batch`` (the scorer), the transcriber's batch and the clustering feature reader's batch;
all must give identical model inputs.

The one documented difference: the scorer and the transcriber encode each stream at its own
length (capped at ``max_seconds``), while the dataset and the clustering reader pad or trim the
audio to the video's frame count. For clips whose wav has exactly the video's duration (what
``sf-prepare`` writes) the two agree; otherwise they agree on the common frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.data import clip_inputs as contract
from sf_fairseq.data.av_hubert_dataset import AVHubertDataset
from sf_fairseq.data.manifest import ManifestItem, read_manifest, write_manifest
from sf_fairseq.eval import encode
from sf_fairseq.eval.transcriber import DecodeSettings, Transcriber
from sf_fairseq.preprocess.features_model import ModelFeatureReader
from sf_test_media import write_clip, write_corpus

ENCODER = "fixtures/avhubert_tiny/checkpoint.pt"
VSR = "fixtures/avhubert_tiny_vsr/checkpoint.pt"


class _Capture(torch.nn.Module):
    """Stands in for the clustering reader's model: records the batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def extract_features(self, source, padding_mask, **kwargs):
        self.calls.append({"source": source, "padding_mask": padding_mask})
        video = source["video"]
        return torch.zeros(video.shape[0], video.shape[2], 4), None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("contract")
    write_corpus(root, {"valid": 3}, frames=(20, 40), seed=3)
    return root


@pytest.fixture(scope="module")
def reader(shared_dir: Path) -> ModelFeatureReader:
    reader = ModelFeatureReader(shared_dir / ENCODER, layer=1, workers=0)
    reader.model = _Capture()
    return reader


def _dataset(manifest: Path, labels: Path, settings: contract.InputSettings) -> AVHubertDataset:
    return AVHubertDataset(
        str(manifest), contract.FPS, [str(labels)], contract.FPS, [1], [2], shuffle=False,
        pad_audio=True, normalize=settings.normalize, stack_order_audio=settings.stack_order,
        image_mean=settings.mean, image_std=settings.std, image_crop_size=settings.crop_size,
        image_aug=False,
    )


def test_constants() -> None:
    assert (contract.SAMPLE_RATE, contract.FPS, contract.SAMPLES_PER_FRAME) == (16000, 25, 640)
    assert contract.STACK_ORDER == contract.InputSettings().stack_order == 4
    assert encode.InputSettings is contract.InputSettings  # still importable from encode
    assert (encode.SAMPLE_RATE, encode.FPS) == (contract.SAMPLE_RATE, contract.FPS)


def test_settings_from_task_config() -> None:
    cfg = {"image_crop_size": 64, "image_mean": 0.5, "image_std": 0.25, "stack_order_audio": 2,
           "normalize": False}
    assert contract.InputSettings.from_task_config(cfg) == contract.InputSettings(64, 0.5, 0.25, 2, False)
    assert contract.InputSettings.from_task_config({}) == contract.InputSettings()


def test_one_clip_gives_identical_inputs_on_every_path(corpus: Path, reader: ModelFeatureReader,
                                                        shared_dir: Path) -> None:
    settings = reader.settings
    manifest = read_manifest(corpus / "valid.tsv")
    paths = [(manifest.resolve(it.video), manifest.resolve(it.audio)) for it in manifest.items]

    # Training/validation: the dataset's padded batch.
    ds = _dataset(corpus / "valid.tsv", corpus / "valid.km", settings)
    batch = ds.collater([ds[i] for i in range(len(ds))])
    want_video = batch["net_input"]["source"]["video"]  # [B, 1, T, H, W]
    want_audio = batch["net_input"]["source"]["audio"]  # [B, F, T]
    want_mask = batch["net_input"]["padding_mask"]
    assert want_mask.any()  # clips of different lengths: padding is compared too

    # Scoring: load_clip + pad_batch, as StreamEncoder batches them.
    clips = [encode.load_clip(v, a, settings) for v, a in paths]
    videos, vlen = encode.pad_batch([c.video for c in clips])
    audios, alen = encode.pad_batch([c.audio for c in clips])
    assert torch.equal(vlen, alen)
    assert torch.equal(videos.unsqueeze(1), want_video)
    assert torch.equal(audios.transpose(1, 2), want_audio)
    assert torch.equal(encode.padding_mask(vlen, int(vlen.max())), want_mask)

    # Clustering features: the reader's inputs and the batch its model is given.
    inputs = [reader.load_inputs(manifest, item) for item in manifest.items]
    for i, (video, audio) in enumerate(inputs):
        sample = ds[i]
        assert np.array_equal(video, sample["video"][..., 0].numpy())
        assert np.array_equal(audio, sample["audio"].numpy())
    reader.model.calls.clear()
    reader.features(inputs)
    (call,) = reader.model.calls
    assert torch.equal(call["source"]["video"], want_video)
    assert torch.equal(call["source"]["audio"], want_audio)
    assert torch.equal(call["padding_mask"], want_mask)

    # Transcription: the batch the transcriber hands to its decoder, stream by stream.
    transcriber = Transcriber.from_checkpoint(shared_dir / VSR, DecodeSettings(beam=1))
    assert transcriber.settings == settings
    seen: list[tuple[dict, torch.Tensor]] = []
    transcriber.decode = lambda source, mask: seen.append((source, mask)) or [""] * len(clips)
    transcriber.transcribe(clips, "video")
    transcriber.transcribe(clips, "audio")
    (lips, lips_mask), (speech, speech_mask) = seen
    assert lips["audio"] is None and speech["video"] is None
    assert torch.equal(lips["video"], want_video) and torch.equal(lips_mask, want_mask)
    assert torch.equal(speech["audio"], want_audio) and torch.equal(speech_mask, want_mask)


def test_scoring_keeps_each_stream_at_its_own_length(tmp_path: Path, reader: ModelFeatureReader) -> None:
    """The documented difference: a wav shorter or longer than its video is padded/trimmed to
    the video by the dataset and the clustering reader, kept as it is by the scorer."""
    rng = np.random.default_rng(0)
    items = []
    for name, n_frames, extra in (("short", 30, -3 * 640), ("long", 30, 4 * 640)):
        write_clip(tmp_path / f"{name}.mp4", tmp_path / f"{name}.wav", n_frames, rng)
        wav, _ = sf.read(tmp_path / f"{name}.wav", dtype="int16")
        wav = np.concatenate([wav, rng.integers(-900, 900, max(extra, 0), dtype=np.int16)])
        wav = wav[: n_frames * contract.SAMPLES_PER_FRAME + extra]
        sf.write(tmp_path / f"{name}.wav", wav, contract.SAMPLE_RATE, subtype="PCM_16")
        items.append(ManifestItem(name, f"{name}.mp4", f"{name}.wav", n_frames, len(wav)))
    (tmp_path / "valid.km").write_text("".join(" ".join(["0"] * 30) + "\n" for _ in items))
    write_manifest(tmp_path / "valid.tsv", str(tmp_path), items)
    manifest = read_manifest(tmp_path / "valid.tsv")
    ds = _dataset(tmp_path / "valid.tsv", tmp_path / "valid.km", reader.settings)

    for i, (item, n_audio) in enumerate(zip(manifest.items, (27, 34))):
        clip = encode.load_clip(manifest.resolve(item.video), manifest.resolve(item.audio), reader.settings)
        video, audio = reader.load_inputs(manifest, item)
        trained = ds[i]["audio"].numpy()
        assert clip.video.shape[0] == len(video) == len(trained) == 30
        assert clip.audio.shape[0] == n_audio  # the scorer: the wav's own length
        assert np.array_equal(audio, trained)  # clustering = training
        common = min(n_audio, 30)
        assert np.array_equal(clip.audio[:common], trained[:common])
        assert not trained[common:].any()  # padded frames are zero after the norm
