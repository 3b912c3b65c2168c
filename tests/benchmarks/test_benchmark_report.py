"""The report table (AUC/AP per category equal scikit-learn's) and how prepare outcomes become
scorer inputs or failed records."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sf_fairseq.eval import benchmark
from sf_fairseq.eval.benchmark import eval_item, localisation_outputs, row_speech
from sf_fairseq.eval.benchmarks import FAKE, REAL, BenchmarkItem, ItemProblem
from sf_fairseq.eval.benchmarks import report
from sf_fairseq.eval.benchmarks.proposals import ProposalSettings
from sf_fairseq.records import ScoreRecord


def _items_and_records(seed: int = 0):
    rng = np.random.default_rng(seed)
    items, records = [], {}
    for k in range(60):
        label = REAL if k < 20 else FAKE
        category = "real" if label == REAL else ("audio_modified" if k < 40 else "visual_modified")
        item = BenchmarkItem(f"v{k}.mp4", f"/d/v{k}.mp4", label, category)
        items.append(item)
        score = rng.normal(0.6 if label == REAL else (0.4 if category == "audio_modified" else 0.55), 0.1)
        records[item.id] = {"id": item.id, "status": "ok", "score": float(score)}
    records["v59.mp4"] = {"id": "v59.mp4", "status": "failed", "error_type": "prepare_no_face", "score": None}
    return items, records


def test_table_equals_sklearn_overall_and_per_category():
    items, records = _items_and_records()
    problems = [ItemProblem("gone.mp4", "meta.json[3]", "missing_video", "no video", FAKE, "audio_modified")]
    summary = report.summarise("avdeepfake1m", items, problems, records, n_boot=50, seed=1)
    used = [it for it in items if records[it.id]["status"] == "ok"]
    labels = np.array([it.label for it in used])
    scores = np.array([records[it.id]["score"] for it in used])
    assert summary["n_used"] == 59
    assert summary["overall"]["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert summary["overall"]["ap"] == pytest.approx(average_precision_score(labels == 0, -scores))
    for category in ("audio_modified", "visual_modified"):
        keep = np.array([it.label == REAL or it.category == category for it in used])
        row = summary["per_category"][category]
        assert row["auc"] == pytest.approx(roc_auc_score(labels[keep], scores[keep]))
        assert row["n_real"] == 20 and row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]
    assert summary["not_scored"] == {"prepare_no_face": 1}
    assert summary["left_out"] == {"missing_video": 1}
    text = report.markdown(summary, {"split": "val"})
    assert "| audio_modified | 20 | 20 |" in text and "1 item(s) not scored: prepare_no_face" in text
    assert "Comparable to: Video-level AUC as the official SDK's auc()" in text


def test_one_class_gives_a_note_not_a_number():
    items = [BenchmarkItem("a.mp4", "/a.mp4", REAL, "real")]
    summary = report.summarise("lavdf", items, [], {"a.mp4": {"status": "ok", "score": 0.5}}, n_boot=0)
    assert summary["overall"]["note"] == "needs real and fake items"
    assert "| all | 1 | 0 | n/a |" in report.markdown(summary)


def test_prepare_outcomes(tmp_path: Path):
    item = BenchmarkItem("m/v.mp4", "/raw/m/v.mp4", FAKE, "Deepfakes")
    ok = {"status": "ok", "audio": "audio/m/v.wav", "tracks": [{"video": "video/m/v__track0.mp4"},
                                                             {"video": "video/m/v__track1.mp4"}]}
    evaluated, failure = eval_item(item, ok, tmp_path)
    assert failure is None
    assert (evaluated.video, evaluated.audio) == (
        str(tmp_path / "video/m/v__track0.mp4"), str(tmp_path / "audio/m/v.wav"))
    silent = {"status": "no_audio", "reason": "no audio stream", "tracks": [{"video": "video/m/v.mp4"}]}
    with_audio = BenchmarkItem("m/v.mp4", "/raw/m/v.mp4", FAKE, "Deepfakes", audio="/aud/v.wav")
    evaluated, failure = eval_item(with_audio, silent, tmp_path)
    assert failure is None and evaluated.audio == "/aud/v.wav"
    _, failure = eval_item(item, silent, tmp_path)
    assert failure == ("prepare_no_audio", "/raw/m/v.mp4: prepare gave no_audio: no audio stream")
    _, failure = eval_item(item, {"status": "no_face", "reason": "no face followed"}, tmp_path)
    assert failure[0] == "prepare_no_face"
    prepared = BenchmarkItem("x.mp4", "/m/x.mp4", REAL, "real", audio="/m/x.wav", prepared=True)
    assert eval_item(prepared, None, tmp_path) == (eval_item(prepared, None, tmp_path)[0], None)


def _agreement_record(item: BenchmarkItem, n: int = 100) -> ScoreRecord:
    x = np.full(n, 0.8)
    for start, end in item.fake_segments or ():
        x[int(start * 25):int(end * 25)] = 0.1
    return ScoreRecord.from_dict(
        {"id": item.id, "status": "ok", "score": float(x.mean()), "frame_agreement": x.tolist()})


def test_lavdf_challenge_files_and_localisation(tmp_path: Path):
    items = [BenchmarkItem("test/1.mp4", "/l/test/1.mp4", REAL, "real", split="test", fake_segments=()),
             BenchmarkItem("test/2.mp4", "/l/test/2.mp4", FAKE, "visual_modified", split="test",
                           fake_segments=((1.0, 2.0),)),
             BenchmarkItem("test/3.mp4", "/l/test/3.mp4", FAKE, "audio_modified", split="test",
                           fake_segments=((0.4, 0.8), (2.4, 3.2)))]
    records = {it.id: _agreement_record(it) for it in items}
    loc = localisation_outputs("lavdf", items, records, tmp_path, ProposalSettings())
    assert list(loc["ap"]) == [0.5, 0.75, 0.95] and list(loc["ar"]) == [100, 50, 20, 10]
    assert loc["n_files"] == 3 and loc["ap"][0.5] > 0.5 and loc["ar"][100] == pytest.approx(1.0)
    metadata = json.loads((tmp_path / "challenge" / "metadata.json").read_text())
    assert metadata[2] == {"file": "test/3.mp4", "fake_periods": [[0.4, 0.8], [2.4, 3.2]]}
    lines = (tmp_path / "challenge" / "classification.txt").read_text().splitlines()
    assert [line.split(";")[0] for line in lines] == [it.id for it in items]
    # Only real files: AP has no positive to find (NaN in the SDK), null here.
    reals = localisation_outputs("lavdf", items[:1], records, tmp_path / "reals", ProposalSettings())
    assert reals["ap"][0.5] is None and reals["score"] is None


def test_unlabelled_split_gets_challenge_files_only(tmp_path: Path):
    item = BenchmarkItem("a/b/0.mp4", "/t/a/b/0.mp4", None, "unlabelled", split="testA")
    records = {item.id: _agreement_record(item)}
    assert localisation_outputs("avdeepfake1m", [item], records, tmp_path, ProposalSettings()) is None
    assert json.loads((tmp_path / "challenge" / "localisation.json").read_text())["a/b/0.mp4"]
    assert not (tmp_path / "challenge" / "metadata.json").exists()


def test_speech_gating_pairs_rows_with_their_audio_frames(tmp_path: Path, monkeypatch):
    assert row_speech(np.array([0, 1, 1, 0, 0], bool), 1, 5).tolist() == [True, True, False, False, False]
    assert row_speech(np.array([0, 1, 1, 0, 0], bool), -2, 5).tolist() == [False, False, False, True, True]
    item = BenchmarkItem("v.mp4", "/v.mp4", FAKE, "audio_modified", fake_segments=((1.0, 2.0),))
    record = replace(_agreement_record(item), audio=str(tmp_path / "v.wav"), best_offset=0)
    silent = np.ones(100, dtype=bool)
    silent[20:60] = False  # the disagreeing stretch is silence

    class Analysis:
        speech = silent

    monkeypatch.setattr(benchmark.speech, "analyse_wav", lambda path, settings, max_seconds: Analysis)
    gated = localisation_outputs("avdeepfake1m", [item], {item.id: record}, tmp_path, ProposalSettings(),
                                 benchmark.speech.SpeechSettings())
    rows = json.loads((tmp_path / "challenge" / "localisation.json").read_text())["v.mp4"]
    assert [row[1:] for row in rows] == [[0.0, 4.0]]  # only the whole clip is left
    assert gated["speech_gating"]["ungated"] == 0
    ungated = localisation_outputs("avdeepfake1m", [item], {item.id: record}, tmp_path / "plain", ProposalSettings())
    assert ungated["speech_gating"] is None
    assert ungated["ar"][50] > gated["ar"][50]  # ungated, the stretch itself is proposed
