"""``python -m sf_fairseq.eval.perturb``: copies of a list, resume, settings guard, failures."""

from __future__ import annotations

import csv
import json
import os

import pytest

from robustness_media import write_raw_video, write_roi_pair
from sf_fairseq.eval import perturb as pt
from sf_fairseq.eval import perturb_engine as pe
from sf_fairseq.eval import lists


def test_help_lists_types_and_levels(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pt.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for code in pe.TYPES:
        assert code in text
    assert "30, 32, 35, 38, 40" in text


def test_raw_list_copies_resume_and_failures(tmp_path):
    root = tmp_path / "raw"
    write_raw_video(root / "real" / "a.mp4", n_frames=10)
    write_raw_video(root / "fake" / "Deepfakes" / "b.mp4", n_frames=12, seed=1)
    (tmp_path / "list.txt").write_text("real/a.mp4 1\nfake/Deepfakes/b.mp4 0\nreal/missing.mp4 1\n")
    out = tmp_path / "gb_2"
    argv = ["--list", str(tmp_path / "list.txt"), "--data-root", str(root), "--out-dir", str(out),
            "--type", "gb", "--level", "2", "--preset", "ultrafast", "--no-progress"]
    assert pt.main(argv) == 1  # one input is missing
    assert pe.probe(out / "real" / "a.mp4").n_frames == 10
    assert pe.probe(out / "fake" / "Deepfakes" / "b.mp4").n_frames == 12
    log = [json.loads(line) for line in (out / "perturb.log.jsonl").read_text().splitlines()]
    assert {r["id"]: r["status"] for r in log} == {"real/a.mp4": "ok", "fake/Deepfakes/b.mp4": "ok",
                                                    "real/missing.mp4": "failed"}
    settings = json.loads((out / "perturbation.json").read_text())
    assert (settings["type"], settings["level"], settings["seed"]) == ("gb", 2, 0)
    rows = list(csv.DictReader(open(out / "list.csv")))
    assert [(r["path"], r["label"], r["category"]) for r in rows] == [
        ("real/a.mp4", "1", "real"), ("fake/Deepfakes/b.mp4", "0", "Deepfakes"), ("real/missing.mp4", "1", "real")]
    assert (out / "videos.txt").read_text().splitlines() == [r["path"] for r in rows]

    # A rerun writes nothing new for finished items and retries the failed one.
    mtime = os.stat(out / "real" / "a.mp4").st_mtime_ns
    assert pt.main(argv) == 1
    assert os.stat(out / "real" / "a.mp4").st_mtime_ns == mtime
    log = [json.loads(line) for line in (out / "perturb.log.jsonl").read_text().splitlines()]
    assert [r["id"] for r in log[3:]] == ["real/missing.mp4"]
    # Other settings in the same folder are refused.
    with pytest.raises(SystemExit, match="other settings"):
        pt.main(argv[:-5] + ["--level", "3", "--preset", "ultrafast", "--no-progress"])
    assert not list(out.rglob("*.tmp*"))


def test_roi_list_copies_are_scoreable_with_the_written_list(tmp_path):
    root = tmp_path / "mouths"
    write_roi_pair(root / "real" / "a.mp4")
    write_roi_pair(root / "fake" / "Deepfakes" / "b.mp4", seed=1, audio_seed=2)
    (tmp_path / "list.txt").write_text("real/a.mp4 1\nfake/Deepfakes/b.mp4 0\n")
    out = tmp_path / "noise_5"
    argv = ["--list", str(tmp_path / "list.txt"), "--data-root", str(root), "--out-dir", str(out),
            "--type", "noise", "--level", "5", "--roi", "--no-progress"]
    assert pt.main(argv) == 0
    items = lists.read_list(out / "list.csv", str(out))
    assert [(i.id, i.label, i.category) for i in items] == [("real/a.mp4", 1, "real"),
                                                           ("fake/Deepfakes/b.mp4", 0, "Deepfakes")]
    for item in items:
        assert os.path.exists(item.video) and os.path.exists(item.audio)
        assert item.audio.endswith(".wav")
    # Seeded per item: the list in another order gives the same wavs.
    (tmp_path / "reversed.txt").write_text("fake/Deepfakes/b.mp4 0\nreal/a.mp4 1\n")
    out2 = tmp_path / "again"
    assert pt.main(["--list", str(tmp_path / "reversed.txt")] + argv[2:5] + [str(out2)] + argv[6:]) == 0
    for rel in ("real/a.wav", "fake/Deepfakes/b.wav"):
        assert (out / rel).read_bytes() == (out2 / rel).read_bytes()
