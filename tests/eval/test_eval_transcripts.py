"""Lips-only vs audio-only transcripts in the scoring commands: record fields, batch fallback,
resume, failures, the report section and both CLIs (on the reference VSR fixture, whose outputs
are random-ish: these tests check the plumbing, not the words)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sf_fairseq.eval import batch_engine, lists, score_batch
from sf_fairseq.eval import score_video as sv
from sf_fairseq.eval.encode import InputSettings, StreamEncoder, load_clip
from sf_fairseq.eval.metrics import roc_auc
from sf_fairseq.eval.pipeline import Scorer
from sf_fairseq.eval.report import compute_report, write_report
from sf_fairseq.eval.results import ResultWriter, latest_records
from sf_fairseq.eval.transcriber import ClipTranscripts, DecodeSettings, Transcriber, disagreement, transcribe_records

# Two intra-op threads for these tests, put back after the module (was a module-level set_num_threads).
pytestmark = pytest.mark.usefixtures("two_torch_threads")

VSR = "fixtures/avhubert_tiny_vsr/checkpoint.pt"
ENCODER = "fixtures/avhubert_tiny/checkpoint.pt"


def _check_transcripts(t: dict, model: str) -> None:
    """Fields present, disagreements in [0, 1] and equal to the function's for the two strings."""
    assert set(t) == {"lips", "audio", "word_disagreement", "char_disagreement", "model", "error_type", "error"}
    assert t["model"] == model and t["error"] is None and t["error_type"] is None
    assert isinstance(t["lips"], str) and isinstance(t["audio"], str)
    assert 0.0 <= t["word_disagreement"] <= 1.0 and 0.0 <= t["char_disagreement"] <= 1.0
    assert t["word_disagreement"] == pytest.approx(disagreement(t["lips"].split(), t["audio"].split()))
    assert t["char_disagreement"] == pytest.approx(
        disagreement(t["lips"].replace(" ", ""), t["audio"].replace(" ", "")))


def test_batch_failure_falls_back_to_one_clip_at_a_time() -> None:
    calls = []

    def transcribe(clips):
        calls.append(list(clips))
        if "bad" in clips:
            raise RuntimeError("out of memory")
        return [ClipTranscripts.compare(c, c + " x") for c in clips]

    out = transcribe_records(transcribe, ["a b", "bad", "c"], "m.pt")
    assert calls == [["a b", "bad", "c"], ["a b"], ["bad"], ["c"]]
    assert out[1]["error_type"] == "RuntimeError" and out[1]["lips"] is None and out[1]["model"] == "m.pt"
    assert out[0]["lips"] == "a b" and out[0]["audio"] == "a b x"
    assert out[0]["word_disagreement"] == pytest.approx(1 / 3)
    assert out[2]["char_disagreement"] == pytest.approx(1 / 2) and out[2]["error"] is None


def _rec(i: int, label: int, category: str, score: float, word: float | None) -> dict:
    t = None if word is None else {"lips": "a", "audio": "b", "word_disagreement": word,
                                   "char_disagreement": word / 2, "model": "m.pt", "error_type": None, "error": None}
    return {"id": str(i), "label": label, "category": category, "status": "ok", "score": score, "transcripts": t}


def test_report_adds_transcript_disagreement_per_category_and_auc(tmp_path: Path) -> None:
    records = [_rec(0, 1, "real", 0.9, 0.1), _rec(1, 1, "real", 0.8, 0.3), _rec(2, 1, "real", 0.7, None),
               _rec(3, 0, "dub", 0.2, 0.9), _rec(4, 0, "dub", 0.85, 0.2), _rec(5, 0, "swap", 0.5, 0.6)]
    rep = write_report(records, tmp_path / "rep", n_boot=0)
    t = rep["transcripts"]
    assert t["n"] == 5 and t["n_missing"] == 1 and t["model"] == "m.pt"
    assert t["per_category"]["real"]["mean_word_disagreement"] == pytest.approx(0.2)
    assert t["per_category"]["real"]["real"] and not t["per_category"]["dub"]["real"]
    assert t["per_category"]["dub"]["mean_word_disagreement"] == pytest.approx(0.55)
    assert t["per_category"]["dub"]["mean_char_disagreement"] == pytest.approx(0.275)
    # Higher disagreement = more likely fake: reals {0.1, 0.3} vs fakes {0.9, 0.2, 0.6} -> 5 of 6 pairs.
    assert t["word_disagreement_auc"] == pytest.approx(5 / 6)
    assert t["per_category"]["dub"]["word_disagreement_auc"] == pytest.approx(3 / 4)
    assert t["per_category"]["swap"]["word_disagreement_auc"] == pytest.approx(1.0)
    labels, scores = np.array([1, 1, 0, 0, 0]), np.array([0.9, 0.8, 0.2, 0.85, 0.5])
    assert t["score_auc_same_items"] == pytest.approx(roc_auc(labels, scores))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Lips vs audio transcripts" in md and "| word disagreement (higher = fake) | 0.8333 |" in md
    assert "| dub | 2 | 0.5500 | 0.2750 | 0.7500 |" in md
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["transcripts"] == t
    # Without transcripts the report is unchanged; with one class only, means but no AUC.
    assert "transcripts" not in compute_report(
        [{k: v for k, v in r.items() if k != "transcripts"} for r in records], n_boot=0)
    only_real = compute_report(records[:3], n_boot=0)["transcripts"]
    assert only_real["word_disagreement_auc"] is None and "note" in only_real
    assert only_real["per_category"]["real"]["n"] == 2


@pytest.fixture(scope="module")
def transcriber(shared_dir: Path) -> Transcriber:
    return Transcriber.from_checkpoint(shared_dir / VSR, DecodeSettings(beam=1, max_len_a=0, max_len_b=6))


def test_batch_records_get_transcripts_failures_and_resume(
    tmp_path: Path, envelope_clip, envelope_encoder, transcriber: Transcriber
) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "mouths"
    for name in ("real/a", "real/b", "fake/c"):
        envelope_clip(root / f"{name}.mp4", rng.uniform(0, 1, 30))
    listing = tmp_path / "list.txt"
    listing.write_text("real/a.mp4 1\nreal/b.mp4 1\nfake/c.mp4 0\nmissing/d.mp4 0\n", encoding="utf-8")
    items = lists.read_list(listing, str(root))
    # normalize=False differs from the transcriber's inputs: clips are read again for it.
    scorer = Scorer(StreamEncoder(envelope_encoder), InputSettings(normalize=False))
    assert scorer.settings != transcriber.settings
    out = tmp_path / "scores.jsonl"

    # First run without transcripts; c's transcription will fail on the second run.
    with ResultWriter(out) as writer:
        batch_engine.score_items(items, scorer, writer, batch_size=2, progress=False)
    assert "transcripts" not in latest_records([out])["real/a.mp4"]

    # The transcriber fails on c (recognised by its audio inputs), batch or alone.
    real_transcribe = transcriber.transcribe_clips
    c_audio = load_clip(str(root / "fake/c.mp4"), str(root / "fake/c.wav"), transcriber.settings).audio
    seen = []

    def flaky(clips):
        seen.append(len(clips))
        if any(np.array_equal(clip.audio, c_audio) for clip in clips):
            raise RuntimeError("decoder exploded")
        return real_transcribe(clips)

    transcriber.transcribe_clips = flaky
    try:
        with ResultWriter(out) as writer:
            counts = batch_engine.score_items(items, scorer, writer, batch_size=2, progress=False,
                                             transcriber=transcriber, transcriber_name="vsr.pt")
    finally:
        del transcriber.transcribe_clips
    # Items scored without transcripts are done again; the missing one fails again.
    assert counts == {"skipped": 0, "scored": 3, "failed": 1}
    assert seen[:1] == [2]  # decoded a batch at a time
    records = latest_records([out])
    for key in ("real/a.mp4", "real/b.mp4"):
        _check_transcripts(records[key]["transcripts"], "vsr.pt")
    c = records["fake/c.mp4"]
    assert c["status"] == "ok" and c["score"] is not None  # the score survives
    assert c["transcripts"]["error_type"] == "RuntimeError" and "exploded" in c["transcripts"]["error"]
    assert c["transcripts"]["lips"] is None and c["transcripts"]["model"] == "vsr.pt"
    broken = records["missing/d.mp4"]
    assert broken["status"] == "failed" and "transcripts" in broken and broken["transcripts"] is None

    # Rerun: transcribed items are kept as they are; the failed transcription is retried.
    kept = {k: records[k]["transcripts"] for k in ("real/a.mp4", "real/b.mp4")}
    with ResultWriter(out) as writer:
        counts = batch_engine.score_items(items, scorer, writer, batch_size=2, progress=False,
                                         transcriber=transcriber, transcriber_name="vsr.pt")
    assert counts == {"skipped": 2, "scored": 1, "failed": 1}
    records = latest_records([out])
    assert {k: records[k]["transcripts"] for k in kept} == kept
    _check_transcripts(records["fake/c.mp4"]["transcripts"], "vsr.pt")
    # Same clip, same model: the transcripts equal the one-clip decoder's.
    direct = transcriber.transcribe_clip(root / "fake/c.mp4", root / "fake/c.wav")
    assert records["fake/c.mp4"]["transcripts"]["lips"] == direct.lips
    assert records["fake/c.mp4"]["transcripts"]["audio"] == direct.audio
    # A different transcription model means transcribing again.
    with ResultWriter(out) as writer:
        counts = batch_engine.score_items(items, scorer, writer, batch_size=2, progress=False,
                                         transcriber=transcriber, transcriber_name="other.pt")
    assert counts["skipped"] == 0 and latest_records([out])["real/a.mp4"]["transcripts"]["model"] == "other.pt"


@pytest.mark.slow
def test_clis_with_transcribe(tmp_path: Path, shared_dir: Path, roi_clip, capsys) -> None:
    vsr, encoder = str(shared_dir / VSR), str(shared_dir / ENCODER)
    video, _ = roi_clip(tmp_path / "my clip.mp4", n_frames=30)
    out = tmp_path / "out"
    rc = sv.main([str(video), "--checkpoint", encoder, "--out", str(out), "--cpu", "--transcribe", vsr, "--beam", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    record = json.loads((out / "my clip.score.json").read_text())
    t = record["transcripts"]
    _check_transcripts(t, vsr)
    assert record["tracks"][0]["transcripts"] == t
    assert record["transcribe"] == {"checkpoint": vsr, "beam": 2, "lenpen": 1.0}
    assert f"lips read:  {t['lips']}" in text and f"audio says: {t['audio']}" in text
    assert f"words {t['word_disagreement']:.3f}" in text
    md = (out / "my clip.score.md").read_text()
    assert f"| lips (video alone) | {t['lips'] or '(empty)'} |" in md
    assert f"Disagreement: words {t['word_disagreement']:.3f}" in md

    root = tmp_path / "mouths"
    roi_clip(root / "real/videos/001.mp4", n_frames=30, seed=0)
    roi_clip(root / "real/videos/002.mp4", n_frames=25, seed=1)
    roi_clip(root / "fake/Deepfakes/videos/003.mp4", n_frames=28, seed=2)
    (root / "fake/Deepfakes/videos/bad.mp4").write_bytes(b"\0" * 100)
    listing = tmp_path / "test_list.txt"
    listing.write_text("real/videos/001.mp4 1\nreal/videos/002.mp4 1\nfake/Deepfakes/videos/003.mp4 0\n"
                       "fake/Deepfakes/videos/bad.mp4 0\n", encoding="utf-8")
    results = tmp_path / "results"
    rc = score_batch.main(["--path", encoder, "--list", str(listing), "--data-root", str(root), "--num-workers", "0",
                           "--cpu", "--no-progress", "--batch-size", "2", "--results-path", str(results),
                           "--transcribe", vsr, "--beam", "1", "--report", "--n-boot", "0"])
    assert rc == 1  # the broken item
    records = {r["id"]: r for r in map(json.loads, (results / "scores.jsonl").read_text().splitlines())}
    assert records["fake/Deepfakes/videos/bad.mp4"]["status"] == "failed"
    for key in ("real/videos/001.mp4", "real/videos/002.mp4", "fake/Deepfakes/videos/003.mp4"):
        _check_transcripts(records[key]["transcripts"], vsr)
    report = json.loads((results / "report" / "report.json").read_text())
    assert report["transcripts"]["n"] == 3 and set(report["transcripts"]["per_category"]) == {"real", "Deepfakes"}
    assert 0.0 <= report["transcripts"]["word_disagreement_auc"] <= 1.0
    assert "## Lips vs audio transcripts" in (results / "report" / "report.md").read_text()
    assert json.loads((results / "run.json").read_text())["transcribe"]["checkpoint"] == vsr
    assert "transcript word disagreement as a detector: AUC" in capsys.readouterr().out
