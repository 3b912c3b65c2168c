"""The demo's lip-reading stage (sf_fairseq.eval.lipreading): per-stream WER against each stream's
own truth, the disagreement AUCs, the report and its markdown section on hand-made transcripts;
and one end-to-end run on a tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval import lipreading
from sf_fairseq.eval.lipreading import ClipReading, LipreadingJob
from sf_fairseq.preprocess.synthetic import grid

TEST_CATEGORIES = lipreading.TEST_CATEGORIES
REAL = "set blue by f two now"
OTHER = "lay red at a nine soon"


def _readings() -> list[ClipReading]:
    return [
        # real: both streams say REAL; the lips get one word wrong in the first clip
        ClipReading("real/s00000", "real", REAL, REAL, lips="set blue by f three now", audio=REAL),
        ClipReading("real/s00001", "real", OTHER, OTHER, lips=OTHER, audio=OTHER),
        # dubbed: the audio says another sentence, read correctly by both streams
        ClipReading("dubbed/s00000", "dubbed", REAL, OTHER, lips=REAL, audio=OTHER),
        ClipReading("dubbed/s00001", "dubbed", OTHER, REAL, lips=OTHER, audio="set blue by f two"),
        # lip-synced: the mouth says another sentence, the lips read it half right
        ClipReading("lipsync_other/s00000", "lipsync_other", OTHER, REAL, lips="lay red at f two now", audio=REAL),
    ]


def test_each_stream_is_scored_against_its_own_truth():
    wer = lipreading.stream_wers(_readings())
    assert wer["real"] == {"lips": pytest.approx(1 / 12), "audio": 0.0}
    assert wer["dubbed"] == {"lips": 0.0, "audio": pytest.approx(1 / 12)}  # one word left out
    assert wer["lipsync_other"] == {"lips": pytest.approx(3 / 6), "audio": 0.0}


def test_disagreement_and_its_aucs():
    readings = _readings()
    assert readings[0].disagreement == pytest.approx(1 / 6)
    assert readings[1].disagreement == 0.0
    assert readings[2].disagreement == 1.0
    aucs, intervals = lipreading.disagreement_aucs(readings, n_boot=50)
    # every dubbed clip disagrees more than every real clip
    assert aucs == {"dubbed": 1.0, "lipsync_other": 1.0}
    assert set(intervals) == {"dubbed", "lipsync_other"} and all(0 <= lo <= hi <= 1 for lo, hi in intervals.values())
    # a real clip disagreeing as much as a fake one gives a tie (AUC 0.5 for that pair)
    tied = [*readings[:1], ClipReading("dubbed/s00009", "dubbed", REAL, OTHER, lips="set blue by f three now",
                                       audio=REAL)]
    assert lipreading.disagreement_aucs(tied, n_boot=10)[0]["dubbed"] == 0.5


def test_report_and_markdown_section():
    readings = _readings()
    report = lipreading.build_report(readings, {"updates": 7, "n_train": 11, "n_test": 2},
                                     {"corpus": 1.0, "finetune": 2.0}, {"loss": 3.2}, n_examples=1)
    report = json.loads(json.dumps(report))  # JSON-ready
    assert report["n_clips"] == {"real": 2, "dubbed": 2, "lipsync_other": 1}
    assert report["examples"] == ["real/s00000", "dubbed/s00000", "lipsync_other/s00000"]
    assert report["mean_disagreement"]["real"] == pytest.approx(1 / 12)
    assert len(report["clips"]) == 5 and report["clips"][2]["disagreement"] == 1.0

    lines = lipreading.markdown_lines(report)
    assert lines[0].startswith("## Lip reading")
    text = "\n".join(lines)
    assert "7 updates" in text and "11 real GRID clips" in text and "Stage time 3 s (corpus 1, finetune 2)" in text
    assert "| real | 2 | 8.3% | 0.0% | 0.08 |  |" in lines
    assert any(line.startswith("| dubbed | 2 | 0.0% | 8.3% | 1.00 | 1.000 [") for line in lines)
    assert f"| dubbed/s00000 | dubbed | {REAL} | {OTHER} | {REAL} | {OTHER} |" in lines


def test_clips_whose_face_was_split_into_tracks_are_left_out(tmp_path):
    manifest = tmp_path / "train.tsv"
    rows = ["/roi", "real/t0\tvideo/real/t0.mp4\taudio/real/t0.wav\t50\t32000",
            "real/t1__track0\tvideo/real/t1__track0.mp4\taudio/real/t1.wav\t63\t40320",
            "real/t1__track1\tvideo/real/t1__track1.mp4\taudio/real/t1.wav\t63\t40320",
            "real/t2\tvideo/real/t2.mp4\taudio/real/t2.wav\t40\t25600"]
    manifest.write_text("\n".join(rows) + "\n")
    assert lipreading.whole_clips_only(manifest) == ["real/t1"]
    assert manifest.read_text().splitlines() == [rows[0], rows[1], rows[4]]
    assert lipreading.whole_clips_only(manifest) == []  # nothing left to drop
    assert manifest.read_text().splitlines() == [rows[0], rows[1], rows[4]]


def test_training_figures_read_the_last_logged_values(tmp_path):
    log = tmp_path / "finetune.log"
    log.write_text("epoch 001: loss=5.1 accuracy=10.5 ...\n"
                   "[train][INFO] - epoch 002 | loss 4.25 | nll_loss 3.1 | n_correct 11 | accuracy 33.75 | wps 192.8\n")
    assert lipreading.training_figures(log) == {"loss": 4.25, "accuracy": 33.75}
    assert lipreading.training_figures(tmp_path / "missing.log") == {}


@pytest.mark.slow
def test_run_end_to_end_on_a_tiny_setting(tmp_path, shared_dir: Path):
    pretrained = shared_dir / "fixtures/avhubert_tiny/checkpoint.pt"
    job = LipreadingJob(tmp_path, pretrained, n_train=4, n_test=1, updates=3, workers=1, size=(160, 160),
                        crop_size=88, max_tokens=400, beam=2)
    result = lipreading.run(job)
    stage = tmp_path / "lipreading"
    assert result.report_path == stage / "report.json" and result.checkpoint.is_file()
    report = json.loads(result.report_path.read_text())
    # one clip per category, each with both transcripts and the truths of the corpus
    assert report["n_clips"] == result.n_clips == {"real": 1, "dubbed": 1, "lipsync_other": 1}
    clips = {c["category"]: c for c in report["clips"]}
    assert clips["dubbed"]["mouth_text"] == clips["real"]["audio_text"] == clips["real"]["mouth_text"]
    assert clips["dubbed"]["audio_text"] != clips["real"]["audio_text"]
    assert all(grid.is_grid_sentence(c["mouth_text"]) and grid.is_grid_sentence(c["audio_text"])
               for c in clips.values())
    assert all(isinstance(c["lips"], str) and isinstance(c["audio"], str) and 0 <= c["disagreement"] <= 1
               for c in clips.values())
    assert set(result.wer) == set(TEST_CATEGORIES) and set(result.auc) == {"dubbed", "lipsync_other"}
    assert all(0 <= value <= 1 for value in result.auc.values())
    assert set(result.seconds) == {"corpus", "prepare", "targets", "finetune", "transcribe"}
    assert (stage / "targets" / "train.wrd").read_text().count("\n") == 4
    assert lipreading.markdown_lines(report)[0].startswith("## Lip reading")

    # a rerun reuses every step; another beam redoes the transcription only
    transcripts = stage / "transcripts.jsonl"
    before = {p: p.stat().st_mtime_ns for p in [stage / "corpus" / "corpus.json", result.checkpoint, transcripts]}
    assert lipreading.run(job).seconds == result.seconds
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    lipreading.run(LipreadingJob(**{**job.__dict__, "beam": 1}))
    assert [p.stat().st_mtime_ns == t for p, t in before.items()] == [True, True, False]
    assert json.loads(result.report_path.read_text())["settings"]["beam"] == 1

