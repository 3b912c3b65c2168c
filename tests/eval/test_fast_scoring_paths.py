"""The real scoring paths on the tiny fixture checkpoint, in the fast set: load_scorer, sf-score-batch
with its default loader processes and its one-clip-at-a-time fallback, sf-score-video on an ROI
clip, and sf-report on the batch's records. The clips are small (20-28 frames) so that the whole
module stays within a few seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sf_fairseq.eval import batch_engine, metrics_cli, pipeline, score_batch
from sf_fairseq.eval import score_video as sv
from sf_fairseq.eval.encode import load_clip
from sf_fairseq.eval.results import latest_records

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"
CLIPS = {"real/a.mp4": (20, 1), "fake/b.mp4": (24, 0), "real/c.mp4": (28, 1)}  # id: (frames, label)


@pytest.fixture
def listing(tmp_path: Path, roi_clip) -> Path:
    for seed, (name, (frames, _)) in enumerate(CLIPS.items()):
        roi_clip(tmp_path / "mouths" / name, n_frames=frames, seed=seed)
    path = tmp_path / "test_list.txt"
    path.write_text("".join(f"{name} {label}\n" for name, (_, label) in CLIPS.items()), encoding="utf-8")
    return path


def direct_score(checkpoint: Path, video: Path) -> float:
    """The paper's score of one clip through load_scorer, as the commands load it (precision auto)."""
    scorer = pipeline.load_scorer(checkpoint, "cpu", precision="auto")
    clip = load_clip(str(video), str(video.with_suffix(".wav")), scorer.settings, scorer.options.max_seconds,
                     scorer.options.fps)
    return scorer.score_clips([clip])[0].score


def test_score_batch_loader_processes_fallback_and_report(tmp_path: Path, shared_dir: Path, listing: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = shared_dir / FIXTURE
    expected = direct_score(checkpoint, tmp_path / "mouths" / "real/a.mp4")

    workers: list[int] = []
    data_loader = batch_engine.DataLoader

    def recording_loader(*args, **kwargs):
        workers.append(kwargs["num_workers"])
        return data_loader(*args, **kwargs)

    sizes: list[int] = []
    score_clips = pipeline.Scorer.score_clips

    def out_of_memory_on_batches(self, clips):
        sizes.append(len(clips))
        if len(clips) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return score_clips(self, clips)

    monkeypatch.setattr(batch_engine, "DataLoader", recording_loader)
    monkeypatch.setattr(pipeline.Scorer, "score_clips", out_of_memory_on_batches)
    out = tmp_path / "results"
    rc = score_batch.main(["--path", str(checkpoint), "--list", str(listing), "--data-root", str(tmp_path / "mouths"),
                           "--results-path", str(out), "--cpu", "--no-progress", "--batch-size", "3"])
    assert rc == 0
    assert workers == [score_batch.build_parser().get_default("num_workers")] and workers[0] > 0
    assert sizes == [3, 1, 1, 1]  # the batch failed, then each clip alone
    records = latest_records([out])
    assert set(records) == set(CLIPS) and all(r.status == "ok" for r in records.values())
    assert records["real/a.mp4"].score == pytest.approx(expected, abs=1e-5)
    assert all(math.isfinite(r.score) and len(r.curve) == 31 for r in records.values())

    report = tmp_path / "report"
    assert metrics_cli.main([str(out), "--out", str(report), "--n-boot", "0"]) == 0
    summary = json.loads((report / "report.json").read_text())
    assert summary["n_used"] == 3


def test_score_video_on_an_roi_clip(tmp_path: Path, shared_dir: Path, listing: Path) -> None:
    checkpoint = shared_dir / FIXTURE
    video = tmp_path / "mouths" / "fake/b.mp4"
    out = tmp_path / "out"
    assert sv.main([str(video), "--checkpoint", str(checkpoint), "--cpu", "--out", str(out)]) == 0
    record = json.loads((out / "b.score.json").read_text())
    assert record["input_kind"] == "roi"
    assert record["score"] == pytest.approx(direct_score(checkpoint, video), abs=1e-5)
