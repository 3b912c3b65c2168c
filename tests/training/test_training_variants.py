"""Model configurations beyond the published ones train a step through fairseq's Trainer (task
from a generated corpus, model via ``task.build_model``, the ``av_hubert`` criterion), save a
fairseq checkpoint, and load back through ``load_model_ensemble_and_task`` with equal outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from fairseq import checkpoint_utils, tasks
from fairseq.trainer import Trainer

from sf_test_media import write_corpus
from sf_training_helpers import add_label_set, compose_config

# The tests seed torch's global RNG (model initialisation and the criteria draw from it).
pytestmark = pytest.mark.usefixtures("restore_torch_rng")

KM_CLASSES, MFCC_CLASSES = 10, 20  # + 4 fairseq specials in each dictionary
FRAMES = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training clips with km labels (10 clusters) and, in labels25/ and labels100/, km and
    mfcc label sets (20 clusters) at 25 and 100 Hz."""
    root = write_corpus(tmp_path_factory.mktemp("corpus"), {"train": 4, "valid": 2}, n_clusters=KM_CLASSES,
                        frames=(20, 28))
    for rate in (25, 100):
        add_label_set(root, root / f"labels{rate}", "km", KM_CLASSES, rate, seed=rate)
        add_label_set(root, root / f"labels{rate}", "mfcc", MFCC_CLASSES, rate, seed=rate + 1)
    return root


def train_one_step(corpus: Path, save_dir: Path, labels: list[str], label_rate: int,
                   overrides: list[str]) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """Tiny config + overrides: one update on a 2-clip batch, saved as checkpoint_last.pt.
    Returns (trainer, task, the batch, the step's logging output)."""
    cfg = compose_config("tiny_cpu", [
        f"task.data={corpus}", f"task.label_dir={corpus / f'labels{label_rate}'}",
        f"task.labels=[{','.join(labels)}]", f"task.label_rate={label_rate}",
        f"++task.max_trim_sample_size={FRAMES}", "++task.image_crop_size=44",  # a cheap ResNet pass
        f"checkpoint.save_dir={save_dir}", "model.encoder_layerdrop=0.0",
        "lr_scheduler.warmup_updates=0",  # with warmup, fairseq's first update has lr 0
        *overrides,
    ])
    torch.manual_seed(0)
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    dataset = task.dataset("train")
    sample = dataset.collater([dataset[0], dataset[1]])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = trainer.train_step([sample])
    assert trainer.get_num_updates() == 1
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "label_embs_concat" in changed and "encoder.layers.0.fc1.weight" in changed
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    save_dir.mkdir(parents=True, exist_ok=True)
    trainer.consolidate_optimizer()  # as fairseq's checkpoint_utils.save_checkpoint does first
    trainer.save_checkpoint(str(save_dir / "checkpoint_last.pt"), {})
    return trainer, task, sample, log


def outputs(model: Any, sample: dict[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Unmasked logits of every label set and video-only features, in eval mode."""
    model.eval()
    with torch.no_grad():
        net = model(**sample["net_input"], target_list=sample["target_list"], mask=False)
        video, _ = model.extract_finetune({"video": sample["net_input"]["source"]["video"], "audio": None},
                                          sample["net_input"]["padding_mask"])
    return net["logit_u_list"], video


VARIANTS = {
    "add_fusion": (["km"], 25, ["model.modality_fuse=add"]),
    "post_ln": (["km"], 25, ["model.layer_norm_first=false"]),
    "tied_projection": (["km", "mfcc"], 25, ["model.untie_final_proj=false"]),
    "two_label_sets": (["km", "mfcc"], 25, []),
    "feature_masking_100hz_other_dictionary": (["mfcc"], 100, [
        "model.masking_type=feature", "model.mask_prob_image=0.5", "model.mask_length_image=4",
        "model.mask_prob_audio=0.5", "model.mask_length_audio=4"]),
    "same_other_seq": (["km"], 25, ["model.selection_type=same_other_seq"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_trains_saves_and_loads_back(variant: str, corpus: Path, tmp_path: Path) -> None:
    labels, rate, overrides = VARIANTS[variant]
    trainer, task, sample, log = train_one_step(corpus, tmp_path / "ckpt", labels, rate, overrides)
    model = trainer.model
    n_classes = {"km": KM_CLASSES + 4, "mfcc": MFCC_CLASSES + 4}
    expected_classes = [n_classes[label] for label in labels]
    assert [len(d) for d in task.dictionaries] == expected_classes
    # The step's logged metrics have one masked-prediction loss and accuracy per label set.
    assert all(f"loss_m_{i}" in log and f"correct_m_{i}" in log for i in range(len(labels)))
    assert f"loss_m_{len(labels)}" not in log and log["loss_features_pen"] > 0

    models, saved_cfg, loaded_task = checkpoint_utils.load_model_ensemble_and_task(
        [str(tmp_path / "ckpt" / "checkpoint_last.pt")])
    loaded = models[0]
    assert [len(d) for d in loaded_task.dictionaries] == expected_classes
    assert loaded.label_embs_concat.shape == (sum(expected_classes), 32)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    logits, video = outputs(model, sample)
    loaded_logits, loaded_video = outputs(loaded, sample)
    assert [x.size(-1) for x in logits] == expected_classes
    for a, b in zip(logits, loaded_logits):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(video, loaded_video, rtol=0, atol=1e-6)

    proj_out = loaded.final_proj.out_features
    if variant == "add_fusion":
        assert loaded.post_extract_proj is None and loaded.layer_norm.normalized_shape == (64,)
    else:
        assert loaded.post_extract_proj.in_features == 128
    if variant == "tied_projection":
        assert proj_out == 32  # one projection shared by both label sets
    else:
        assert proj_out == 32 * len(labels)
    if variant == "post_ln":
        # Post-LN: every block ends in a LayerNorm, so a block's output is normalised per frame.
        assert not loaded.encoder.layer_norm_first
        with torch.no_grad():
            block1, mask = loaded.extract_finetune({"video": sample["net_input"]["source"]["video"], "audio": None},
                                                   sample["net_input"]["padding_mask"], output_layer=1)
        assert block1.mean(-1).abs().max() < 0.02 and (block1.std(-1, unbiased=False) - 1).abs().max() < 0.05
    if variant == "feature_masking_100hz_other_dictionary":
        assert loaded.mask_emb.shape == (64,) and loaded.feat2tar_ratio == 4
        assert sample["target_list"][0].size(1) == 4 * sample["net_input"]["source"]["video"].size(2)
    else:
        assert loaded.mask_emb.shape == (104,)
    assert saved_cfg.model.selection_type == ("same_other_seq" if variant == "same_other_seq" else "same_seq")
