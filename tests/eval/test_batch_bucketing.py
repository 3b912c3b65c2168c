"""Batches of similar length: scoring and transcription group clips by length, scores do not
change with batching, a failing batch is scored one clip at a time, loader processes work."""

from __future__ import annotations

from pathlib import Path

import pytest

from sf_fairseq.data.manifest import ManifestItem, write_manifest
from sf_fairseq.eval import batch_engine, lists
from sf_fairseq.eval.encode import InputSettings, StreamEncoder
from sf_fairseq.data.batching import BatchLimits, length_batches
from sf_fairseq.eval.pipeline import Scorer
from sf_fairseq.eval.results import ResultWriter, latest_records
from sf_fairseq.eval.transcriber import transcribe_manifest


def test_length_batches_group_similar_lengths_under_the_limits() -> None:
    # One 50 s clip among three 6 s ones: the long one goes alone, not padding the others.
    assert length_batches([150, 1250, 150, 150], BatchLimits()) == [[0, 2, 3], [1]]
    assert length_batches([150, 1250, 150, 150], BatchLimits(max_padding=None)) == [[0, 2, 3, 1]]
    assert length_batches([30, 10, 20, 10, 11], BatchLimits(batch_size=2, max_padding=None)) == [[1, 3], [4, 2], [0]]
    assert length_batches([10, 10, 10, 10], BatchLimits(max_frames=25)) == [[0, 1], [2, 3]]
    assert length_batches([], BatchLimits()) == []


@pytest.fixture
def mixed(tmp_path: Path, roi_clip) -> list[lists.EvalItem]:
    """Clips of 12, 60, 12 and 13 frames, and a missing one, in that list order."""
    root = tmp_path / "mouths"
    for name, frames, seed in (("a", 12, 0), ("long", 60, 1), ("b", 12, 2), ("c", 13, 3)):
        roi_clip(root / f"{name}.mp4", n_frames=frames, seed=seed)
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4 1\nlong.mp4 0\nmissing.mp4 1\nb.mp4 1\nc.mp4 0\n", encoding="utf-8")
    return lists.read_list(listing, str(root))


def _score(items, scorer, path: Path, **kwargs) -> dict[str, dict]:
    with ResultWriter(path) as writer:
        counts = batch_engine.score_items(items, scorer, writer, progress=False, **kwargs)
    assert counts == {"skipped": 0, "scored": 4, "failed": 1}
    return latest_records([path])


def test_scoring_batches_clips_of_similar_length(tmp_path: Path, mixed, stand_in) -> None:
    scorer = Scorer(StreamEncoder(stand_in))
    records = _score(mixed, scorer, tmp_path / "bucketed.jsonl")
    video_calls = [call["mask"].shape for call in stand_in.calls if call["stream"] == "video"]
    assert video_calls == [(3, 13), (1, 60)]  # the short clips together, the long one alone
    assert records["missing.mp4"]["status"] == "failed"

    single = _score(mixed, Scorer(StreamEncoder(stand_in)), tmp_path / "single.jsonl", batch_size=1)
    for key, record in records.items():
        assert record["score"] == pytest.approx(single[key]["score"], abs=1e-6)
        assert record["curve"] == pytest.approx(single[key]["curve"], abs=1e-6)


def test_failed_batch_is_scored_one_clip_at_a_time(tmp_path: Path, mixed, stand_in) -> None:
    scorer = Scorer(StreamEncoder(stand_in))
    real_score = scorer.score_clips
    sizes = []

    def fragile(clips):
        sizes.append(len(clips))
        if len(clips) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        if clips[0].video.shape[0] == 60:
            raise ValueError("this clip cannot be scored")
        return real_score(clips)

    scorer.score_clips = fragile
    with ResultWriter(tmp_path / "scores.jsonl") as writer:
        counts = batch_engine.score_items(mixed, scorer, writer, progress=False)
    assert counts == {"skipped": 0, "scored": 3, "failed": 2}
    assert sizes == [3, 1, 1, 1, 1]
    records = latest_records([tmp_path / "scores.jsonl"])
    assert records["long.mp4"]["status"] == "failed" and records["long.mp4"]["error_type"] == "ValueError"
    del scorer.score_clips
    single = _score(mixed, scorer, tmp_path / "single.jsonl", batch_size=1)
    for key in ("a.mp4", "b.mp4", "c.mp4"):
        assert records[key]["status"] == "ok" and records[key]["score"] == pytest.approx(single[key]["score"], abs=1e-6)


def test_loader_processes_give_the_same_records(tmp_path: Path, mixed, stand_in) -> None:
    scorer = Scorer(StreamEncoder(stand_in))
    in_process = _score(mixed, scorer, tmp_path / "in_process.jsonl", num_workers=0)
    workers = _score(mixed, scorer, tmp_path / "workers.jsonl", num_workers=2)
    assert workers.keys() == in_process.keys()
    for key, record in workers.items():
        assert {k: v for k, v in record.to_dict().items() if k != "curve"} == {
            k: v for k, v in in_process[key].to_dict().items() if k != "curve"}


class _RecordingTranscriber:
    """Stands in for :class:`.transcriber.Transcriber`: names each clip by its length."""

    settings = InputSettings()

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def transcribe(self, clips, stream):
        lengths = [clip.video.shape[0] for clip in clips]
        if stream == "video":
            self.batches.append(lengths)
        return [f"{stream} {n}" for n in lengths]


def test_manifest_transcription_batches_by_length_and_keeps_manifest_order(tmp_path: Path, roi_clip) -> None:
    frames = {"a": 12, "long": 60, "b": 12, "c": 13}
    rows = []
    for name, n in frames.items():
        video, wav = roi_clip(tmp_path / f"{name}.mp4", n_frames=n)
        rows.append(ManifestItem(name, video.name, wav.name, n, n * 640))
    write_manifest(tmp_path / "test.tsv", str(tmp_path), rows)
    transcriber = _RecordingTranscriber()
    records = transcribe_manifest(transcriber, tmp_path / "test.tsv", ["video", "audio"],
                                  references=["ra", "rl", "rb", "rc"])
    assert transcriber.batches == [[12, 12, 13], [60]]
    assert [r["id"] for r in records] == list(frames)
    assert [r["video"] for r in records] == [f"video {n}" for n in frames.values()]
    assert [r["ref"] for r in records] == ["ra", "rl", "rb", "rc"]
