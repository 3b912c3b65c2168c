"""The prepare CLI on a batch with bad inputs: every input gets the right record, the rest of
the batch completes, the manifest lists what succeeded, reruns resume, shards split the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest
import soundfile as sf
from prepare_media import make_clip

from sf_fairseq.data.manifest import read_manifest
from sf_fairseq.preprocess.prepare import main
from sf_fairseq.preprocess.prepare_engine import InputItem, discover_inputs, shard

EXPECTED = {
    "good": "ok",
    "sub dir/vidéo ñ 1": "ok",  # spaces and non-ASCII characters in the path
    "silent": "ok",
    "two_faces": "ok",
    "corrupt": "unreadable",
    "truncated": "unreadable",
    "no_audio": "no_audio",
    "noise": "no_face",
    "one_frame": "too_short",
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    good = make_clip(root / "good.mp4", seconds=1.2)
    make_clip(root / "sub dir" / "vidéo ñ 1.mkv", seconds=1.2, fps=30)
    make_clip(root / "silent.mp4", seconds=1.2, silent=True)
    make_clip(root / "two_faces.mp4", seconds=1.2, faces=2, size=(400, 192))
    make_clip(root / "no_audio.mp4", seconds=1.2, audio_rate=None)
    make_clip(root / "noise.webm", seconds=1.2, faces=0, codec="libvpx-vp9", audio_rate=None)
    make_clip(root / "one_frame.avi", seconds=0.04, codec="mpeg4", audio_rate=None)
    (root / "corrupt.mp4").write_bytes(os.urandom(5000))
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "notes.txt").write_text("not a video")  # ignored: not a video extension
    return root


def read_log(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow  # dlib and media: over 5 s in the fast set (--durations)
def test_bad_inputs_get_records_and_the_batch_completes(batch, tmp_path):
    out = tmp_path / "out"
    assert main([str(batch), str(out), "--split", "test", "--min-frames", "10"]) == 1
    records = {r["id"]: r for r in read_log(out / "test.log.jsonl")}
    assert {k: r["status"] for k, r in records.items()} == EXPECTED
    assert all(r["reason"] for r in records.values() if r["status"] != "ok")
    assert "silent audio" in records["silent"]["notes"][0]
    assert records["silent"]["silent_audio"] is True and records["good"]["silent_audio"] is False
    assert "no audio stream" in records["no_audio"]["reason"]
    assert (out / records["no_audio"]["tracks"][0]["video"]).is_file()  # ROI kept
    assert records["one_frame"]["n_frames"] == 1
    assert [t["track"] for t in records["two_faces"]["tracks"]] == [0, 1]

    manifest = read_manifest(out / "test.tsv")
    assert manifest.root == str(out.resolve())
    assert sorted(i.id for i in manifest.items) == sorted(
        ["good", "sub dir/vidéo ñ 1", "silent", "two_faces__track0", "two_faces__track1"]
    )
    for item in manifest.items:  # counts agree with the files written
        capture = cv2.VideoCapture(manifest.resolve(item.video))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == item.n_video_frames == 30
        assert capture.get(cv2.CAP_PROP_FPS) == 25
        assert sf.info(manifest.resolve(item.audio)).frames == item.n_audio_samples == 30 * 640
    assert not list(out.rglob("*.tmp*"))  # no temporary files left behind

    # A rerun resumes: nothing is redone, every input is reported again (the log is this run's).
    stamps = {p: p.stat().st_mtime_ns for p in (out / "status").rglob("*.json")}
    assert main([str(batch), str(out), "--split", "test", "--min-frames", "10"]) == 1
    second = read_log(out / "test.log.jsonl")
    assert len(second) == len(EXPECTED) and all(r["resumed"] for r in second)
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "status").rglob("*.json")}

    # An interrupted item (no status file: killed mid-way) is redone, and only it.
    (out / "status" / "good.json").unlink()
    (out / "video" / "good.mp4").unlink()
    assert main([str(batch), str(out), "--split", "test", "--min-frames", "10"]) == 1
    third = read_log(out / "test.log.jsonl")
    assert [r["id"] for r in third if not r.get("resumed")] == ["good"]
    assert (out / "video" / "good.mp4").is_file()
    assert len(read_manifest(out / "test.tsv")) == 5


@pytest.mark.slow  # dlib and media: over 5 s in the fast set (--durations)
def test_list_file_shards_and_manifest_only(batch, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# clips\ngood.mp4\n\nsilent.mp4\nsub dir/vidéo ñ 1.mkv\n", encoding="utf-8")
    out = tmp_path / "out"
    for rank in (0, 1):
        args = [str(listing), str(out), "--root", str(batch), "--nshard", "2", "--rank", str(rank)]
        assert main(args) == 0
    ids = [r["id"] for rank in (0, 1) for r in read_log(out / f"test.log.{rank}.jsonl")]
    assert sorted(ids) == ["good", "silent", "sub dir/vidéo ñ 1"]  # each processed once
    assert len(read_manifest(out / "test.tsv")) == 3  # the last shard saw everything
    (out / "test.tsv").unlink()
    assert main([str(listing), str(out), "--root", str(batch), "--manifest-only"]) == 0
    assert len(read_manifest(out / "test.tsv")) == 3


def test_inputs_and_sharding_helpers(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "b.webm", "c.txt"):
        (tmp_path / name).write_bytes(b"")
    items = discover_inputs(tmp_path)
    assert [i.id for i in items] == ["a/x", "a/y", "b"]
    (tmp_path / "b.mp4").write_bytes(b"")  # the same stem: both keep their extension
    assert [i.id for i in discover_inputs(tmp_path)] == ["a/x", "a/y", "b.mp4", "b.webm"]
    seven = [InputItem(str(i), "") for i in range(7)]
    parts = [shard(seven, 3, r) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 1] and sum(parts, []) == seven
    with pytest.raises(ValueError):
        shard(seven, 3, 3)
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2


FLAGS = ("--split", "--workers", "--nshard", "--rank", "--detect-every", "--cnn-detector",
         "--min-frames", "--retry-failed", "--manifest-only")


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in FLAGS) and "no_face" in text


@pytest.mark.slow
def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "sf_fairseq.preprocess.prepare", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0
    assert all(flag in result.stdout for flag in FLAGS)


@pytest.mark.slow
def test_worker_pool_gives_the_same_records(batch, tmp_path):
    out = tmp_path / "out"
    assert main([str(batch), str(out), "--workers", "2", "--min-frames", "10"]) == 1
    records = {r["id"]: r["status"] for r in read_log(out / "test.log.jsonl")}
    assert records == EXPECTED
