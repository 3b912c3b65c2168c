"""sf-prepare on the inputs and reruns of real use: other settings, changed inputs, odd names,
partial downloads, phone videos stored sideways, temporaries of killed runs."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from prepare_media import make_clip

from sf_fairseq.data.manifest import read_manifest
from sf_fairseq.preprocess.prepare import main
from sf_fairseq.preprocess.prepare_engine import SETTINGS_FILE, discover_inputs


def read_log(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def corrupt(path, size=3000):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.slow  # dlib and media: over 5 s in the fast set (--durations)
def test_other_settings_are_refused_naming_them_and_overwrite_discards(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    corrupt(inputs / "a.mp4")
    args = [str(inputs), str(out)]
    assert main(args + ["--detect-every", "5"]) == 1
    assert json.loads((out / SETTINGS_FILE).read_text())["detector"]["detect_every"] == 5

    capsys.readouterr()
    assert main(args + ["--min-frames", "20"]) == 2  # refused: nothing is touched
    refusal = capsys.readouterr().err
    assert "detector.detect_every" in refusal and "min_frames" in refusal and "--overwrite" in refusal
    assert read_log(out / "test.log.jsonl")[0]["status"] == "unreadable"

    assert main(args + ["--detect-every", "5"]) == 1  # the same settings: finished work is reused
    assert read_log(out / "test.log.jsonl")[0]["resumed"] is True

    # --overwrite discards what the old settings made, including items no longer in the input.
    (out / "audio").mkdir()
    (out / "audio" / "gone.wav").write_bytes(b"old")
    (out / "status" / "gone.json").write_text(json.dumps({"id": "gone", "status": "ok",
                                                          "audio": "audio/gone.wav"}))
    (out / "mine.txt").write_text("a file of the user's")
    assert main(args + ["--overwrite"]) == 1
    (record,) = read_log(out / "test.log.jsonl")
    assert "resumed" not in record  # processed again
    assert not (out / "audio" / "gone.wav").exists() and not (out / "status" / "gone.json").exists()
    assert (out / "mine.txt").exists()
    assert json.loads((out / SETTINGS_FILE).read_text())["detector"]["detect_every"] == 10


def test_outputs_without_recorded_settings_are_refused(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    corrupt(inputs / "a.mp4")
    (out / "status").mkdir(parents=True)  # as an older version left it: records, no settings
    (out / "status" / "a.json").write_text(json.dumps({"id": "a", "status": "unreadable"}))
    assert main([str(inputs), str(out)]) == 2
    refusal = capsys.readouterr().err
    assert SETTINGS_FILE in refusal and "older version" in refusal
    assert main([str(inputs), str(out), "--overwrite"]) == 1
    assert "resumed" not in read_log(out / "test.log.jsonl")[0]


@pytest.mark.slow  # dlib and media: over 5 s in the fast set (--durations)
def test_a_changed_input_is_redone_and_the_log_holds_this_run(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    clip = corrupt(inputs / "a.mp4")
    assert main([str(inputs), str(out)]) == 1
    assert main([str(inputs), str(out)]) == 1
    (record,) = read_log(out / "test.log.jsonl")  # this run's records only
    assert record["resumed"] and record["input_size"] == 3000
    corrupt(clip, size=4000)  # downloaded again
    assert main([str(inputs), str(out)]) == 1
    (record,) = read_log(out / "test.log.jsonl")
    assert "resumed" not in record and record["input_size"] == 4000


def test_temporaries_of_killed_runs_are_removed(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    corrupt(inputs / "a.mp4")
    dead = 2**22 + 7919  # above Linux's largest pid: no such process
    leaked = [out / "audio" / f".a.wav.{dead}.tmp", out / "video" / f".a.mp4.{dead}.tmp.mp4"]
    for path in leaked:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 1000)
    assert main([str(inputs), str(out)]) == 1
    assert not any(path.exists() for path in leaked)


def test_odd_names_same_stems_folders_and_the_output_inside_the_input(tmp_path):
    root = tmp_path / "in"
    for name in ("tab\there.mp4", "new\nline.mkv", "same.mp4", "same.mkv", "ok.mp4",
                 "out/video/roi.mp4"):
        corrupt(root / name)
    (root / "folder.mp4").mkdir()
    items = {item.id: item for item in discover_inputs(root, exclude=root / "out")}
    assert sorted(items) == ["folder", "new\nline", "ok", "same.mkv", "same.mp4", "tab\there"]
    assert "tab or line break" in items["tab\there"].problem
    assert "tab or line break" in items["new\nline"].problem
    assert all(items[k].problem is None for k in ("folder", "ok", "same.mkv", "same.mp4"))

    out = root / "out"
    assert main([str(root), str(out), "--min-frames", "1"]) == 1
    records = {r["id"]: r for r in read_log(out / "test.log.jsonl")}
    assert {k: r["status"] for k, r in records.items()} == {
        "tab\there": "bad_name", "new\nline": "bad_name", "folder": "unreadable",
        "same.mkv": "unreadable", "same.mp4": "unreadable", "ok": "unreadable",
    }
    assert "not a file" in records["folder"]["reason"]
    assert (out / "status" / "folder.json").is_file()
    assert read_manifest(out / "test.tsv").items == []  # written, for the rest
    # Two inputs that share a stem no longer share outputs.
    assert (out / "status" / "same.mp4.json").is_file() and (out / "status" / "same.mkv.json").is_file()


def test_an_output_folder_that_holds_the_inputs_still_finds_them(tmp_path):
    corrupt(tmp_path / "a.mp4")
    (tmp_path / "video").mkdir()
    corrupt(tmp_path / "video" / "roi.mp4")  # where ROIs go: not an input
    assert main([str(tmp_path), str(tmp_path)]) == 1
    assert [r["id"] for r in read_log(tmp_path / "test.log.jsonl")] == ["a"]


def test_an_id_that_still_clashes_is_a_per_item_error(tmp_path):
    listing = tmp_path / "list.txt"
    for name in ("a.mp4", "a.mkv", "a.mp4.mov"):  # a.mp4 keeps its extension: a.mp4.mov's id
        corrupt(tmp_path / name)
    listing.write_text("a.mp4\na.mkv\na.mp4.mov\na.mp4\n")  # a.mp4 listed twice: taken once
    items = discover_inputs(listing)
    assert [(i.id, i.problem is None) for i in items] == [
        ("a.mkv", True), ("a.mp4", True), ("a.mp4", False)
    ]
    assert "also that of" in items[2].problem


# ---- with faces (dlib): slow ------------------------------------------------------------------


@pytest.mark.slow
def test_one_bad_name_does_not_stop_the_manifest(tmp_path):
    root = tmp_path / "in"
    good = make_clip(root / "good.mp4", seconds=0.6)
    shutil.copy(good, root / "tab\there.mp4")
    shutil.copy(good, root / "good.mkv")  # same stem, another container name
    out = tmp_path / "out"
    assert main([str(root), str(out), "--min-frames", "10"]) == 1
    records = {r["id"]: r["status"] for r in read_log(out / "test.log.jsonl")}
    assert records == {"good.mp4": "ok", "good.mkv": "ok", "tab\there": "bad_name"}
    assert sorted(i.id for i in read_manifest(out / "test.tsv").items) == ["good.mkv", "good.mp4"]


@pytest.mark.slow
def test_a_truncated_download_is_recorded_and_kept_out_of_the_manifest(tmp_path):
    root = tmp_path / "in"
    full = make_clip(root / "full.mp4", seconds=3.0, faststart=True)
    data = full.read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main([str(root), str(out)]) == 1
    records = {r["id"]: r for r in read_log(out / "test.log.jsonl")}
    assert records["full"]["status"] == "ok" and "truncated" not in records["full"]
    cut = records["cut"]
    assert cut["status"] == "truncated" and "truncated" in cut["reason"]
    assert cut["truncated"]["video"]["stated_s"] == pytest.approx(3.0)
    assert cut["truncated"]["video"]["decoded_s"] < 2.0
    assert [i.id for i in read_manifest(out / "test.tsv").items] == ["full"]
    # Everything was written: opting in lists it without processing again.
    assert main([str(root), str(out), "--manifest-only", "--keep-truncated"]) == 0
    rows = {i.id: i for i in read_manifest(out / "test.tsv").items}
    assert sorted(rows) == ["cut", "full"] and rows["cut"].n_video_frames == cut["n_frames"] < 50


@pytest.mark.slow
@pytest.mark.parametrize("rotation", [90, 270])
def test_a_phone_video_stored_sideways_finds_its_face(tmp_path, rotation):
    root = tmp_path / "in"
    make_clip(root / "phone.mp4", seconds=0.6, size=(192, 256), rotation=rotation)
    out = tmp_path / "out"
    assert main([str(root), str(out), "--min-frames", "10"]) == 0
    (record,) = read_log(out / "test.log.jsonl")
    assert record["status"] == "ok", record
    assert record["rotation"] == (rotation + 180) % 360 - 180
    assert (record["width"], record["height"]) == (192, 256)  # as displayed
