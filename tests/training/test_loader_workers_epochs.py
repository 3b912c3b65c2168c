"""Loader workers see the epoch: fairseq 0.12 keeps a run's workers (and their copies of the
dataset) alive across epochs, and the dataset seeds each item's augmentation with the epoch.
Before the epoch was shared with them, every epoch after the first was augmented like the first
with ``num_workers > 0`` (the published configs use 6), and the quick demo's dubbed AUC fell
from 0.92 to 0.61 with one worker."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fairseq import tasks

from sf_test_media import write_corpus
from sf_training_helpers import compose_config

EPOCHS = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"), {"train": 6, "valid": 2}, frames=(20, 28))


def augmented_videos(corpus: Path, num_workers: int) -> list[dict[int, str]]:
    """Per epoch: item index -> digest of its video as the training batches hold it (random
    crop and flip of ``image_aug``)."""
    cfg = compose_config("tiny_cpu", [
        f"task.data={corpus}", f"task.label_dir={corpus}", "task.labels=[km]", "task.label_rate=25",
        "task.image_crop_size=44", f"dataset.num_workers={num_workers}",
    ])
    assert cfg.task.image_aug
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train")
    dataset = task.dataset("train")
    # As fairseq-hydra-train builds it: the iterator (and with workers, the worker processes)
    # is made once and reused for every epoch.
    batches = task.get_batch_iterator(dataset, max_sentences=2, seed=1, num_workers=num_workers, epoch=1)
    epochs = []
    for _ in range(EPOCHS):
        videos = {}
        for batch in batches.next_epoch_itr(shuffle=True):
            for row, index in enumerate(batch["id"].tolist()):
                video = batch["net_input"]["source"]["video"][row]
                videos[index] = hashlib.sha256(video.numpy().tobytes()).hexdigest()
        epochs.append(videos)
    return epochs


def test_every_epoch_is_augmented_anew_with_and_without_workers(corpus: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "")  # fairseq sets it when it starts workers; restored after
    in_process = augmented_videos(corpus, num_workers=0)
    with_worker = augmented_videos(corpus, num_workers=1)
    assert len(in_process[0]) == 6
    for epoch in range(1, EPOCHS):
        changed = [i for i in in_process[0] if in_process[epoch][i] != in_process[0][i]]
        assert len(changed) >= 4, f"epoch {epoch + 1} repeats the first epoch's augmentation"
    assert with_worker == in_process  # the same items, crops and flips, epoch by epoch


def test_a_dataset_loaded_for_an_epoch_starts_at_it(corpus: Path) -> None:
    """A resumed run loads its data for the epoch it resumes (fairseq's ``load_dataset(epoch=)``)
    and may start workers before ``set_epoch``: the dataset already holds that epoch."""
    cfg = compose_config("tiny_cpu", [f"task.data={corpus}", f"task.label_dir={corpus}", "task.labels=[km]",
                                      "task.label_rate=25"])
    task = tasks.setup_task(cfg.task)
    task.load_dataset("train", epoch=3)
    assert task.dataset("train").epoch == 3
    task.load_dataset("train")
    assert task.dataset("train").epoch == 1
