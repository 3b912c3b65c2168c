"""Audio-visual dataset of AV-HuBERT: manifest items → mouth-ROI clips, audio features, labels.

One item is a grayscale mouth video (25 fps) and its 16 kHz mono wav. Video frames are
transformed to ``[T, 88, 88, 1]``; the wav becomes log filterbanks stacked to 25 Hz
``[T, 104]`` (zero-padded or trimmed at the end to the decoded video length, or to the
manifest's frame count when video is not loaded), then normalised per frame: the clip-input
contract of :mod:`.clip_inputs`, which scoring and clustering use too.

Sizes are video frame counts (the task's ``sample_rate`` is therefore 25). Items are filtered
at load time by size and, for frame-level labels, by agreement of label and video durations
(kept when within ``label_tolerance_s``); each reason is counted and logged.

Batching follows the reference: with ``pad_audio`` every item is padded to the longest in the
batch (capped at ``max_sample_size``); otherwise every item is cropped to the shortest. Crops
share their start between audio and video (random when ``random_crop``) and frame labels are
cropped with that start scaled by ``label_rate / sample_rate``.

Randomness (video augmentation, noise, crop starts) is drawn from generators seeded by
``(seed, epoch, item or batch ids)``, so it is reproducible and independent of data-loader
workers.

With ``packed_dir`` the decoded frames and wav samples are read from a pack written by
``sf-pack-roi`` (:mod:`.packed`) instead of decoding the sources: the same arrays, so the same
batches, without the decoding that dominates a worker's time.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from .audio_io import read_wav_checked
from .clip_inputs import SAMPLE_RATE, InputSettings, audio_inputs, padding_mask, video_inputs
from .manifest import ManifestError, read_label_lines, read_manifest
from .noise import NoiseAugmenter
from .packed import PackedSplit
from .video import VideoTransform, load_video_frames

logger = logging.getLogger(__name__)

MODALITIES = frozenset({"audio", "video"})
AUDIO_SAMPLE_RATE = SAMPLE_RATE  # its former name here

LabelProcessor = Callable[[str], torch.LongTensor]


class ItemLoadError(RuntimeError):
    """An item's media could not be loaded; the message names the item and the file."""


def parse_int_labels(line: str) -> torch.LongTensor:
    """Default label processor: space-separated integers."""
    return torch.tensor([int(tok) for tok in line.split()], dtype=torch.long)


def _label_durations(lines: Sequence[str], rate: float) -> np.ndarray:
    return np.array([len(line.split()) for line in lines], dtype=np.float64) / rate


class AVHubertDataset(FairseqDataset):
    """AV-HuBERT audio-visual dataset (reference ``avhubert/hubert_dataset.py``).

    Args:
        manifest_path: ``{split}.tsv`` (see :mod:`sf_fairseq.data.manifest`).
        sample_rate: rate of the manifest sizes, i.e. video fps (25).
        label_paths: one label file per label set, one line per manifest line.
        label_rates: labels per second for each set (25 or 100 for frame labels, -1 for
            sequence labels); a single number applies to all sets.
        pad_list, eos_list: pad and EOS index of each label set's dictionary.
        label_processors: line → LongTensor per label set (default: parse integers).
        max_keep_sample_size, min_keep_sample_size: drop items longer / shorter (frames).
        max_sample_size: crop length cap (``max_trim_sample_size`` of the reference task).
        shuffle: shuffle before sorting by size in :meth:`ordered_indices`.
        pad_audio: pad the batch to its longest item (else crop to the shortest).
        normalize: per-frame layer norm of the audio features.
        random_crop: random crop start (else 0).
        single_target: also return ``target``/``target_lengths``/``ntokens`` of the single set.
        stack_order_audio: 100 Hz filterbank frames stacked per feature frame (4 → 25 Hz).
        image_mean, image_std, image_crop_size, image_aug: video transform (``image_aug``:
            random crop + flip, else centre crop).
        modalities: subset of ``{"audio", "video"}`` to load (the other is ``None``).
        is_s2s: sequence labels for a seq2seq decoder: EOS appended to targets (unless already
            there) and ``net_input["prev_output_tokens"]`` returned.
        noise_list: file of noise wav paths (one per line), or ``None`` for no noise.
        noise_prob, noise_snr, noise_num: chance of adding noise to an item, SNR spec
            (``"0"``, ``"-5,5"``), noise clips averaged.
        label_tolerance_s: allowed |label duration − video duration| for frame labels.
        seed: seed of the item/batch generators.
        packed_dir: folder of ``sf-pack-roi`` output for this manifest (``{split}.index.json``
            etc., ``split`` being the manifest's file stem), read instead of the mp4s and wavs.
    """

    def __init__(
        self,
        manifest_path: str,
        sample_rate: float,
        label_paths: Sequence[str],
        label_rates: float | Sequence[float],
        pad_list: Sequence[int],
        eos_list: Sequence[int],
        label_processors: Sequence[LabelProcessor] | None = None,
        max_keep_sample_size: int | None = None,
        min_keep_sample_size: int | None = None,
        max_sample_size: int | None = None,
        shuffle: bool = True,
        pad_audio: bool = False,
        normalize: bool = False,
        random_crop: bool = False,
        single_target: bool = False,
        stack_order_audio: int = 1,
        image_mean: float = 0.0,
        image_std: float = 1.0,
        image_crop_size: int = 88,
        image_aug: bool = False,
        modalities: Sequence[str] = ("audio", "video"),
        is_s2s: bool = False,
        noise_list: str | None = None,
        noise_prob: float = 0.0,
        noise_snr: str | float = "0",
        noise_num: int = 1,
        label_tolerance_s: float = 0.1,
        seed: int = 1,
        packed_dir: str | None = None,
    ):
        super().__init__()
        n_labels = len(label_paths)
        if isinstance(label_rates, (int, float)):
            label_rates = [label_rates] * n_labels
        self.label_rates = [float(r) for r in label_rates]
        if not (len(self.label_rates) == len(pad_list) == len(eos_list) == n_labels):
            raise ValueError(
                f"label_paths, label_rates, pad_list and eos_list must have one entry per label "
                f"set; got {n_labels}, {len(self.label_rates)}, {len(pad_list)}, {len(eos_list)}"
            )
        if label_processors is not None and len(label_processors) != n_labels:
            raise ValueError(f"{len(label_processors)} label processors for {n_labels} label sets")
        if single_target and n_labels != 1:
            raise ValueError(f"single_target needs exactly one label set, got {n_labels}")
        self.modalities = set(modalities)
        if not self.modalities or not self.modalities <= MODALITIES:
            raise ValueError(f"modalities must be a non-empty subset of {sorted(MODALITIES)}, "
                             f"got {list(modalities)}")

        self.sample_rate = float(sample_rate)
        self.num_labels = n_labels
        self.pad_list, self.eos_list = list(pad_list), list(eos_list)
        self.label_processors = (list(label_processors) if label_processors is not None
                                 else [parse_int_labels] * n_labels)
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.shuffle, self.pad_audio, self.normalize = shuffle, pad_audio, normalize
        self.random_crop, self.single_target, self.is_s2s = random_crop, single_target, is_s2s
        self.stack_order_audio = stack_order_audio
        self.input_settings = InputSettings(image_crop_size, image_mean, image_std,
                                            stack_order_audio, normalize)
        self.seed = seed
        # The epoch seeds each item's augmentation. fairseq 0.12 keeps a training run's loader
        # workers alive across epochs (reuse_dataloader and persistent_workers default to True),
        # each with its own copy of this dataset made at the first epoch: kept in shared memory,
        # set_epoch reaches them, where a plain attribute left every epoch augmented as the first.
        self._epoch = torch.ones(1, dtype=torch.int64).share_memory_()

        self._load(manifest_path, label_paths, min_keep_sample_size, max_keep_sample_size,
                   label_tolerance_s)
        self.packed: PackedSplit | None = None
        if packed_dir is not None:
            split = os.path.splitext(os.path.basename(manifest_path))[0]
            self.packed = PackedSplit(packed_dir, split)
            self.packed.check_manifest(manifest_path, [item.id for item in self.manifest.items])
            logger.info("%s: reading packed clips from %s (decoded by %s)", manifest_path,
                        packed_dir, self.packed.decoder)

        # Without augmentation: the contract's deterministic transform, as scoring uses.
        self.video_transform = (VideoTransform.train(image_crop_size, image_mean, image_std)
                                if image_aug else self.input_settings.eval_transform())
        self.noise_prob = noise_prob
        self.noise = (NoiseAugmenter.from_list(noise_list, noise_snr, noise_num, SAMPLE_RATE)
                      if noise_list is not None and noise_prob > 0 else None)

    # ------------------------------------------------------------------ loading

    def _load(self, manifest_path, label_paths, min_keep, max_keep, tolerance_s) -> None:
        manifest = read_manifest(manifest_path)
        n_total = len(manifest)
        label_lines = []
        for path in label_paths:
            lines = read_label_lines(path)
            if len(lines) != n_total:
                raise ManifestError(f"{path}: {len(lines)} label lines for {n_total} items in "
                                    f"{manifest_path}")
            label_lines.append(lines)

        sizes = np.array([item.n_video_frames for item in manifest.items], dtype=np.int64)
        short = sizes < min_keep if min_keep is not None else np.zeros(n_total, bool)
        long = ~short & (sizes > max_keep if max_keep is not None else False)
        unaligned = np.zeros(n_total, bool)
        video_dur = sizes / self.sample_rate
        for lines, rate in zip(label_lines, self.label_rates):
            if rate > 0:  # frame labels; sequence labels (-1) have no duration
                unaligned |= ~(np.abs(video_dur - _label_durations(lines, rate)) < tolerance_s)
        unaligned &= ~short & ~long
        keep = np.flatnonzero(~(short | long | unaligned))

        self.root = manifest.root
        self.manifest = manifest
        self.items = [manifest.items[i] for i in keep]
        self.manifest_indices = keep
        self.sizes = sizes[keep]
        self.label_list = [[lines[i] for i in keep] for lines in label_lines]
        self.skipped = {"short": int(short.sum()), "long": int(long.sum()),
                        "unaligned": int(unaligned.sum())}
        logger.info(
            "%s: kept %d of %d items; skipped %d shorter than %s, %d longer than %s, %d whose "
            "labels and video differ by >= %.2f s; longest kept %s, shortest kept %s frames",
            manifest_path, len(keep), n_total, self.skipped["short"], min_keep,
            self.skipped["long"], max_keep, self.skipped["unaligned"], tolerance_s,
            self.sizes.max() if len(keep) else None, self.sizes.min() if len(keep) else None,
        )
        if unaligned.any():
            ids = [manifest.items[i].id for i in np.flatnonzero(unaligned)[:5]]
            logger.warning("%s: %d items skipped because their label and video durations "
                           "differ by >= %.2f s, e.g. %s", manifest_path, int(unaligned.sum()),
                           tolerance_s, ", ".join(ids))

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def _item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, 0, int(index)])

    def _batch_rng(self, ids: Sequence[int]) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, 1, *[int(i) for i in ids]])

    def get_label(self, index: int, label_idx: int) -> torch.LongTensor:
        return self.label_processors[label_idx](self.label_list[label_idx][index])

    def get_labels(self, index: int) -> list[torch.LongTensor]:
        return [self.get_label(index, i) for i in range(self.num_labels)]

    def load_audio_samples(self, index: int, rng: np.random.Generator | None = None
                           ) -> np.ndarray:
        """Samples ``[n_samples]`` of item ``index`` on the int16 scale (int16, or float32 for
        24/32-bit and float wavs: see :mod:`.audio_io`), with noise added with ``noise_prob``
        (drawn from ``rng``, default the item's generator)."""
        if self.packed is not None:
            path = str(self.packed.paths["audio"])
            wav = self.packed.audio(int(self.manifest_indices[index]))
        else:
            path = self.manifest.resolve(self.items[index].audio)
            wav = read_wav_checked(path, SAMPLE_RATE)
        if wav.size == 0:
            raise ValueError(f"audio file {path!r} has no samples")
        rng = rng if rng is not None else self._item_rng(index)
        if self.noise is not None and rng.random() < self.noise_prob:
            wav = self.noise(wav, rng)
        return wav

    def load_video(self, index: int) -> np.ndarray:
        """Grey frames uint8 ``[T, H, W]`` of item ``index``, before the transform."""
        if self.packed is not None:
            return self.packed.video(int(self.manifest_indices[index]))
        return load_video_frames(self.manifest.resolve(self.items[index].video))

    def load_feature(self, index: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(video [T, H, W, 1] float32 | None, audio [T, F] float32 | None)``: the model
        inputs of :mod:`.clip_inputs`, audio aligned to the video's frame count (the manifest's
        when video is not loaded) and normalised when ``normalize``."""
        item = self.items[index]
        video = audio = None
        path = None
        try:
            # Video first: its augmentation draws from ``rng`` before the noise does.
            if "video" in self.modalities:
                path = (self.packed.paths["video"] if self.packed is not None
                        else self.manifest.resolve(item.video))
                video = video_inputs(self.load_video(index), self.input_settings,
                                     self.video_transform, rng)[..., None]
            if "audio" in self.modalities:
                path = (self.packed.paths["audio"] if self.packed is not None
                        else self.manifest.resolve(item.audio))
                n_frames = len(video) if video is not None else int(self.sizes[index])
                audio = audio_inputs(self.load_audio_samples(index, rng), self.input_settings,
                                     n_frames)
        except (OSError, ValueError) as err:
            raise ItemLoadError(f"item {item.id!r} (index {index}): cannot load {path!r}: {err}"
                                ) from err
        return video, audio

    def __getitem__(self, index: int) -> dict[str, Any]:
        """``{"id", "fid", "audio": [T, F] | None, "video": [T, H, W, 1] | None, "label_list"}``."""
        video, audio = self.load_feature(index, self._item_rng(index))
        audio_t = torch.from_numpy(audio) if audio is not None else None
        video_t = torch.from_numpy(video) if video is not None else None
        return {"id": index, "fid": self.items[index].id, "audio": audio_t, "video": video_t,
                "label_list": self.get_labels(index)}

    def __len__(self) -> int:
        return len(self.sizes)

    # ------------------------------------------------------------------ batching

    def _crop_starts(self, lengths: Sequence[int], size: int,
                     rng: np.random.Generator) -> list[int]:
        starts = []
        for length in lengths:
            diff = length - size
            starts.append(int(rng.integers(0, diff + 1)) if diff > 0 and self.random_crop else 0)
        return starts

    @staticmethod
    def _collate_frames(seqs: Sequence[torch.Tensor], size: int, starts: Sequence[int]
                        ) -> torch.Tensor:
        """``[T_i, ...]`` each → ``[B, size, ...]``: crop at ``starts`` or zero-pad the end."""
        # Only the padding is zeroed: cropped batches (the pretraining case) are all data.
        out = seqs[0].new_empty((len(seqs), size, *seqs[0].shape[1:]))
        for i, (seq, start) in enumerate(zip(seqs, starts)):
            chunk = seq[start:start + size]
            out[i, : len(chunk)] = chunk
            out[i, len(chunk):] = 0
        return out

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch items; see the module docstring for pad/crop rules.

        Returns:
            ``{"id": [B], "fid": list[str], "net_input": {"source": {"audio": [B, F, T] | None,
            "video": [B, 1, T, H, W] | None}, "padding_mask": bool [B, T] (True = pad)},
            "target_list": [[B, T_lab]], "target_lengths_list": [[B]], "ntokens_list": [int]}``
            (+ ``net_input["prev_output_tokens"]`` if ``is_s2s``; + ``target``,
            ``target_lengths``, ``ntokens`` if ``single_target``).
        """
        samples = [s for s in samples if s["id"] is not None]
        if not samples:
            return {}
        audios = [s["audio"] for s in samples] if samples[0]["audio"] is not None else None
        videos = [s["video"] for s in samples] if samples[0]["video"] is not None else None
        lengths = [len(x) for x in (audios if audios is not None else videos)]
        size = min(max(lengths) if self.pad_audio else min(lengths), self.max_sample_size)
        ids = [s["id"] for s in samples]
        starts = self._crop_starts(lengths, size, self._batch_rng(ids))

        mask = padding_mask(torch.tensor(lengths), size)
        source = {"audio": None, "video": None}
        if audios is not None:
            source["audio"] = self._collate_frames(audios, size, starts).transpose(1, 2)
        if videos is not None:
            source["video"] = self._collate_frames(videos, size, starts).permute(0, 4, 1, 2, 3
                                                                                 ).contiguous()
        net_input: dict[str, Any] = {"source": source, "padding_mask": mask}

        targets_list, lengths_list, ntokens_list = [], [], []
        for i, (rate, pad, eos) in enumerate(zip(self.label_rates, self.pad_list, self.eos_list)):
            targets = [s["label_list"][i] for s in samples]
            if rate > 0:
                collated, lens, ntok = self._collate_frame_labels(targets, size, starts, rate, pad)
            else:
                collated, lens, ntok, prev = self._collate_seq_labels(targets, pad, eos)
                if prev is not None:
                    net_input["prev_output_tokens"] = prev
            targets_list.append(collated)
            lengths_list.append(lens)
            ntokens_list.append(ntok)

        batch = {"id": torch.LongTensor(ids), "fid": [s["fid"] for s in samples],
                 "net_input": net_input, "target_list": targets_list,
                 "target_lengths_list": lengths_list, "ntokens_list": ntokens_list}
        if self.single_target:
            batch.update(target=targets_list[0], target_lengths=lengths_list[0],
                         ntokens=ntokens_list[0])
        return batch

    def _collate_frame_labels(self, targets, size, starts, label_rate, pad):
        per_frame = label_rate / self.sample_rate
        label_starts = [int(round(s * per_frame)) for s in starts]
        label_size = int(round(size * per_frame))
        if not self.pad_audio:
            remaining = [len(t) - s for t, s in zip(targets, label_starts)]
            label_size = max(0, min(label_size, *remaining))
        targets = [t[s:s + label_size] for t, s in zip(targets, label_starts)]
        lengths = torch.LongTensor([len(t) for t in targets])
        return (data_utils.collate_tokens(targets, pad_idx=pad, left_pad=False), lengths,
                int(lengths.sum()))

    def _collate_seq_labels(self, targets, pad, eos):
        prev = None
        if self.is_s2s:
            targets = [t if len(t) and t[-1] == eos else torch.cat([t, t.new_tensor([eos])])
                       for t in targets]
            prev = data_utils.collate_tokens(targets, pad_idx=pad, eos_idx=eos, left_pad=False,
                                             move_eos_to_beginning=True)
        lengths = torch.LongTensor([len(t) for t in targets])
        collated = data_utils.collate_tokens(targets, pad_idx=pad, eos_idx=eos, left_pad=False)
        return collated, lengths, int(lengths.sum()), prev

    def num_tokens(self, index: int) -> int:
        return self.size(index)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        sizes = self.sizes[indices]
        return sizes if self.pad_audio else np.minimum(sizes, self.max_sample_size)

    def size(self, index: int) -> int:
        if self.pad_audio:
            return int(self.sizes[index])
        return int(min(self.sizes[index], self.max_sample_size))

    def ordered_indices(self) -> np.ndarray:
        """Longest first; ties in a random order when ``shuffle`` (global numpy RNG, which
        fairseq seeds around this call)."""
        order = [np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))]
        order.append(self.sizes)
        return np.lexsort(order)[::-1]
