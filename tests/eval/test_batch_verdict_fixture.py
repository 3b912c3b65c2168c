"""End to end with the tiny fixture checkpoint: sf-score-batch records of generator clips, a
reference set built from them (sf-reference-set), a rescore with --reference (p-values, the
fingerprint refusing the old records), sf-verify on one JSONL record, and sf-report --html with
an evidence pack of the lowest-scoring item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_fairseq.eval import metrics_cli, reference_set, score_batch, verify
from sf_fairseq.eval.results import latest_records

from verdict_clips import speech_clip, utterance

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


@pytest.mark.slow
def test_batch_reference_set_verify_and_report(tmp_path: Path, shared_dir: Path, capsys) -> None:
    utt = utterance()
    root = tmp_path / "clips"
    for k, lead in enumerate((0.3, 0.5, 1.0, 1.5)):
        speech_clip(root / f"real/{k}.mp4", utt, lead=lead)
    speech_clip(root / "fake/silent.mp4", utt, silent=True)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"real/{k}.mp4 1\n" for k in range(4)) + "fake/silent.mp4 0\n")
    ckpt = str(shared_dir / FIXTURE)
    common = ["--path", ckpt, "--list", str(listing), "--data-root", str(root), "--num-workers", "1",
              "--cpu", "--no-progress", "--max-seconds", "4",
              "--precision", "fp32"]  # exact reproduction is a float32 claim; `auto` may pick bf16
    first = tmp_path / "first"
    assert score_batch.main(common + ["--results-path", str(first)]) == 0
    records = latest_records([first])
    assert all(r["status"] == "ok" and r["provenance"]["checkpoint_sha256"] for r in records.values())
    silent = records["fake/silent.mp4"]
    assert silent["verdict"] == "inconclusive" and "silent_audio" in silent["reasons"]
    assert all(r["verdict"] == "inconclusive" and "uncalibrated" in r["reasons"] for r in records.values())
    assert "duration_capped" in records["real/0.mp4"]["reasons"]
    assert "5 inconclusive" in capsys.readouterr().out

    # A reference set from the real records; the silent clip is not real and stays out.
    reference = tmp_path / "reference.json"
    assert reference_set.main([str(first), "--out", str(reference)]) == 0
    ref = json.loads(reference.read_text())
    assert len(ref["groups"]["all"]) == 4 and ref["model"]["checkpoint_sha256"]

    # Rescoring with it: the old records are refused (other verdict settings), a new folder
    # gets p-values; the model keys match (no reference_mismatch).
    with pytest.raises(SystemExit, match="reference_sha256"):
        score_batch.main(common + ["--results-path", str(first), "--reference", str(reference)])
    second = tmp_path / "second"
    assert score_batch.main(common + ["--results-path", str(second), "--reference", str(reference),
                                      "--alpha", "0.3", "--report", "--n-boot", "0"]) == 0
    rescored = latest_records([second])
    for key, record in rescored.items():
        assert record["score"] == records[key]["score"]  # the paper's score does not move
        assert "uncalibrated" not in record["reasons"] and "reference_mismatch" not in record["reasons"]
    real = rescored["real/1.mp4"]
    assert real["p_value"] is not None and real["reference"]["n"] == 4
    assert rescored["fake/silent.mp4"]["verdict"] == "inconclusive"
    fingerprint = json.loads((second / "fingerprint.json").read_text())
    assert fingerprint["verdict_settings"]["alpha"] == 0.3 and len(fingerprint["reference_sha256"]) == 64
    report = json.loads((second / "report" / "report.json").read_text())
    assert report["verdicts"]["n"] == 5 and report["speech_gated"]["n_no_speech"] == 1

    # sf-verify reproduces one record of the JSONL file.
    assert verify.main([str(second / "scores.jsonl"), "--id", "real/1.mp4"]) == 0
    assert "REPRODUCED (exact); files intact" in capsys.readouterr().out

    # sf-report --html with the pack of the lowest-scoring item.
    out = tmp_path / "report"
    assert metrics_cli.main([str(second), "--out", str(out), "--n-boot", "0", "--html", "--checkpoint", ckpt,
                             "--worst", "1", "--cpu"]) == 0
    worst = min(rescored.values(), key=lambda r: r["score"])["id"]
    pack = out / "packs" / f"{worst}.html"
    assert pack.is_file()
    assert f'href="packs/{worst}.html"' in (out / "index.html").read_text()
