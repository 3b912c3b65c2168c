"""The README's main job in its quick mode, end to end: synthetic corpus -> dlib preprocessing ->
two k-means iterations of fairseq-hydra-train pretraining on real clips -> batch scoring ->
report -> localisation of the partial fakes -> robustness grid; then a rerun that reuses every stage.
The quick demo must also separate: its dubbed clips score below the real ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval import demo
from sf_fairseq.records import ABSENT, read_prepare_record

# Dubbed AUC (against all real-labelled clips) the quick demo clears: measured 0.951, 0.895 and
# 0.963 over seeds 0, 1 and 2 (docs/demo-results.md); chance is 0.5.
DUBBED_AUC_FLOOR = 0.70

STAGES = ("corpus", "prepare", "labels_1", "pretrain_1", "labels_2", "pretrain_2", "score", "localisation",
          "robustness")


def clips_in(manifest: Path) -> set[str]:
    """The clips of a manifest (a clip where the tracker split the face has one row per track)."""
    rows = manifest.read_text(encoding="utf-8").splitlines()[1:]
    return {row.split("\t")[0].split("__track")[0] for row in rows}


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reuses_them(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    assert demo.main(["--quick", "--work-dir", str(work)]) == 0

    records = {name: json.loads((work / "stages" / f"{name}.json").read_text()) for name in STAGES}
    settings = demo.DemoSettings.quick_run(0)
    prepared = records["prepare"]["result"]  # manifest rows: one per face track
    n_test_clips = settings.n_test * 8  # every source gives real + 7 fake categories
    assert prepared["test"] >= n_test_clips and prepared["train"] >= settings.n_train
    assert len(clips_in(work / "roi" / "test" / "test.tsv")) == n_test_clips
    # Every training clip trains; the valid split fairseq loads (validation is off) names two of them.
    assert len(clips_in(work / "roi" / "train" / "train.tsv")) == settings.n_train
    assert clips_in(work / "roi" / "train" / "valid.tsv") <= clips_in(work / "roi" / "train" / "train.tsv")
    assert len(clips_in(work / "roi" / "train" / "valid.tsv")) == demo.VALID_CLIPS

    # Both iterations trained from real clips only and wrote checkpoints; iteration 2 used
    # labels of the iteration-1 model.
    for name in ("model_1", "model_2"):
        assert (work / name / "checkpoint_last.pt").is_file()
    assert (work / "labels_2" / "dict.km.txt").read_text().count("\n") == settings.n_clusters_2
    # Both trained with the alignment criterion and the options the demo settings give.
    options = settings.alignment_options()
    assert set(options) == {"alignment_negatives", "alignment_weight", "alignment_max_shift",
                            "alignment_temperature", "alignment_clip_weight"}
    for log in ("pretrain_1.log", "pretrain_2.log"):
        config = (work / "logs" / log).read_text()
        assert "'_name': 'av_hubert_alignment'" in config
        for name, value in options.items():
            assert f"'{name}': {value}" in config, name
        assert f"'resnet_width': {settings.resnet_width}" in config  # the narrow lip front end
        # One ResNet pass an update: masked spans substituted in its output.
        assert f"'substitute_video_features': {settings.substitute_video_features}" in config
    # The fakes that change only the sound carry the real clip's video stream: its faces were
    # found once (inputs are taken in id order, so the dubbed clip is the first of them).
    for category in ("real", "offset_small", "offset_large"):
        record = read_prepare_record(work / "roi" / "test", f"{category}/s00000")
        assert record.video_shared_with == "dubbed/s00000", category
    assert read_prepare_record(work / "roi" / "test", "partial/s00000").video_shared_with is ABSENT
    train_manifest = (work / "roi" / "train" / "train.tsv").read_text()
    assert "/test/" not in train_manifest and "dubbed" not in train_manifest

    report = json.loads((work / "scores" / "report" / "report.json").read_text())
    assert report["n_used"] == n_test_clips and report["n_left_out"] == 0
    per_category = report["metrics"]["per_category"]
    assert set(per_category) == {"dubbed", "lipsync_other", "frozen_mouth", "smeared_mouth",
                                 "partial", "offset_large"}
    assert all(0.0 <= v["auc"] <= 1.0 for v in per_category.values())
    # Training on real clips alone aligned lips and speech: dubbed clips score below real ones.
    assert per_category["dubbed"]["n"] == settings.n_test
    assert per_category["dubbed"]["auc"] >= DUBBED_AUC_FLOOR, per_category["dubbed"]

    text = (work / "demo_report.md").read_text()
    assert "not a detector for real-world videos" in text
    assert "| dubbed |" in text and "Robustness" in text
    assert "against unshifted real clips" in text
    assert "95% bootstrap interval" in text and "| dubbed | " in text
    summary = records["score"]["result"]
    assert set(summary["auc_ci95"]) == {"all", *per_category}
    assert all(0.0 <= low <= high <= 1.0 for low, high in summary["auc_ci95"].values())
    localised = records["localisation"]["result"]
    assert localised["n_clips"] == settings.n_test  # one partial clip per source
    proposals = json.loads((work / "localisation" / "proposals.json").read_text())
    assert set(proposals) == {f"partial/s{i:05d}.mp4" for i in range(settings.n_test)}
    assert all(rows and all(len(row) == 3 for row in rows) for rows in proposals.values())
    assert 0.0 <= localised["mean_top_iou"] <= 1.0
    assert "## Partial fakes" in text and "AP@0.5" in text
    grid_list = (work / "robustness_rois.csv").read_text().splitlines()[1:]
    assert len(grid_list) == 2 * settings.robustness_sources  # real + dubbed of the first sources
    grid = json.loads((work / "robustness" / "results" / "report" / "report.json").read_text())
    assert set(grid["types"]) == {"gb", "jpeg"}
    assert all(row["auc"]["5"] is not None for row in grid["types"].values())
    assert grid["clean"]["auc"] is not None
    # The dubbed clips carry the real clips' ROI video: each cell perturbed it once, for both.
    copies = work / "robustness" / "copies" / "cells" / "gb_5" / "media"
    log = [json.loads(line) for line in (copies / "perturb.log.jsonl").read_text().splitlines()]
    copied = [r for r in log if "copied_from" in r]
    assert len(copied) == settings.robustness_sources
    assert all({Path(r["id"]).parts[-2], Path(r["copied_from"]).parts[-2]} == {"real", "dubbed"} for r in copied)

    # A rerun reuses every finished stage (nothing is recomputed).
    stamps = {name: (work / "stages" / f"{name}.json").stat().st_mtime_ns for name in STAGES}
    assert demo.main(["--quick", "--work-dir", str(work)]) == 0
    assert {name: (work / "stages" / f"{name}.json").stat().st_mtime_ns for name in STAGES} == stamps
