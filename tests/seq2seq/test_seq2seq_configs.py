"""The fine-tuning YAML configs: every key is declared by the dataclass fairseq merges it with
(as fairseq-hydra-train's add_defaults does), and the schedules are the reference's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fairseq.dataclass.configs import FairseqConfig
from fairseq.models import MODEL_DATACLASS_REGISTRY
from fairseq.registry import REGISTRIES
from fairseq.tasks import TASK_DATACLASS_REGISTRY
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

import sf_fairseq  # noqa: F401  (registers the task and models)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "sf_fairseq" / "config" / "finetune"
# name: (max_update, warmup, decay, freeze_finetune_updates, decoder_layers, modalities)
SCHEDULES = {
    "base_lrs3_30h": (30000, 10000, 20000, 30000, 6, ["video"]),
    "base_lrs3_433h": (120000, 40000, 80000, 60000, 6, ["video"]),
    "base_vox_30h": (30000, 10000, 20000, 24000, 6, ["video"]),
    "base_vox_433h": (45000, 15000, 30000, 22500, 6, ["video"]),
    "large_lrs3_30h": (18000, 6000, 12000, 14400, 9, ["video"]),
    "large_lrs3_433h": (30000, 10000, 20000, 18000, 9, ["video"]),
    "large_vox_30h": (30000, 10000, 20000, 30000, 9, ["video"]),
    "large_vox_433h": (30000, 10000, 20000, 30000, 9, ["video"]),
    "self_large_vox_30h": (100000, 10000, 90000, 80000, 9, ["video"]),
    "self_large_vox_433h": (100000, 10000, 90000, 80000, 9, ["video"]),
    "base_noise_pt_noise_ft_30h": (30000, 10000, 20000, 24000, 6, ["video", "audio"]),
    "base_noise_pt_noise_ft_433h": (60000, 20000, 40000, 48000, 6, ["video", "audio"]),
    "large_noise_pt_noise_ft_30h": (18000, 6000, 18000, 30000, 9, ["video", "audio"]),
    "large_noise_pt_noise_ft_433h": (60000, 20000, 40000, 48000, 9, ["video", "audio"]),
    "tiny_cpu": (20, 4, 16, 2, 2, ["video"]),
    # the demo's lip-reading stage (eval/lipreading.py sets max_update and the schedule per run)
    "tiny_cpu_grid": (200, 20, 100, 0, 2, ["audio", "video"]),
}
NAMED_GROUPS = {
    "model": MODEL_DATACLASS_REGISTRY,
    "task": TASK_DATACLASS_REGISTRY,
    "criterion": REGISTRIES["criterion"]["dataclass_registry"],
    "optimizer": REGISTRIES["optimizer"]["dataclass_registry"],
    "lr_scheduler": REGISTRIES["lr_scheduler"]["dataclass_registry"],
}


def _strict_merge(dataclass_instance, section) -> None:
    base = OmegaConf.structured(dataclass_instance)
    OmegaConf.set_struct(base, True)
    OmegaConf.merge(base, section)  # raises ConfigKeyError on an undeclared key


def _check_declared(cfg) -> None:
    fields = {f.name: f for f in dataclasses.fields(FairseqConfig)}
    for group, section in cfg.items():
        if group == "hydra":
            continue
        if group in NAMED_GROUPS:
            _strict_merge(NAMED_GROUPS[group][section._name](), section)
        else:
            field = fields[group]
            default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
            _strict_merge(default, section)


def test_every_config_is_listed() -> None:
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == sorted(SCHEDULES)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_config_keys_are_declared_and_schedule_is_the_reference(name: str) -> None:
    cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    _check_declared(cfg)
    max_update, warmup, decay, freeze, decoder_layers, modalities = SCHEDULES[name]
    assert cfg.optimization.max_update == max_update
    assert (cfg.lr_scheduler.warmup_steps, cfg.lr_scheduler.decay_steps) == (warmup, decay)
    assert cfg.model.freeze_finetune_updates == freeze
    assert cfg.model.decoder_layers == decoder_layers
    assert list(cfg.task.modalities) == modalities
    assert cfg.criterion._name == "label_smoothed_cross_entropy" and cfg.criterion.label_smoothing == 0.1
    assert cfg.task.is_s2s and cfg.task.fine_tuning and list(cfg.task.labels) == ["wrd"]
    assert cfg.model.share_decoder_input_output_embed and cfg.model.decoder_normalize_before
    if "noise_ft" in name:  # the reference's AVSR configs (tiny_cpu_grid adds no noise)
        assert cfg.task.noise_prob == 0.25 and cfg.task.noise_snr == "0"


def test_an_undeclared_key_is_caught() -> None:
    cfg = OmegaConf.load(CONFIG_DIR / "base_lrs3_30h.yaml")
    cfg.task.input_modality = "image"  # the reference's yaml has this undeclared key
    with pytest.raises(ConfigKeyError):
        _check_declared(cfg)
