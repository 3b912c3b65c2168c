"""Batch scoring: every list line gets a record, resume, batching, and the CLI end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sf_fairseq.eval import batch_engine, lists, metrics_cli, score_batch
from sf_fairseq.eval.encode import ClipInputs, InputSettings, StreamEncoder
from sf_fairseq.eval.pipeline import Scorer
from sf_fairseq.eval.results import ResultWriter, latest_records

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


def _clip(t: int) -> ClipInputs:
    return ClipInputs(np.zeros((t, 88, 88), np.float32), np.zeros((t, 104), np.float32))


def test_model_batches_respect_batch_size_and_max_frames() -> None:
    loaded = [(0, _clip(10), None, None), (1, None, "OSError", "x"), (2, _clip(10), None, None),
              (3, _clip(30), None, None), (4, _clip(5), None, None), (5, _clip(5), None, None)]
    got = [([i for i, _ in b], [f[0] for f in fails])
           for b, fails in batch_engine.model_batches(iter(loaded), batch_size=2, max_frames=None)]
    assert got == [([], [1]), ([0, 2], []), ([3, 4], []), ([5], [])]
    got = [[i for i, _ in b] for b, _ in batch_engine.model_batches(iter(loaded), batch_size=8, max_frames=40)]
    assert got == [[], [0, 2], [3], [4, 5]]  # 3 x 30 > 40: the 30-frame clip goes alone


@pytest.fixture
def dataset(tmp_path: Path, envelope_clip) -> tuple[Path, Path]:
    """A mouth folder with spaces in paths, and a CSV list pairing videos with audio, including
    a swapped pair, a missing video, a missing wav, an unreadable video and a stereo wav."""
    root = tmp_path / "mouths"
    rng = np.random.default_rng(5)
    for name in ("RealVideo-RealAudio/Asian (East)/a", "RealVideo-RealAudio/x/b", "FakeVideo-RealAudio/y/c"):
        envelope_clip(root / f"{name}.mp4", rng.uniform(0, 1, 75))
    (root / "broken").mkdir()
    (root / "broken" / "garbage.mp4").write_bytes(b"not a video" * 50)
    shutil.copy(root / "RealVideo-RealAudio/x/b.wav", root / "broken" / "garbage.wav")
    envelope_clip(root / "stereo" / "s.mp4", rng.uniform(0, 1, 30))
    sf.write(root / "stereo" / "s.wav", np.zeros((16000, 2), np.int16), 16000)
    lines = [
        "path,label,category,audio,id",
        '"RealVideo-RealAudio/Asian (East)/a.mp4",1,,,',
        "RealVideo-RealAudio/x/b.mp4,1,,,",
        "FakeVideo-RealAudio/y/c.mp4,0,,,",
        "FakeVideo-RealAudio/y/c.mp4,0,swapped,RealVideo-RealAudio/x/b.wav,c-swapped",
        "gone/missing.mp4,0,,,",
        "broken/garbage.mp4,0,,,",
        "stereo/s.mp4,1,,,",
    ]
    listing = tmp_path / "list.csv"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, listing


def _envelope_scorer(envelope_encoder) -> Scorer:
    return Scorer(StreamEncoder(envelope_encoder), InputSettings(normalize=False))


def test_every_line_gets_a_record_and_resume(tmp_path: Path, dataset, envelope_encoder) -> None:
    root, listing = dataset
    items = lists.read_list(listing, str(root))
    scorer = _envelope_scorer(envelope_encoder)
    out = tmp_path / "scores.jsonl"
    with ResultWriter(out) as writer:
        counts = batch_engine.score_items(items, scorer, writer, batch_size=3, progress=False)
    assert counts == {"skipped": 0, "scored": 4, "failed": 3}
    records = latest_records([out])
    assert sorted(records) == sorted(i.id for i in items)
    status = {k: (r["status"], r["error_type"]) for k, r in records.items()}
    assert status["gone/missing.mp4"] == ("failed", "VideoReadError")
    assert status["broken/garbage.mp4"] == ("failed", "VideoReadError")
    assert status["stereo/s.mp4"] == ("failed", "AudioFormatError")
    assert "stereo/s.wav" in records["stereo/s.mp4"]["error"]
    own = records["FakeVideo-RealAudio/y/c.mp4"]
    swapped = records["c-swapped"]
    assert own["score"] > 0.6 > 0.4 > swapped["score"]
    assert own["best_offset"] == 0 and len(own["curve"]) == 31 and own["n_frames"] == 75
    assert records["RealVideo-RealAudio/Asian (East)/a.mp4"]["category"] == "RealVideo-RealAudio"

    # Batching does not change scores.
    single = tmp_path / "single.jsonl"
    with ResultWriter(single) as writer:
        batch_engine.score_items(items, scorer, writer, batch_size=1, progress=False)
    for key, rec in latest_records([single]).items():
        if rec["status"] == "ok":
            assert rec["score"] == pytest.approx(records[key]["score"], abs=1e-6)

    # Rerun: finished items are skipped, failed ones retried; a fixed file now scores.
    (root / "gone").mkdir()
    shutil.copy(root / "RealVideo-RealAudio/x/b.mp4", root / "gone/missing.mp4")
    shutil.copy(root / "RealVideo-RealAudio/x/b.wav", root / "gone/missing.wav")
    with ResultWriter(out) as writer:
        counts = batch_engine.score_items(items, scorer, writer, batch_size=3, progress=False)
    assert counts == {"skipped": 4, "scored": 1, "failed": 2}
    assert latest_records([out])["gone/missing.mp4"]["status"] == "ok"
    assert len(out.read_text().splitlines()) == 7 + 3


@pytest.mark.slow
def test_cli_end_to_end_with_the_fixture_checkpoint(tmp_path: Path, shared_dir: Path, roi_clip, capsys) -> None:
    root = tmp_path / "mouths"
    roi_clip(root / "real/videos/001 a.mp4", n_frames=40, seed=0)
    roi_clip(root / "real/videos/002.mp4", n_frames=30, seed=1)
    roi_clip(root / "fake/Deepfakes/videos/001_002.mp4", n_frames=35, seed=2)
    roi_clip(root / "fake/FaceSwap/videos/003_004.mp4", n_frames=20, seed=3)
    (root / "fake/FaceSwap/videos/bad.mp4").write_bytes(b"\0" * 100)
    shutil.copy(root / "real/videos/002.wav", root / "fake/FaceSwap/videos/bad.wav")  # the video is what fails
    listing = tmp_path / "test_list.txt"
    listing.write_text(
        "real/videos/001 a.mp4 1\nreal/videos/002.mp4 1\nfake/Deepfakes/videos/001_002.mp4 0\n"
        "fake/FaceSwap/videos/003_004.mp4 0\nfake/FaceSwap/videos/bad.mp4 0\nmissing/x.mp4 1\n",
        encoding="utf-8",
    )
    ckpt = str(shared_dir / FIXTURE)
    out = tmp_path / "results"
    common = ["--path", ckpt, "--list", str(listing), "--data-root", str(root), "--num-workers", "0",
              "--cpu", "--no-progress", "--batch-size", "3"]
    rc = score_batch.main(common + ["--results-path", str(out), "--report", "--n-boot", "50"])
    assert rc == 1  # two items could not be scored
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(records) == 6
    by_id = {r["id"]: r for r in records}
    assert by_id["missing/x.mp4"]["status"] == "failed"
    assert by_id["fake/FaceSwap/videos/bad.mp4"]["error_type"] == "VideoReadError"
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 4 and all(len(r["curve"]) == 31 and -15 <= r["best_offset"] <= 15 for r in ok)
    assert by_id["real/videos/001 a.mp4"]["n_frames"] == 40
    assert {r["category"] for r in ok} == {"real", "Deepfakes", "FaceSwap"}
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["n_used"] == 4 and report["left_out"] == {"failed: VideoReadError": 2}
    assert set(report["metrics"]["per_category"]) == {"Deepfakes", "FaceSwap"}
    assert (out / "report" / "roc.png").is_file() and (out / "report" / "hist.png").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["checkpoint"] == ckpt and run["layer"] is None
    assert "4 ok in total" in capsys.readouterr().out

    # Rerun skips what is done; --layer and sharding write separate, complete shards.
    assert score_batch.main(common + ["--results-path", str(out)]) == 1
    assert json.loads((out / "summary.json").read_text())["skipped"] == 4
    sharded = tmp_path / "sharded"
    for shard in (0, 1):
        score_batch.main(common + ["--results-path", str(sharded), "--num-shards", "2", "--shard-id", str(shard),
                                   "--layer", "1", "--bf16"])
    merged = latest_records([sharded])
    assert set(merged) == set(by_id)
    assert merged["real/videos/002.mp4"]["score"] != pytest.approx(by_id["real/videos/002.mp4"]["score"], abs=1e-4)

    # Calibration on the reals, then a report at that threshold.
    cal = tmp_path / "cal.json"
    assert metrics_cli.main([str(out), "--calibrate-fpr", "0.5", "--calibration-out", str(cal),
                             "--out", str(tmp_path / "rep"), "--n-boot", "0"]) == 0
    saved = json.loads(cal.read_text())
    assert saved["n_real"] == 2 and saved["provenance"]["checkpoint"] == ckpt
    assert metrics_cli.main(
        [str(out), "--calibration", str(cal), "--out", str(tmp_path / "rep2"), "--n-boot", "0"]) == 0
    rep2 = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert rep2["metrics"]["at_threshold"]["threshold"] == saved["threshold"]
    assert rep2["metrics"]["at_threshold"]["real_called_fake"] <= 0.5
