"""Packed ROIs (``sf-pack-roi``): the dataset reads the same inputs as from the mp4s and wavs,
and refuses a pack that does not belong to its manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sf_fairseq.data.av_hubert_dataset import AVHubertDataset
from sf_fairseq.data.manifest import ManifestItem, write_label_lines, write_manifest
from sf_fairseq.data.packed import PackedError, PackedSplit, packed_paths
from sf_fairseq.preprocess import pack
from sf_fairseq.preprocess.media import RoiWriter

LENGTHS = [31, 44, 27, 50]


@pytest.fixture()
def corpus(tmp_path):
    rng = np.random.default_rng(5)
    items = []
    for k, n in enumerate(LENGTHS):
        with RoiWriter(tmp_path / f"c{k}.mp4", 96, 96) as writer:
            base = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
            for t in range(n):
                writer.write(np.roll(base, 2 * t, axis=0))
        wav = rng.normal(0, 1500, n * 640)
        if k == 1:  # float wavs are packed as float32 samples on the int16 scale
            sf.write(tmp_path / f"c{k}.wav", (wav / 32768).astype(np.float32), 16000,
                     subtype="FLOAT")
        else:
            sf.write(tmp_path / f"c{k}.wav", wav.astype(np.int16), 16000, subtype="PCM_16")
        items.append(ManifestItem(f"c{k}", f"c{k}.mp4", f"c{k}.wav", n, n * 640))
    write_manifest(tmp_path / "train.tsv", str(tmp_path), items)
    write_label_lines(tmp_path / "train.km", [" ".join(["3"] * n) for n in LENGTHS])
    return tmp_path


def _dataset(corpus, packed_dir=None, **kw):
    args = {"sample_rate": 25, "label_paths": [str(corpus / "train.km")], "label_rates": 25,
            "pad_list": [0], "eos_list": [2], "normalize": True, "random_crop": True,
            "stack_order_audio": 4, "image_aug": True, "image_mean": 0.421, "image_std": 0.165,
            "min_keep_sample_size": 28}  # drops c2: packed indices follow the manifest
    args.update(kw)
    return AVHubertDataset(str(corpus / "train.tsv"), packed_dir=packed_dir, **args)


@pytest.mark.parametrize("pad_audio", [False, True])
def test_packed_batches_equal_mp4_batches(corpus, pad_audio):
    stats = pack.pack_split(corpus / "train.tsv", corpus / "packed")
    assert stats.n_items == 4 and stats.n_frames == sum(LENGTHS)
    # 9,216 bytes per grey frame, 1,280 per frame of int16 audio (2,560 for the float32 clip)
    assert stats.n_bytes == sum(LENGTHS) * (9216 + 1280) + LENGTHS[1] * 1280
    plain, packed = _dataset(corpus, pad_audio=pad_audio), _dataset(corpus, corpus / "packed",
                                                                     pad_audio=pad_audio)
    assert len(packed) == len(plain) == 3
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        packed.set_epoch(epoch)
        a = plain.collater([plain[i] for i in range(3)])
        b = packed.collater([packed[i] for i in range(3)])
        for key in ("audio", "video"):
            assert torch.equal(a["net_input"]["source"][key], b["net_input"]["source"][key])
        assert torch.equal(a["net_input"]["padding_mask"], b["net_input"]["padding_mask"])
        assert torch.equal(a["target_list"][0], b["target_list"][0])
    split = PackedSplit(corpus / "packed", "train")
    assert split.audio(1).dtype == np.float32 and split.audio(0).dtype == np.int16
    assert split.video(3).shape == (50, 96, 96)


def test_packed_with_noise_and_audio_only(corpus):
    noise = corpus / "noise.wav"
    sf.write(noise, np.random.default_rng(0).normal(0, 800, 20000).astype(np.int16), 16000)
    (corpus / "noise.tsv").write_text(f"{noise}\n")
    pack.pack_split(corpus / "train.tsv", corpus / "packed")
    kw = {"noise_list": str(corpus / "noise.tsv"), "noise_prob": 1.0, "noise_snr": "0,5",
          "modalities": ["audio"]}
    plain, packed = _dataset(corpus, **kw), _dataset(corpus, corpus / "packed", **kw)
    for i in range(3):
        assert torch.equal(plain[i]["audio"], packed[i]["audio"]) and packed[i]["video"] is None


def test_pack_is_refused_for_another_manifest(corpus):
    pack.pack_split(corpus / "train.tsv", corpus / "packed")
    lines = (corpus / "train.tsv").read_text().splitlines()
    (corpus / "train.tsv").write_text("\n".join(lines[:-1]) + "\n")  # one item fewer
    write_label_lines(corpus / "train.km", [" ".join(["3"] * n) for n in LENGTHS[:-1]])
    with pytest.raises(PackedError, match="another version of .*train.tsv.*sf-pack-roi"):
        _dataset(corpus, corpus / "packed")
    with pytest.raises(PackedError, match="no packed split 'valid'"):
        PackedSplit(corpus / "packed", "valid")


def test_incomplete_pack_is_refused(corpus):
    pack.pack_split(corpus / "train.tsv", corpus / "packed")
    video = packed_paths(corpus / "packed", "train")["video"]
    video.write_bytes(video.read_bytes()[:-9216])
    with pytest.raises(PackedError, match="incomplete pack"):
        _dataset(corpus, corpus / "packed")


def test_cli_pack_and_verify(corpus, caplog):
    out = corpus / "packed"
    assert pack.main(["--data", str(corpus), "--split", "train", "--out", str(out)]) == 0
    index = json.loads(packed_paths(out, "train")["index"].read_text())
    assert [c["id"] for c in index["clips"]] == ["c0", "c1", "c2", "c3"]
    assert index["decoder"].startswith("opencv")
    assert pack.main(["--data", str(corpus), "--split", "train", "--out", str(out),
                      "--verify"]) == 0
    sf.write(corpus / "c2.wav", np.zeros(LENGTHS[2] * 640, np.int16), 16000)
    assert pack.main(["--data", str(corpus), "--split", "train", "--out", str(out),
                      "--verify"]) == 1
    assert "1 clips changed since packing, e.g. c2" in caplog.text


def test_task_option_packed_dir(corpus):
    from sf_fairseq.data.manifest import write_cluster_dictionary
    from sf_fairseq.tasks.av_hubert_pretraining import (
        AVHubertPretrainingConfig,
        AVHubertPretrainingTask,
    )

    write_cluster_dictionary(corpus / "dict.km.txt", 5)
    pack.pack_split(corpus / "train.tsv", corpus / "packed")
    batches = []
    for packed_dir in (None, str(corpus / "packed")):
        cfg = AVHubertPretrainingConfig(data=str(corpus), labels=["km"], label_rate=25,
                                        sample_rate=25, stack_order_audio=4, image_aug=True,
                                        max_sample_size=None, max_trim_sample_size=None,
                                        packed_dir=packed_dir)
        task = AVHubertPretrainingTask(cfg)
        task.load_dataset("train")
        ds = task.datasets["train"]
        assert (ds.packed is None) == (packed_dir is None)
        batches.append(ds.collater([ds[i] for i in range(len(ds))]))
    assert torch.equal(batches[0]["net_input"]["source"]["video"],
                       batches[1]["net_input"]["source"]["video"])


def test_packed_dataset_pickles_without_its_maps(corpus):
    import pickle

    pack.pack_split(corpus / "train.tsv", corpus / "packed")
    ds = _dataset(corpus, corpus / "packed")
    first = ds[0]
    assert ds.packed._maps is not None
    blob = pickle.dumps(ds)  # what a spawned data-loader worker receives
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    assert again.packed._maps is None
    assert torch.equal(again[0]["video"], first["video"])
