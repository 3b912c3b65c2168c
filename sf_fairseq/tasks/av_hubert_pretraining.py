"""Task ``av_hubert_pretraining``: AV-HuBERT manifests + cluster labels for masked prediction
(and transcripts for fine-tuning, with ``fine_tuning``/``is_s2s``).

Data layout (``task.data`` / ``task.label_dir``)::

    {split}.tsv            manifest (sf_fairseq.data.manifest)
    {split}.{label}        one line of labels per manifest item
    dict.{label}.txt       fairseq dictionary of each label set

The dictionaries are part of the task state, so they are saved in every checkpoint and a
checkpoint loads on machines where ``label_dir`` does not exist.
"""

from __future__ import annotations

import logging
import os
import sys
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any

import torch
from fairseq.data import Dictionary, encoders
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..checkpoint import register_config_upgrade
from ..data.av_hubert_dataset import AVHubertDataset
from ..data.rates import SAMPLE_RATE
from ..models.sequence_generator import AVHubertSequenceGenerator

logger = logging.getLogger(__name__)


@dataclass
class AVHubertPretrainingConfig(FairseqDataclass):
    """Every field of the reference task config, with its name and default."""

    data: str = field(default=MISSING, metadata={"help": "directory with {split}.tsv manifests"})
    labels: list[str] = field(
        default_factory=lambda: ["ltr"],
        metadata={"help": "label-set extensions: {split}.{label} and dict.{label}.txt"},
    )
    label_dir: str | None = field(default=None, metadata={"help": "directory of labels (default: data)"})
    label_rate: float = field(default=-1, metadata={"help": "labels per second; -1 for sequence labels"})
    sample_rate: float = field(
        default=SAMPLE_RATE, metadata={"help": "rate of the manifest sizes: video fps (25) for AV-HuBERT"}
    )
    normalize: bool = field(default=False, metadata={"help": "per-frame layer norm of audio features"})
    enable_padding: bool = field(default=False, metadata={"help": "unused; kept for compatibility"})
    max_sample_size: int | None = field(default=None, metadata={"help": "drop items longer than this (frames)"})
    min_sample_size: int | None = field(default=None, metadata={"help": "drop items shorter than this (frames)"})
    max_trim_sample_size: int | None = field(
        default=II("task.max_sample_size"), metadata={"help": "crop length cap of a batch (frames)"}
    )
    single_target: bool = field(default=False, metadata={"help": "return a single 'target' (fine-tuning)"})
    random_crop: bool = field(default=True, metadata={"help": "random crop start (else 0)"})
    pad_audio: bool = field(default=False, metadata={"help": "pad a batch to its longest item (else crop to shortest)"})
    pdb: bool = field(default=False, metadata={"help": "ignored; kept for compatibility"})
    stack_order_audio: int = field(
        default=1,
        metadata={"help": "100 Hz filterbank frames stacked per feature (4 -> 25 Hz)"},
    )
    skip_verify: bool = field(default=False, metadata={"help": "unused; kept for compatibility"})
    image_aug: bool = field(default=False, metadata={"help": "random crop + flip of training video"})
    image_crop_size: int = field(default=88, metadata={"help": "video crop size"})
    image_mean: float = field(default=0.421, metadata={"help": "video normalisation mean (0..1 scale)"})
    image_std: float = field(default=0.165, metadata={"help": "video normalisation std (0..1 scale)"})
    modalities: list[str] = field(
        default_factory=lambda: ["audio", "video"], metadata={"help": "streams to load"}
    )
    is_s2s: bool = field(default=False, metadata={"help": "sequence-to-sequence fine-tuning targets"})
    tokenizer_bpe_name: str | None = field(default=None, metadata={"help": "BPE of s2s targets (sentencepiece)"})
    tokenizer_bpe_model: str | None = field(default=None, metadata={"help": "BPE model file"})
    noise_wav: str | None = field(
        default=None, metadata={"help": "directory with {split}.tsv lists of noise wavs (one path per line)"}
    )
    noise_prob: float = field(default=0.0, metadata={"help": "chance of adding noise to a training item"})
    noise_snr: str = field(default="0", metadata={"help": "SNR in dB: a number or a 'low,high' range"})
    noise_num: int = field(default=1, metadata={"help": "noise clips averaged per item"})
    fine_tuning: bool = field(default=False, metadata={"help": "fine-tuning (one target dictionary)"})
    packed_dir: str | None = field(
        default=None,
        metadata={"help": "folder of sf-pack-roi output ({split}.index.json, ...): decoded ROIs and "
                          "wavs read instead of the manifest's files (same inputs, no decoding)"},
    )


class LabelEncoder:
    """A line of label symbols -> dictionary indices (no EOS; unknown symbols map to <unk>)."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary

    def __call__(self, line: str) -> torch.LongTensor:
        return self.dictionary.encode_line(line, append_eos=False, add_if_not_exist=False).long()


class TokenizedLabelEncoder(LabelEncoder):
    """Text -> BPE pieces -> dictionary indices (sequence-to-sequence targets)."""

    def __init__(self, dictionary: Dictionary, tokenizer: Any) -> None:
        super().__init__(dictionary)
        self.tokenizer = tokenizer

    def __call__(self, line: str) -> torch.LongTensor:
        return super().__call__(self.tokenizer.encode(line.lower()))


# Saved configs of this name are upgraded to the dataclass on load (dropped keys are logged).
register_config_upgrade("task", "av_hubert_pretraining", AVHubertPretrainingConfig)


@register_task("av_hubert_pretraining", dataclass=AVHubertPretrainingConfig)
class AVHubertPretrainingTask(FairseqTask):
    cfg: AVHubertPretrainingConfig

    def __init__(self, cfg: AVHubertPretrainingConfig) -> None:
        # A ``???`` in a YAML is replaced by the dataclass default when fairseq merges it, so
        # settings the published configs leave to the command line arrive here as defaults.
        if not cfg.fine_tuning and cfg.label_rate <= 0:
            raise ValueError(
                "task.label_rate must be set for pretraining: 100 for MFCC labels, 25 for k-means "
                "labels of model features"
            )
        if cfg.noise_prob > 0 and not cfg.noise_wav:
            raise ValueError("task.noise_prob > 0 needs task.noise_wav (a folder with {split}.tsv noise lists)")
        super().__init__(cfg)
        # Factories run only when a value is not restored from a checkpoint's task_state.
        if cfg.fine_tuning:
            self.state.add_factory("target_dictionary", lambda: self.load_dictionaries()[0])
            if cfg.is_s2s:
                self.state.add_factory("s2s_tokenizer", self.load_tokenizer)
        else:
            self.state.add_factory("dictionaries", self.load_dictionaries)

    @classmethod
    def setup_task(cls, cfg: AVHubertPretrainingConfig, **kwargs: Any) -> "AVHubertPretrainingTask":
        return cls(cfg)

    @property
    def label_dir(self) -> str:
        return self.cfg.label_dir or self.cfg.data

    @property
    def dictionaries(self) -> list[Dictionary]:
        return self.state.dictionaries

    @property
    def source_dictionary(self) -> None:
        return None

    @property
    def target_dictionary(self) -> Dictionary | None:
        return self.state.target_dictionary if self.cfg.fine_tuning else None

    @property
    def s2s_tokenizer(self) -> Any:
        return self.state.s2s_tokenizer

    def load_dictionaries(self) -> list[Dictionary]:
        dictionaries = []
        for label in self.cfg.labels:
            path = os.path.join(self.label_dir, f"dict.{label}.txt")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"label dictionary not found: {path}")
            dictionaries.append(Dictionary.load(path))
        return dictionaries

    def load_tokenizer(self) -> Any:
        if self.cfg.tokenizer_bpe_name is None:
            raise ValueError("is_s2s needs task.tokenizer_bpe_name (e.g. sentencepiece)")
        return encoders.build_bpe(
            Namespace(bpe=self.cfg.tokenizer_bpe_name, sentencepiece_model=self.cfg.tokenizer_bpe_model)
        )

    def load_dataset(self, split: str, **kwargs: Any) -> None:
        cfg = self.cfg
        manifest = os.path.join(cfg.data, f"{split}.tsv")
        dictionaries = [self.target_dictionary] if cfg.fine_tuning else self.dictionaries
        if cfg.fine_tuning and cfg.is_s2s:
            processors = [TokenizedLabelEncoder(d, self.s2s_tokenizer) for d in dictionaries]
        else:
            processors = [LabelEncoder(d) for d in dictionaries]
        noise_list = os.path.join(cfg.noise_wav, f"{split}.tsv") if cfg.noise_wav else None
        self.datasets[split] = AVHubertDataset(
            manifest,
            sample_rate=cfg.sample_rate,
            label_paths=[os.path.join(self.label_dir, f"{split}.{label}") for label in cfg.labels],
            label_rates=cfg.label_rate,
            pad_list=[d.pad() for d in dictionaries],
            eos_list=[d.eos() for d in dictionaries],
            label_processors=processors,
            max_keep_sample_size=cfg.max_sample_size,
            min_keep_sample_size=cfg.min_sample_size,
            max_sample_size=cfg.max_trim_sample_size,
            pad_audio=cfg.pad_audio,
            normalize=cfg.normalize,
            random_crop=cfg.random_crop,
            single_target=cfg.single_target,
            stack_order_audio=cfg.stack_order_audio,
            image_mean=cfg.image_mean,
            image_std=cfg.image_std,
            image_crop_size=cfg.image_crop_size,
            image_aug=cfg.image_aug and split == "train",
            modalities=cfg.modalities,
            is_s2s=cfg.is_s2s,
            noise_list=noise_list,
            noise_prob=cfg.noise_prob,
            noise_snr=cfg.noise_snr,
            noise_num=cfg.noise_num,
            packed_dir=cfg.packed_dir,
        )
        # fairseq passes the epoch it loads for (a resumed run's): set before any loader worker
        # can start, as a resumed run may create its iterator before calling set_epoch.
        self.datasets[split].set_epoch(int(kwargs.get("epoch", 1)))

    def max_positions(self) -> tuple[int, int]:
        return sys.maxsize, sys.maxsize

    def filter_indices_by_size(self, indices: Any, *args: Any, **kwargs: Any) -> Any:
        # The dataset already filtered by min/max sample size when it was loaded.
        return indices

    def build_model(self, cfg: Any, from_checkpoint: bool = False) -> Any:
        model = super().build_model(cfg, from_checkpoint)
        # A seq2seq model fills w2v_args (the pretraining config) from w2v_path; fairseq saves
        # this cfg, so copying it back makes the fine-tuned file load without the pretrained one.
        w2v_args = getattr(getattr(model, "cfg", None), "w2v_args", None)
        if w2v_args is not None and hasattr(cfg, "w2v_args"):
            cfg.w2v_args = w2v_args
        return model

    def build_generator(self, models: Any, args: Any, seq_gen_cls: Any = None, **kwargs: Any) -> Any:
        # fairseq's beam search, fed AV-HuBERT's dict-valued net_input["source"].
        return super().build_generator(models, args, seq_gen_cls=seq_gen_cls or AVHubertSequenceGenerator, **kwargs)
