"""The pretraining YAMLs compose the way ``fairseq-hydra-train`` composes them: Hydra validates
each file against fairseq's ``FairseqConfig`` and every ``_name``d section is merged into its
registered dataclass in struct mode, so an undeclared key or a wrongly typed value fails here."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

import sf_fairseq  # noqa: F401  (registers the task, model and criteria, as common.user_dir does)
from fairseq.dataclass.initialize import add_defaults, hydra_init
from sf_fairseq.criteria.av_hubert_criterion import AVHubertCriterionConfig
from sf_fairseq.models.av_hubert import AVHubertConfig, AVHubertModel
from sf_fairseq.tasks.av_hubert_pretraining import AVHubertPretrainingConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "sf_fairseq" / "config" / "pretrain"
REQUIRED = {
    "task.data": "/data/lrs3",
    "task.label_dir": "/data/labels",
    "common.user_dir": "/repo/user_dir",
    "checkpoint.save_dir": "/ckpt",
}

BASE = {"encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12}
LARGE = {"encoder_layers": 24, "encoder_embed_dim": 1024, "encoder_ffn_embed_dim": 4096, "encoder_attention_heads": 16}
FEATURE_MASK = {"masking_type": "feature", "mask_prob_image": 0.8, "mask_length_image": 10,
                "mask_prob_audio": 0.8, "mask_length_audio": 10}
INPUT_MASK = {"masking_type": "input", "mask_prob_image": 0.3, "mask_length_image": 5,
              "mask_prob_audio": 0.8, "mask_length_audio": 10}
LRS3_DATA = {"max_sample_size": 500, "max_trim_sample_size": 500, "pad_audio": True, "random_crop": False}
VOX_DATA = {"max_sample_size": 2000, "max_trim_sample_size": 400, "pad_audio": False, "random_crop": True}
LRS3_OPT = {"lr": [0.0005], "max_update": 400_000, "warmup_updates": 32_000, "world_size": 32}
VOX_OPT = {"lr": [0.002], "max_update": 800_000, "warmup_updates": 64_000, "world_size": 32}


def _expect(size: dict, mask: dict, data: dict, opt: dict, labels: str, label_rate: float | None,
            modality_dropout: float, nomask: float = 0.0, noise: bool = False,
            selection: str = "same_seq") -> dict[str, Any]:
    return {"model": {**size, **mask, "modality_dropout": modality_dropout, "selection_type": selection},
            "task": {**data, "labels": [labels], "noise_prob": 0.25 if noise else 0.0},
            "opt": opt, "label_rate": label_rate, "nomask": nomask, "noise": noise}


# The §1.10 table of the reference: None = label_rate left to the command line (???).
EXPECTED: dict[str, dict[str, Any]] = {
    "base_lrs3_iter1": _expect(BASE, FEATURE_MASK, LRS3_DATA, LRS3_OPT, "mfcc", 100, 0.0),
    **{f"base_lrs3_iter{i}": _expect(BASE, FEATURE_MASK, LRS3_DATA, LRS3_OPT, "mfcc", 25, 0.0) for i in (2, 3, 4)},
    "base_lrs3_iter5": _expect(BASE, INPUT_MASK, LRS3_DATA, LRS3_OPT, "km", None, 0.5),
    "base_vox_iter1": _expect(BASE, FEATURE_MASK, VOX_DATA, VOX_OPT, "mfcc", 100, 0.0),
    "base_vox_iter2": _expect(BASE, FEATURE_MASK, VOX_DATA, VOX_OPT, "km", 25, 0.5),
    "base_vox_iter3": _expect(BASE, FEATURE_MASK, VOX_DATA, VOX_OPT, "km", 25, 0.5),
    "base_vox_iter4": _expect(BASE, FEATURE_MASK, VOX_DATA, VOX_OPT, "km", 25, 0.5, selection="same_other_seq"),
    "base_vox_iter5": _expect(BASE, INPUT_MASK, VOX_DATA, VOX_OPT, "km", None, 0.5),
    "large_lrs3_iter5": _expect(LARGE, INPUT_MASK, VOX_DATA,
                                {"lr": [0.002], "max_update": 400_000, "warmup_updates": 32_000, "world_size": 64},
                                "km", 25, 0.5, nomask=1.0),
    "large_vox_iter5": _expect(LARGE, INPUT_MASK, VOX_DATA,
                               {"lr": [0.002], "max_update": 600_000, "warmup_updates": 48_000, "world_size": 64},
                               "km", None, 0.5, nomask=1.0),
    "noise_base_vox_iter5": _expect(BASE, INPUT_MASK, VOX_DATA, VOX_OPT, "km", None, 0.5, noise=True),
    "noise_large_vox_iter5": _expect(LARGE, INPUT_MASK, VOX_DATA,
                                     {"lr": [0.002], "max_update": 600_000, "warmup_updates": 48_000, "world_size": 64},
                                     "km", None, 0.5, nomask=1.0, noise=True),
}


@pytest.fixture(scope="module", autouse=True)
def hydra_config_dir() -> Iterator[None]:
    """Hydra initialised on the config folder, as ``fairseq-hydra-train --config-dir`` does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hydra 1.1 compatibility notices, as fairseq-hydra-train runs
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.1"):
            yield


def compose_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """Compose ``{name}.yaml`` as fairseq-hydra-train does (validated against ``FairseqConfig``),
    then merge each section into its registered dataclass (fairseq's ``add_defaults``, struct
    mode)."""
    hydra_init(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = compose(config_name=name, overrides=list(overrides))
    add_defaults(cfg)
    return cfg


def _required_overrides(name: str) -> list[str]:
    overrides = [f"{key}={value}" for key, value in REQUIRED.items()]
    if EXPECTED[name]["label_rate"] is None:
        overrides.append("task.label_rate=25")
    if EXPECTED[name]["noise"]:
        overrides.append("task.noise_wav=/data/noise")
    return overrides


def test_every_published_config_is_checked() -> None:
    on_disk = {p.stem for p in CONFIG_DIR.glob("*.yaml")} - {"tiny_cpu"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_config_composes_into_the_dataclasses(name: str) -> None:
    expected = EXPECTED[name]
    raw = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    # Paths (and the label rate where the reference leaves it open) come from the user. (Merging
    # into the dataclasses replaces a ``???`` by the field's default; the task refuses those.)
    for key in ("data", "label_dir"):
        assert OmegaConf.is_missing(raw.task, key)
    assert OmegaConf.is_missing(raw.task, "label_rate") == (expected["label_rate"] is None)
    assert OmegaConf.is_missing(raw.task, "noise_wav") == expected["noise"]

    cfg = compose_config(name, _required_overrides(name))
    assert OmegaConf.get_type(cfg.model) is AVHubertConfig
    assert OmegaConf.get_type(cfg.task) is AVHubertPretrainingConfig
    assert OmegaConf.get_type(cfg.criterion) is AVHubertCriterionConfig
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    model, task = resolved["model"], resolved["task"]

    for key, value in expected["model"].items():
        assert model[key] == value, key
    for key, value in expected["task"].items():
        assert task[key] == value, key
    label_rate = expected["label_rate"] or 25
    assert task["label_rate"] == model["label_rate"] == label_rate
    # Settings common to every published recipe.
    assert (task["sample_rate"], task["stack_order_audio"], task["normalize"], task["image_aug"]) == (25, 4, True, True)
    assert task["min_sample_size"] == 5
    assert (model["final_dim"], model["untie_final_proj"], model["layer_norm_first"]) == (256, True, True)
    assert (model["audio_feat_dim"], model["feature_grad_mult"], model["encoder_layerdrop"]) == (104, 0.1, 0.05)
    assert model["modality_fuse"] == "concat" and model["audio_dropout"] == 0.5
    assert resolved["criterion"]["loss_weights"] == [10.0]
    assert resolved["criterion"]["pred_nomask_weight"] == expected["nomask"]
    assert resolved["optimizer"]["_name"] == "adam" and resolved["optimizer"]["weight_decay"] == 0.01
    assert resolved["lr_scheduler"]["_name"] == "polynomial_decay"
    assert resolved["lr_scheduler"]["warmup_updates"] == expected["opt"]["warmup_updates"]
    assert resolved["optimization"]["lr"] == expected["opt"]["lr"]
    assert resolved["optimization"]["max_update"] == expected["opt"]["max_update"]
    assert resolved["optimization"]["clip_norm"] == 10.0
    assert resolved["distributed_training"]["distributed_world_size"] == expected["opt"]["world_size"]
    assert resolved["dataset"]["max_tokens"] == 1000 and resolved["common"]["fp16"] is True
    if expected["noise"]:
        assert task["noise_snr"] == "0" and task["noise_wav"] == "/data/noise"


def test_iteration_one_predicts_100hz_mfcc_clusters_of_masked_features() -> None:
    cfg = compose_config("base_lrs3_iter1", _required_overrides("base_lrs3_iter1"))
    assert cfg.model.label_rate / cfg.task.sample_rate == 4  # 4 MFCC labels per 25 Hz video frame
    assert cfg.model.masking_type == "feature" and cfg.task.labels == ["mfcc"]


def _model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    kwargs.pop("_name")
    kwargs["latent_temp"] = tuple(kwargs["latent_temp"])
    return kwargs


def test_base_config_builds_the_reference_parameter_count() -> None:
    # Reference count with a 2000-cluster dictionary (+4 fairseq specials): 103,330,280.
    cfg = compose_config("base_vox_iter5", _required_overrides("base_vox_iter5"))
    model = AVHubertModel(AVHubertConfig(**_model_kwargs(cfg)), num_classes=[2004])
    assert model.mask_emb.shape == (104,)  # input masking: an audio-frame mask vector
    assert sum(p.numel() for p in model.parameters()) == 103_330_280


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("+model.wav_input=false", ConfigKeyError),  # the reference's undeclared keys
        ("+task.input_modality=image", ConfigKeyError),
        ("model.encoder_layers=twelve", ValidationError),
        ("task.stack_order_audio=4.5", ValidationError),
    ],
)
def test_undeclared_or_mistyped_keys_fail(override: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        compose_config("base_lrs3_iter5", [*_required_overrides("base_lrs3_iter5"), override])


@pytest.mark.parametrize(
    ("name", "left_out", "message"),
    [("base_vox_iter5", "task.label_rate=25", "label_rate"),
     ("noise_base_vox_iter5", "task.noise_wav=/data/noise", "noise_wav")],
)
def test_task_refuses_what_the_config_leaves_to_the_command_line(name: str, left_out: str, message: str) -> None:
    # Merging replaced the ``???`` by the dataclass default (label_rate -1 = sequence labels, no
    # noise list), which would train silently on the wrong targets or without noise.
    from fairseq import tasks

    cfg = compose_config(name, [o for o in _required_overrides(name) if o != left_out])
    with pytest.raises(ValueError, match=message):
        tasks.setup_task(cfg.task)
