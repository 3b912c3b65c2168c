"""The batch index page: sortable items table linking to packs, AUC per category, ROC, histograms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import check_self_contained
from sf_fairseq.eval import evidence_index, evidence_index_cli
from sf_fairseq.eval.metrics import roc_auc


def batch_records(n: int = 30, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = int(i % 3 == 0)
        category = None if label else ("dubbed" if i % 3 == 1 else "frozen")
        score = float(rng.normal(0.4 if label else 0.3, 0.05))
        records.append({"id": f"item{i:02d}", "label": label, "category": category, "status": "ok",
                        "score": score, "score_speech": score + 0.01, "p_value": float(rng.uniform()),
                        "verdict": "real" if label else "fake", "reasons": ["duration_capped"] if i == 4 else []})
    records.append({"id": "broken", "label": 1, "status": "failed", "score": None, "error_type": "VideoReadError",
                    "error": "cannot open <video>"})
    return records


def test_index_is_self_contained_with_links_and_metrics(tmp_path):
    records = batch_records()
    packs = tmp_path / "packs"
    packs.mkdir()
    (packs / "item01.html").write_text("<!DOCTYPE html><p>pack</p>", encoding="utf-8")
    path = evidence_index.write_index(tmp_path / "index.html", records, packs, n_boot=50)
    html = path.read_text(encoding="utf-8")
    page = check_self_contained(html)
    assert page.links == ["packs/item01.html"]  # only items whose pack exists; relative link
    assert (tmp_path / page.links[0]).is_file()
    assert len(page.images) == 4  # ROC and histograms, for score and score_speech
    assert html.count("<tr>") >= len(records)
    text = " ".join(" ".join(page.text).split())
    assert "dubbed" in text and "frozen" in text and "all fakes" in text
    used = [r for r in records if r["status"] == "ok"]
    auc = roc_auc(np.array([r["label"] for r in used]), np.array([r["score"] for r in used]))
    assert f"{auc:.4f}" in text
    assert "failed: VideoReadError cannot open <video>" in text and "<video>" not in html
    assert 'th class="sortable"' in html and "addEventListener" in html


def test_index_without_labels_says_metrics_not_computed(tmp_path):
    records = [{"id": "a", "status": "ok", "score": 0.3}, {"id": "b", "status": "ok", "score": 0.4}]
    html = evidence_index.render_index(records)
    page = check_self_contained(html)
    assert page.images == []
    assert "Metrics: not computed" in " ".join(" ".join(page.text).split())


def test_cli_reads_result_files(tmp_path):
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in batch_records(12)), encoding="utf-8")
    assert evidence_index_cli.main([str(scores), "--out", str(tmp_path / "out" / "index.html"), "--n-boot", "0"]) == 0
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    check_self_contained(html)
    assert "item11" in html


def test_chosen_items_named_then_lowest_each_once():
    records = batch_records(12)
    lowest = sorted((r for r in records if r["status"] == "ok"), key=lambda r: r["score"])
    chosen = evidence_index.chosen_items(records, [lowest[0]["id"], "item05"], worst=2)
    expected = [lowest[0]["id"], "item05"] + ([lowest[1]["id"]] if lowest[1]["id"] != "item05" else [])
    assert [r["id"] for r in chosen] == expected
    with pytest.raises(ValueError, match="no record for: nope"):
        evidence_index.chosen_items(records, ["nope"], 0)


@pytest.mark.slow
def test_cli_writes_packs_of_chosen_items(tmp_path, shared_dir):
    from sf_fairseq.eval.encode import load_clip
    from sf_fairseq.eval.pipeline import load_scorer
    from sf_test_media import write_clip

    checkpoint = shared_dir / "fixtures" / "avhubert_tiny" / "checkpoint.pt"
    scorer = load_scorer(checkpoint)
    records = []
    for i in range(3):
        video, wav = tmp_path / f"c{i}.mp4", tmp_path / f"c{i}.wav"
        write_clip(video, wav, 60, np.random.default_rng(i))
        result = scorer.score_clips([load_clip(str(video), str(wav), scorer.settings)])[0]
        records.append({"id": f"c{i}", "video": str(video), "audio": str(wav), "label": 1, "status": "ok",
                        **result.as_record()})
    records[2]["score"] += 0.1  # not what this checkpoint gives: refused, not drawn wrongly
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    packs = tmp_path / "packs"
    assert evidence_index_cli.main([str(scores), "--out", str(packs / "index.html"), "--packs", str(packs),
                                "--checkpoint", str(checkpoint), "--pack", "c1", "--pack", "c2", "--worst", "1",
                                "--n-boot", "0"]) == 0
    lowest = min(records[:2], key=lambda r: r["score"])["id"]
    assert sorted(p.name for p in packs.glob("c*.html")) == sorted({"c1.html", f"{lowest}.html"})
    page = check_self_contained((packs / "c1.html").read_text(encoding="utf-8"))
    assert len(page.images) == 3  # curve, time line, frame strip
    index = check_self_contained((packs / "index.html").read_text(encoding="utf-8"))
    assert sorted(index.links) == sorted({"c1.html", f"{lowest}.html"})
