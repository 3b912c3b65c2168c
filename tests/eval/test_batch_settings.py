"""Batch scoring reruns: results made with other settings are never mixed, changed inputs are
scored again, prepare's notes reach the records, error messages go to stderr."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sf_fairseq.eval import batch_engine, lists, score_batch
from sf_fairseq.eval.encode import InputSettings, StreamEncoder
from sf_fairseq.eval.pipeline import Scorer
from sf_fairseq.eval.results import ResultWriter, latest_records

FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"


def _envelope_scorer(envelope_encoder) -> Scorer:
    return Scorer(StreamEncoder(envelope_encoder), InputSettings(normalize=False))


def test_changed_input_file_is_scored_again(tmp_path: Path, envelope_clip, envelope_encoder) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "mouths"
    for name in ("a", "b", "c"):
        envelope_clip(root / f"{name}.mp4", rng.uniform(0, 1, 30))
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4 1\nb.mp4 1\nc.mp4 0\n", encoding="utf-8")
    items = lists.read_list(listing, str(root))
    scorer = _envelope_scorer(envelope_encoder)
    out = tmp_path / "scores.jsonl"
    with ResultWriter(out) as writer:
        assert batch_engine.score_items(items, scorer, writer, progress=False)["scored"] == 3
    first = latest_records([out])
    assert first["a.mp4"]["inputs"]["audio"]["size"] == os.path.getsize(root / "a.wav")

    # b's wav is replaced by c's (other content), a's video is touched: both scored again.
    shutil.copy(root / "c.wav", root / "b.wav")
    stat = os.stat(root / "a.mp4")
    os.utime(root / "a.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with ResultWriter(out) as writer:
        counts = batch_engine.score_items(items, scorer, writer, progress=False)
    assert counts == {"skipped": 1, "scored": 2, "failed": 0}
    second = latest_records([out])
    assert second["b.mp4"]["score"] != pytest.approx(first["b.mp4"]["score"], abs=1e-6)
    assert second["a.mp4"]["score"] == pytest.approx(first["a.mp4"]["score"], abs=1e-6)
    with ResultWriter(out) as writer:
        assert batch_engine.score_items(items, scorer, writer, progress=False)["skipped"] == 3


def test_prepare_notes_reach_the_record(tmp_path: Path, envelope_clip, envelope_encoder) -> None:
    """A ROI folder written by sf-prepare: video/<id>.mp4, audio/<id>.wav, status/<id>.json."""
    root = tmp_path / "rois"
    rng = np.random.default_rng(1)
    for item_id in ("spk/quiet", "spk/loud"):
        video, wav = envelope_clip(root / "video" / f"{item_id}.mp4", rng.uniform(0, 1, 30))
        (root / "audio" / item_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(wav, root / "audio" / f"{item_id}.wav")
    (root / "status" / "spk").mkdir(parents=True)
    (root / "status" / "spk" / "quiet.json").write_text(json.dumps(
        {"id": "spk/quiet", "status": "ok", "notes": ["silent audio (all samples are zero)"]}), encoding="utf-8")
    listing = tmp_path / "list.csv"
    listing.write_text("path,label,audio\nvideo/spk/quiet.mp4,1,audio/spk/quiet.wav\n"
                       "video/spk/loud.mp4,1,audio/spk/loud.wav\n", encoding="utf-8")
    items = lists.read_list(listing, str(root))
    out = tmp_path / "scores.jsonl"
    with ResultWriter(out) as writer:
        batch_engine.score_items(items, _envelope_scorer(envelope_encoder), writer, progress=False)
    records = latest_records([out])
    assert records["video/spk/quiet.mp4"]["notes"] == ["silent audio (all samples are zero)"]
    assert records["video/spk/loud.mp4"]["notes"] == []  # no status file


def _clips(root: Path, roi_clip) -> Path:
    roi_clip(root / "real/001.mp4", n_frames=20, seed=0)
    roi_clip(root / "fake/002.mp4", n_frames=16, seed=1)
    listing = root.parent / "list.txt"
    listing.write_text("real/001.mp4 1\nfake/002.mp4 0\n", encoding="utf-8")
    return listing


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused_and_overwrite_discards(
    tmp_path: Path, shared_dir: Path, roi_clip, capsys
) -> None:
    root = tmp_path / "mouths"
    listing = _clips(root, roi_clip)
    ckpt = str(shared_dir / FIXTURE)
    out = tmp_path / "results"
    # float32 pinned: `auto` is bf16 on a CPU that runs it natively, and --bf16 must then differ.
    common = ["--list", str(listing), "--data-root", str(root), "--num-workers", "0", "--cpu", "--no-progress",
              "--results-path", str(out), "--precision", "fp32"]
    assert score_batch.main(common + ["--path", ckpt]) == 0
    scores = (out / "scores.jsonl").read_text()
    run_json = (out / "run.json").read_text()
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert len(fingerprint["checkpoint_sha256"]) == 64 and fingerprint["layer"] is None

    # Every score-changing setting is refused by name; nothing is written.
    for extra, named in ((["--layer", "1"], "layer"), (["--max-offset", "5"], "max_offset"),
                         (["--max-seconds", "0.4"], "max_seconds"), (["--precision", "bf16"], "precision")):
        with pytest.raises(SystemExit) as refused:
            score_batch.main(common + ["--path", ckpt, *extra])
        message = str(refused.value.code)
        assert named in message and "--overwrite" in message, message
        assert (out / "scores.jsonl").read_text() == scores and (out / "run.json").read_text() == run_json

    # Same content under another path: same checkpoint, nothing to do.
    copy = tmp_path / "copy.pt"
    shutil.copy(ckpt, copy)
    assert score_batch.main(common + ["--path", str(copy)]) == 0
    assert json.loads((out / "summary.json").read_text())["skipped"] == 2
    # Other weights under the first path's name: refused.
    state = torch.load(copy, weights_only=False)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] + 1
    torch.save(state, copy)
    with pytest.raises(SystemExit, match="checkpoint_sha256"):
        score_batch.main(common + ["--path", str(copy)])
    # Another list (same name, one more line) is another input.
    listing.write_text(listing.read_text() + "fake/002.mp4 0\n".replace("fake/002", "fake/003"), encoding="utf-8")
    with pytest.raises(SystemExit, match="input.list_sha256"):
        score_batch.main(common + ["--path", ckpt])
    listing.write_text("real/001.mp4 1\nfake/002.mp4 0\n", encoding="utf-8")

    # --overwrite discards the old scores: every record is from the new settings.
    assert score_batch.main(common + ["--path", ckpt, "--max-offset", "5", "--overwrite"]) == 0
    records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(len(r["curve"]) == 11 for r in records)
    assert json.loads((out / "run.json").read_text())["max_offset"] == 5
    assert json.loads((out / "fingerprint.json").read_text())["max_offset"] == 5
    capsys.readouterr()


@pytest.mark.slow
def test_scores_without_a_settings_record_are_refused(tmp_path: Path, shared_dir: Path, roi_clip) -> None:
    root = tmp_path / "mouths"
    listing = _clips(root, roi_clip)
    out = tmp_path / "results"
    out.mkdir()
    (out / "scores.jsonl").write_text(json.dumps({"id": "real/001.mp4", "status": "ok", "score": 0.5}) + "\n")
    stale = out / f".scores.jsonl.{2**22 + 1}.tmp"  # left by a killed run (no such pid)
    stale.write_text("partial")
    args = ["--list", str(listing), "--data-root", str(root), "--num-workers", "0", "--cpu", "--no-progress",
            "--results-path", str(out), "--path", str(shared_dir / FIXTURE)]
    with pytest.raises(SystemExit, match="no settings record"):
        score_batch.main(args)
    assert not stale.exists()


def test_checkpoint_refusal_shows_its_cause(tmp_path: Path, roi_clip, capsys) -> None:
    root = tmp_path / "mouths"
    listing = _clips(root, roi_clip)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit) as refused:
        score_batch.main(["--list", str(listing), "--data-root", str(root), "--cpu", "--no-progress",
                          "--results-path", str(tmp_path / "out"), "--path", str(bad)])
    message = str(refused.value.code)
    assert message.startswith("error: ") and "caused by" in message, message
    assert capsys.readouterr().out == ""  # errors and logging go to stderr
