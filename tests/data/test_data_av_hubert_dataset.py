"""AVHubertDataset on a tiny manifest written by the test (mp4 + wav + label files).

Video frame ``t`` has brightness ``10 + 5 t`` and 25 Hz labels are ``t`` (100 Hz: ``4 t + j``), so
a cropped batch shows its crop start in the labels and it can be checked against video and
audio sliced from the full features.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from fairseq.data import Dictionary

from sf_fairseq.data.audio_features import audio_features_from_wav, normalize_per_frame
from sf_fairseq.data.av_hubert_dataset import AVHubertDataset, ItemLoadError
from sf_fairseq.data.manifest import ManifestItem, write_label_lines, write_manifest
from sf_fairseq.data.video import VideoTransform, load_video_frames

PAD = 999
MEAN, STD = 0.421, 0.165

# id: (video frames, wav frames (x640 samples), 25 Hz label count)
ITEMS = {
    "a": (30, 30, 30),
    "b": (40, 40, 40),
    "c": (50, 50, 50),
    "short": (12, 12, 12),       # < min_keep 15
    "long": (60, 60, 60),        # > max_keep 55
    "unaligned": (35, 35, 38),   # labels 0.12 s longer than the video
    "near": (33, 31, 35),        # labels 0.08 s longer (kept); wav 2 frames short (padded)
}
KEPT = ["a", "b", "c", "near"]


def _write_video(path, n_frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (96, 96))
    rng = np.random.default_rng(n_frames)
    texture = rng.integers(0, 40, (96, 96), dtype=np.uint8)
    for t in range(n_frames):
        gray = np.clip(10 + 5 * t + texture.astype(int) - 20, 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    writer.release()


def _write_wav(path, n_frames, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    n = n_frames * rate // 25
    t = np.arange(n) / rate
    amp = 500 + 400 * np.arange(n) / rate * 25  # louder with time
    wav = amp * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 100, n)
    sf.write(path, wav.astype(np.int16), rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    (root / "video").mkdir()
    (root / "audio").mkdir()
    items, lab25, lab100, wrd = [], [], [], []
    for k, (name, (nv, na, nl)) in enumerate(ITEMS.items()):
        _write_video(root / "video" / f"{name}.mp4", nv)
        _write_wav(root / "audio" / f"{name}.wav", na, seed=k)
        items.append(ManifestItem(name, f"video/{name}.mp4", str(root / "audio" / f"{name}.wav"),
                                  nv, na * 640))
        lab25.append(" ".join(str(t) for t in range(nl)))
        lab100.append(" ".join(str(t) for t in range(4 * nl)))
        wrd.append(" ".join(["hello", "world"][: 1 + k % 2] + ["again"] * (k % 3)))
    write_manifest(root / "train.tsv", str(root), items)
    write_label_lines(root / "train.km", lab25)
    write_label_lines(root / "train.mfcc", lab100)
    write_label_lines(root / "train.wrd", wrd)
    return root


def _dataset(corpus, **kw):
    args = dict(
        manifest_path=str(corpus / "train.tsv"), sample_rate=25,
        label_paths=[str(corpus / "train.km"), str(corpus / "train.mfcc")],
        label_rates=[25, 100], pad_list=[PAD, PAD], eos_list=[2, 2],
        min_keep_sample_size=15, max_keep_sample_size=55, stack_order_audio=4,
        normalize=True, image_mean=MEAN, image_std=STD, image_crop_size=88,
    )
    args.update(kw)
    return AVHubertDataset(**args)


def _full_video(corpus, name):
    return VideoTransform.eval(88, MEAN, STD)(load_video_frames(corpus / "video" / f"{name}.mp4"))


def _full_audio(corpus, name, n_frames, normalize=True):
    wav, _ = sf.read(corpus / "audio" / f"{name}.wav", dtype="int16")
    feats = audio_features_from_wav(wav, 4, normalize=normalize)[:n_frames]
    return np.concatenate([feats, np.zeros((n_frames - len(feats), 104), np.float32)])


def test_filtering_counts_and_sizes(corpus, caplog):
    with caplog.at_level(logging.INFO):
        ds = _dataset(corpus)
    assert [it.id for it in ds.items] == KEPT
    assert ds.skipped == {"short": 1, "long": 1, "unaligned": 1}
    np.testing.assert_array_equal(ds.sizes, [30, 40, 50, 33])
    assert "kept 4 of 7 items; skipped 1 shorter than 15, 1 longer than 55, 1 whose" in caplog.text
    assert "1 items skipped because their label and video durations differ" in caplog.text
    assert "e.g. unaligned" in caplog.text
    # sequence labels have no duration: nothing is unaligned
    ds = _dataset(corpus, label_paths=[str(corpus / "train.wrd")], label_rates=-1, pad_list=[1],
                  eos_list=[2], label_processors=[lambda s: torch.LongTensor([len(s)])])
    assert ds.skipped["unaligned"] == 0 and len(ds) == 5


def test_getitem_shapes_and_values(corpus):
    ds = _dataset(corpus)
    for index, name in enumerate(KEPT):
        item = ds[index]
        n = ITEMS[name][0]
        assert item["id"] == index and item["fid"] == name
        assert item["audio"].shape == (n, 104) and item["audio"].dtype == torch.float32
        assert item["video"].shape == (n, 88, 88, 1) and item["video"].dtype == torch.float32
        np.testing.assert_allclose(item["video"][..., 0].numpy(), _full_video(corpus, name),
                                   atol=1e-6)
        np.testing.assert_allclose(item["audio"].numpy(), _full_audio(corpus, name, n), atol=1e-5)
        lab25, lab100 = item["label_list"]
        torch.testing.assert_close(lab25, torch.arange(ITEMS[name][2]))
        torch.testing.assert_close(lab100, torch.arange(4 * ITEMS[name][2]))
    # "near": wav is 2 frames short → the last 2 audio frames are zero padding
    near = ds[3]["audio"]
    assert torch.all(near[31:] == 0) and torch.all(near[:31].abs().sum(1) > 0)
    # video brightness follows the frame index
    brightness = (ds[0]["video"][:, 20:68, 20:68, 0].mean((1, 2)) * STD + MEAN) * 255
    np.testing.assert_allclose(brightness.numpy(), 10 + 5 * np.arange(30), atol=3)


def test_collater_pad_to_longest(corpus):
    ds = _dataset(corpus, pad_audio=True)
    batch = ds.collater([ds[0], ds[1], ds[3]])
    src = batch["net_input"]["source"]
    assert src["audio"].shape == (3, 104, 40) and src["video"].shape == (3, 1, 40, 88, 88)
    mask = batch["net_input"]["padding_mask"]
    assert mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.sum(1).numpy(), [10, 0, 7])
    assert not mask[0, :30].any() and mask[0, 30:].all()
    assert torch.all(src["audio"][0, :, 30:] == 0) and torch.all(src["video"][0, :, 30:] == 0)
    np.testing.assert_allclose(src["video"][1, 0].numpy(), _full_video(corpus, "b"), atol=1e-6)
    t25, t100 = batch["target_list"]
    assert t25.shape == (3, 40) and t100.shape == (3, 160)
    np.testing.assert_array_equal(batch["target_lengths_list"][0].numpy(), [30, 40, 35])
    np.testing.assert_array_equal(batch["target_lengths_list"][1].numpy(), [120, 160, 140])
    assert batch["ntokens_list"] == [105, 420]
    assert torch.all(t25[0, 30:] == PAD) and torch.all(t100[0, 120:] == PAD)
    torch.testing.assert_close(t25[2, :35], torch.arange(35))
    assert batch["id"].tolist() == [0, 1, 3] and batch["fid"] == ["a", "b", "near"]


def test_collater_pad_capped_by_max_sample_size(corpus):
    ds = _dataset(corpus, pad_audio=True, max_sample_size=45, random_crop=False)
    batch = ds.collater([ds[1], ds[2]])  # 40 and 50 frames
    assert batch["net_input"]["source"]["audio"].shape == (2, 104, 45)
    np.testing.assert_array_equal(batch["net_input"]["padding_mask"].sum(1).numpy(), [5, 0])
    t25 = batch["target_list"][0]
    torch.testing.assert_close(t25[1], torch.arange(45))  # cropped from the start
    assert ds.size(2) == 50 and ds.num_tokens(2) == 50


@pytest.mark.parametrize("epoch", [1, 2, 3, 4])
def test_collater_random_crop_to_shortest_shares_start(corpus, epoch):
    ds = _dataset(corpus, pad_audio=False, random_crop=True, normalize=False)
    ds.set_epoch(epoch)
    items = [ds[0], ds[1], ds[2]]
    batch = ds.collater(items)
    src = batch["net_input"]["source"]
    assert src["audio"].shape == (3, 104, 30) and src["video"].shape == (3, 1, 30, 88, 88)
    assert not batch["net_input"]["padding_mask"].any()
    t25, t100 = batch["target_list"]
    assert t25.shape == (3, 30) and t100.shape == (3, 120)
    for row, name in enumerate(["a", "b", "c"]):
        start = int(t25[row, 0])
        assert 0 <= start <= ITEMS[name][0] - 30
        torch.testing.assert_close(t25[row], torch.arange(start, start + 30))
        torch.testing.assert_close(t100[row], torch.arange(4 * start, 4 * start + 120))
        full_v = _full_video(corpus, name)
        full_a = _full_audio(corpus, name, ITEMS[name][0], normalize=False)
        np.testing.assert_allclose(src["video"][row, 0].numpy(), full_v[start:start + 30],
                                   atol=1e-6)
        np.testing.assert_allclose(src["audio"][row].T.numpy(), full_a[start:start + 30], atol=1e-4)
    # reproducible for the same epoch and ids
    again = ds.collater(items)
    torch.testing.assert_close(again["target_list"][0], t25)


def test_random_crop_starts_vary_and_fixed_crop_starts_at_zero(corpus):
    ds = _dataset(corpus, pad_audio=False, random_crop=True, modalities=["audio"])
    items = [ds[0], ds[2]]
    starts = set()
    for epoch in range(1, 12):
        ds.set_epoch(epoch)
        starts.add(int(ds.collater(items)["target_list"][0][1, 0]))
    assert len(starts) > 3 and max(starts) <= 20
    ds = _dataset(corpus, pad_audio=False, random_crop=False, modalities=["audio"])
    batch = ds.collater([ds[0], ds[2]])
    torch.testing.assert_close(batch["target_list"][0][1], torch.arange(30))


def test_frame_labels_longer_than_video_cropped_to_common_length(corpus):
    ds = _dataset(corpus, pad_audio=False, random_crop=False)
    batch = ds.collater([ds[3]])  # 33 frames, 35 labels
    assert batch["target_list"][0].shape == (1, 33)
    assert batch["target_list"][1].shape == (1, 132)


def test_modalities_subset(corpus):
    audio_only = _dataset(corpus, modalities=["audio"])
    item = audio_only[0]
    assert item["video"] is None and item["audio"].shape == (30, 104)
    batch = audio_only.collater([audio_only[0], audio_only[1]])
    assert batch["net_input"]["source"]["video"] is None
    assert batch["net_input"]["source"]["audio"].shape == (2, 104, 30)
    video_only = _dataset(corpus, modalities=["video"], pad_audio=True)
    batch = video_only.collater([video_only[0], video_only[1]])
    assert batch["net_input"]["source"]["audio"] is None
    assert batch["net_input"]["source"]["video"].shape == (2, 1, 40, 88, 88)
    np.testing.assert_array_equal(batch["net_input"]["padding_mask"].sum(1).numpy(), [10, 0])
    with pytest.raises(ValueError, match="modalities"):
        _dataset(corpus, modalities=["text"])


def test_sequence_labels_s2s(corpus):
    d = Dictionary()
    for w in ["hello", "world", "again"]:
        d.add_symbol(w)
    def encode(line, append_eos=False):
        return d.encode_line(line, append_eos=append_eos, add_if_not_exist=False).long()

    ds = _dataset(corpus, label_paths=[str(corpus / "train.wrd")], label_rates=-1,
                  pad_list=[d.pad()], eos_list=[d.eos()], label_processors=[encode],
                  is_s2s=True, single_target=True, pad_audio=True)
    batch = ds.collater([ds[0], ds[1]])  # "hello", "hello world again"
    hello, world, again = d.index("hello"), d.index("world"), d.index("again")
    expected = torch.tensor([[hello, d.eos(), d.pad(), d.pad()], [hello, world, again, d.eos()]])
    torch.testing.assert_close(batch["target_list"][0], expected)
    torch.testing.assert_close(batch["target"], expected)
    prev = torch.tensor([[d.eos(), hello, d.pad(), d.pad()], [d.eos(), hello, world, again]])
    torch.testing.assert_close(batch["net_input"]["prev_output_tokens"], prev)
    assert batch["target_lengths"].tolist() == [2, 4] and batch["ntokens"] == 6
    # a processor that already appends EOS gets no second one
    ds.label_processors = [lambda line: encode(line, append_eos=True)]
    torch.testing.assert_close(ds.collater([ds[0], ds[1]])["target"], expected)
    # without s2s: plain padded sequences, no prev_output_tokens
    ds.is_s2s = False
    batch = ds.collater([ds[0], ds[1]])
    assert "prev_output_tokens" not in batch["net_input"]
    assert batch["target"].shape == (2, 4)


def test_ordered_indices_and_num_tokens(corpus, restore_numpy_rng):
    ds = _dataset(corpus, pad_audio=False, max_sample_size=35)
    np.random.seed(0)
    order = ds.ordered_indices()
    np.testing.assert_array_equal(ds.sizes[order], [50, 40, 33, 30])
    assert ds.size(2) == 35 and ds.num_tokens(0) == 30
    np.testing.assert_array_equal(ds.num_tokens_vec(np.arange(4)), [30, 35, 35, 33])
    ties = _dataset(corpus, min_keep_sample_size=None, max_keep_sample_size=None,
                    label_paths=[str(corpus / "train.wrd")], label_rates=-1, pad_list=[1],
                    eos_list=[2], label_processors=[lambda s: torch.LongTensor([0])])
    ties.sizes = np.zeros(len(ties), dtype=np.int64)
    orders = {tuple(ties.ordered_indices()) for _ in range(20)}
    assert len(orders) > 1
    ties.shuffle = False
    assert list(ties.ordered_indices()) == list(range(len(ties)))[::-1]


def test_errors_name_paths(corpus, tmp_path):
    write_label_lines(tmp_path / "bad.km", ["0"])
    with pytest.raises(ValueError, match=r"bad\.km: 1 label lines for 7 items"):
        _dataset(corpus, label_paths=[str(tmp_path / "bad.km")], label_rates=25, pad_list=[PAD],
                 eos_list=[2])
    (tmp_path / "video").mkdir()
    _write_wav(tmp_path / "r8k.wav", 30, rate=8000)
    _write_video(tmp_path / "video" / "ok.mp4", 30)
    items = [ManifestItem("gone", "video/gone.mp4", str(corpus / "audio" / "a.wav"), 30, 19200),
             ManifestItem("r8k", "video/ok.mp4", str(tmp_path / "r8k.wav"), 30, 9600)]
    write_manifest(tmp_path / "m.tsv", str(tmp_path), items)
    write_label_lines(tmp_path / "m.km", [" ".join(["0"] * 30)] * 2)
    ds = AVHubertDataset(str(tmp_path / "m.tsv"), 25, [str(tmp_path / "m.km")], 25, [PAD], [2],
                         stack_order_audio=4)
    with pytest.raises(ItemLoadError, match=r"'gone'.*video/gone\.mp4"):
        ds[0]
    with pytest.raises(ItemLoadError, match=r"r8k\.wav.*8000 Hz"):
        ds[1]


def test_noise_added_at_target_snr(corpus, tmp_path):
    rng = np.random.default_rng(7)
    for i in range(2):
        sf.write(tmp_path / f"n{i}.wav", rng.normal(0, 2000, 9000).astype(np.int16), 16000,
                 subtype="PCM_16")
    (tmp_path / "noise.tsv").write_text(f"{tmp_path / 'n0.wav'}\n{tmp_path / 'n1.wav'}\n")
    clean, _ = sf.read(corpus / "audio" / "b.wav", dtype="int16")
    for snr in ["0", "10"]:
        ds = _dataset(corpus, noise_list=str(tmp_path / "noise.tsv"), noise_prob=1.0,
                      noise_snr=snr, noise_num=2)
        noisy = ds.load_audio_samples(1)
        # the mix may have been scaled down as a whole to avoid clipping: undo that scale
        speech = clean.astype(np.float64)
        speech = speech * np.dot(noisy.astype(np.float64), speech) / np.dot(speech, speech)
        noise = noisy - speech
        measured = 10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2))
        assert abs(measured - float(snr)) < 0.5
        feats = ds[1]["audio"].numpy()
        np.testing.assert_allclose(feats, normalize_per_frame(
            audio_features_from_wav(noisy, 4, normalize=False)), atol=1e-5)
    quiet = _dataset(corpus, noise_list=str(tmp_path / "noise.tsv"), noise_prob=0.0)
    np.testing.assert_array_equal(quiet.load_audio_samples(1), clean)
