"""``sf-benchmark`` end to end with the tiny fixture checkpoint: a SpeechForensics list of ROI
clips, and an AV-Deepfake1M stand-in built from the synthetic corpus (raw talking faces, real,
partially and fully fake) through preparation, scoring, the report and the challenge files.
AUC and AP in the report equal scikit-learn's on the records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sf_fairseq.eval import benchmark
from sf_fairseq.eval.benchmarks import localisation
from sf_fairseq.eval.results import latest_records
from sf_test_media import write_clip

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


def assert_report_matches_sklearn(out: Path, n_used: int) -> dict:
    report = json.loads((out / "report" / "report.json").read_text())
    ok = [r for r in latest_records([out / "scores"]).values() if r["status"] == "ok" and r["label"] is not None]
    assert report["n_used"] == len(ok) == n_used
    labels = np.array([r["label"] for r in ok])
    scores = np.array([r["score"] for r in ok])
    overall = report["overall"]
    assert overall["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert overall["ap"] == pytest.approx(average_precision_score(labels == 0, -scores))
    lo, hi = overall["auc_ci"]
    assert lo <= hi
    return report


@pytest.mark.slow
def test_speechforensics_list(tmp_path: Path, shared_dir: Path) -> None:
    root = tmp_path / "mouths"
    for seed, (rel, n_frames) in enumerate([("original_videos/a/a_001", 40), ("original_videos/b/b_001", 30),
                                            ("dfl/20200803/a/a_b_1_0001", 35), ("fo/20200805/b/b_a_4_0001", 30)]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_clip(root / f"{rel}.mp4", root / f"{rel}.wav", n_frames, np.random.default_rng(seed))
    listing = tmp_path / "test_list.txt"
    listing.write_text("original_videos/a/a_001.mp4 1\noriginal_videos/b/b_001.mp4 1\n"
                       "dfl/20200803/a/a_b_1_0001.mp4 0\nfo/20200805/b/b_a_4_0001.mp4 0\nfo/x/y/gone.mp4 0\n")
    out = tmp_path / "run"
    args = ["--dataset", "speechforensics", "--list", str(listing), "--root", str(root), "--out", str(out),
            "--path", str(shared_dir / FIXTURE), "--cpu", "--num-workers", "0", "--no-progress", "--n-boot", "20"]
    assert benchmark.main(args) == 0
    report = assert_report_matches_sklearn(out, 4)
    assert set(report["per_category"]) == {"dfl", "fo"}
    assert report["left_out"] == {"missing_video": 1}
    assert "Comparable to: SpeechForensics' README AUC" in (out / "report" / "report.md").read_text()
    assert not (out / "challenge").exists()
    # A rerun scores nothing again; another checkpoint setting is refused by name.
    lines = (out / "scores" / "scores.jsonl").read_text().count("\n")
    assert benchmark.main(args) == 0
    assert (out / "scores" / "scores.jsonl").read_text().count("\n") == lines
    with pytest.raises(SystemExit, match="max_offset"):
        benchmark.main(args + ["--max-offset", "5"])

    # Two shards into another folder: the report waits for both and gives the same numbers.
    sharded = [a if a != str(out) else str(tmp_path / "sharded") for a in args]
    assert benchmark.main(sharded + ["--num-shards", "2", "--shard-id", "1"]) == 0
    assert not (tmp_path / "sharded" / "report").exists()
    assert benchmark.main(sharded + ["--num-shards", "2", "--shard-id", "0"]) == 0
    merged = json.loads((tmp_path / "sharded" / "report" / "report.json").read_text())
    for key in ("n_real", "n_fake", "auc", "ap", "eer"):
        assert merged["overall"][key] == pytest.approx(report["overall"][key], abs=1e-6)


def av1m_from_corpus(corpus_dir: Path, root: Path, n_sources: int) -> list[dict]:
    """An AV-Deepfake1M ``val`` split from synthetic clips: real -> real, partial (lips replaced
    inside a window) -> visual_modified with that window, dubbed (other speech) ->
    audio_modified over the whole clip."""
    from sf_fairseq.preprocess.synthetic import corpus_engine

    kinds = {"real": "real", "partial": "visual_modified", "dubbed": "audio_modified"}
    entries = []
    for index in range(n_sources):
        corpus_engine.generate_source(corpus_dir, "test", index, 7, (256, 256), True, tuple(kinds))
        for category, kind in kinds.items():
            clip = corpus_engine.clip_path(corpus_dir, "test", category, index)
            meta = json.loads(clip.with_suffix(".json").read_text())
            segments = {"real": [], "partial": [meta.get("window_seconds")], "dubbed": [[0.0, meta["duration"]]]}
            name = f"id{index:05d}/synth/{index:05d}/{category}.mp4"
            (root / "val" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(clip, root / "val" / name)
            entries.append({"file": name, "original": None, "split": "val", "modify_type": kind,
                            "audio_model": "espeak" if kind == "audio_modified" else "",
                            "fake_segments": segments[category],
                            "visual_fake_segments": segments[category] if kind == "visual_modified" else [],
                            "audio_fake_segments": segments[category] if kind == "audio_modified" else [],
                            "video_frames": meta["n_frames"], "audio_frames": meta["n_frames"] * 640})
    (root / "val_metadata.json").write_text(json.dumps(entries))
    return entries


@pytest.mark.slow
def test_avdeepfake1m_from_raw_videos(tmp_path: Path, shared_dir: Path) -> None:
    root = tmp_path / "AV-Deepfake1M"
    entries = av1m_from_corpus(tmp_path / "corpus", root, n_sources=2)
    out = tmp_path / "run"
    args = ["--dataset", "avdeepfake1m", "--root", str(root), "--out", str(out), "--path", str(shared_dir / FIXTURE),
            "--cpu", "--num-workers", "0", "--no-progress", "--n-boot", "20"]
    assert benchmark.main(args) == 0
    report = assert_report_matches_sklearn(out, len(entries))
    assert set(report["per_category"]) == {"visual_modified", "audio_modified"}
    assert (out / "prepared" / "status").is_dir()

    # Classification file: the SDK's format and convention (fake iff fake_segments non-empty).
    table = pd.read_csv(out / "challenge" / "classification.txt", header=None, sep=";")
    truth = {e["file"]: int(len(e["fake_segments"]) > 0) for e in entries}
    assert sorted(table[0]) == sorted(truth)
    sdk_auc = roc_auc_score([truth[f] for f in table[0]], table[1])
    assert sdk_auc == pytest.approx(report["overall"]["auc"])

    # Localisation: every file has proposals, and the report's AP/AR are those of the files.
    predictions = localisation.load_proposals(out / "challenge" / "localisation.json")
    assert set(predictions) == set(truth) and all(predictions.values())
    labels = localisation.load_labels(out / "challenge" / "metadata.json")
    assert [f for f, _ in labels] == [e["file"] for e in entries]
    again = localisation.ap_ar_1d(predictions, labels)
    loc = report["localisation"]
    assert loc["n_files"] == len(entries)
    assert {float(t): v for t, v in loc["ap"].items()} == pytest.approx(again["ap"], nan_ok=True)
    assert {int(n): v for n, v in loc["ar"].items()} == pytest.approx(again["ar"])
    assert "AP@0.5" in (out / "report" / "report.md").read_text()
