"""sf-report on records with verdict fields: the speech-gated score's AUC beside the paper's
(records without speech left out and counted), the table of verdicts and inconclusive reasons
per category, and the self-contained HTML index linking the packs in packs/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from sf_fairseq.eval import metrics as m
from sf_fairseq.eval import metrics_cli
from sf_fairseq.eval.report import write_report
from sf_fairseq.eval.results import ResultWriter


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        label = int(i % 2 == 0)
        cat = "real" if label else ("A" if i % 4 == 1 else "B")
        score = float(rng.normal(0.6 if label else 0.4, 0.1))
        speech = None if i % 10 == 3 else float(score + rng.normal(0.1 if label else -0.1, 0.05))
        reasons = ["uncalibrated"] + (["too_little_speech"] if speech is None else [])
        out.append({"id": f"c{i}", "label": label, "category": cat, "status": "ok", "score": score,
                    "score_speech": speech, "verdict": "inconclusive", "reasons": reasons})
    out.append({"id": "silent", "label": 0, "category": "B", "status": "ok", "score": 0.55, "score_speech": None,
                "verdict": "inconclusive", "reasons": ["silent_audio", "too_little_speech", "uncalibrated"]})
    out.append({"id": "noface", "label": 0, "category": "A", "status": "failed", "score": None,
                "error_type": "VideoReadError", "error": "not found", "verdict": "inconclusive",
                "reasons": ["no_face"]})
    return out


def test_report_gives_gated_auc_and_reason_table(tmp_path: Path) -> None:
    records = _records()
    rep = write_report(records, tmp_path, n_boot=50)
    gated = rep["speech_gated"]
    with_speech = [r for r in records if r.get("score_speech") is not None]
    assert gated["n"] == len(with_speech) and gated["n_no_speech"] == 5  # 4 + the silent clip
    labels = np.array([r["label"] for r in with_speech])
    assert gated["auc_speech"] == pytest.approx(m.roc_auc(labels, np.array([r["score_speech"] for r in with_speech])))
    assert gated["auc_score_same_items"] == pytest.approx(
        m.roc_auc(labels, np.array([r["score"] for r in with_speech])))
    assert set(gated["per_category"]) == {"A", "B"}
    verdicts = rep["verdicts"]
    assert verdicts["n"] == 42 and verdicts["verdicts"] == {"inconclusive": 42}
    assert verdicts["per_category"]["B"]["reasons"]["silent_audio"] == 1
    assert verdicts["per_category"]["A"]["reasons"]["no_face"] == 1
    md = (tmp_path / "report.md").read_text()
    assert "## Speech-gated score" in md and "5 items without detected speech" in md
    assert f"| score_speech (speech only) | {gated['auc_speech']:.4f}" in md
    assert "## Verdicts and inconclusive reasons" in md
    assert "| category | n | real | fake | inconclusive |" in md and "`silent_audio` (input)" in md

    # Records without verdict fields (older runs): the report is as before.
    older = [{k: v for k, v in r.items() if k not in ("score_speech", "verdict", "reasons")} for r in records]
    rep = write_report(older, tmp_path / "older", n_boot=0)
    assert "speech_gated" not in rep and "verdicts" not in rep
    assert "Speech-gated" not in (tmp_path / "older" / "report.md").read_text()


def test_sf_report_html_writes_a_self_contained_index(tmp_path: Path, capsys) -> None:
    scores = tmp_path / "run" / "scores.jsonl"
    with ResultWriter(scores) as writer:
        for record in _records():
            writer.write(record)
    out = tmp_path / "report"
    (out / "packs").mkdir(parents=True)
    (out / "packs" / "silent.html").write_text("<html></html>")
    assert metrics_cli.main([str(scores.parent), "--out", str(out), "--n-boot", "20", "--html"]) == 0
    page = (out / "index.html").read_text()
    assert 'href="packs/silent.html"' in page and "packs/c0.html" not in page
    assert page.count("data:image/png;base64,") >= 4  # ROC and histograms of both scores
    # Nothing is fetched: no external scripts, styles, images or fonts.
    targets = re.findall(r"""(?:src|href)=["']([^"']*)["']""", page)
    assert targets and all(t.startswith("data:") or not re.match(r"[a-z]+:|//", t) for t in targets), targets
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", page) and "@import" not in page
    assert "score_speech" in page and "silent_audio" in page
    assert "speech-gated AUC" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["speech_gated"]["n_no_speech"] == 5


def test_packs_need_html_and_a_checkpoint(tmp_path: Path) -> None:
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps(_records()[0]) + "\n")
    with pytest.raises(SystemExit, match="--html and --checkpoint"):
        metrics_cli.main([str(scores), "--out", str(tmp_path / "r"), "--worst", "2"])
