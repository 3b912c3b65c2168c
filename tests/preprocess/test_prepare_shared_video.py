"""Inputs that hold the same video stream with other audio (a dubbed copy, a re-muxed file):
faces are found once, and every output is what processing each input alone gives."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from prepare_media import make_clip

from sf_fairseq.preprocess import prepare_engine
from sf_fairseq.preprocess.prepare_engine import (
    InputItem,
    PrepareJob,
    PrepareOptions,
    VideoPreprocessor,
    group_by_video_stream,
    run,
    video_stream_key,
)
from sf_fairseq.preprocess.synthetic.clips import write_mp4_with_video_of
from sf_fairseq.resume import file_sha256


def with_other_audio(source: Path, target: Path, frequency: float) -> Path:
    """``source``'s video packets copied into ``target`` beside a new mono tone of ``frequency``,
    as long as the source (the container's duration is part of the key)."""
    with av.open(str(source)) as inp:
        t = np.arange(round(inp.duration / av.time_base * 16000)) / 16000
    write_mp4_with_video_of(target, source, (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16))
    return target


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shared")
    real = make_clip(root / "real.mp4", seconds=2.0)
    return {
        "real": real,
        "dubbed": with_other_audio(real, root / "dubbed.mp4", 440.0),
        "dubbed_again": with_other_audio(real, root / "dubbed_again.mp4", 660.0),
        "other": make_clip(root / "other.mp4", seconds=2.0, size=(240, 192)),
        "noise": make_clip(root / "noise.mp4", seconds=1.0, faces=0),
    }


def test_the_key_follows_the_video_stream_not_the_audio(clips, tmp_path):
    keys = {name: video_stream_key(path) for name, path in clips.items()}
    assert keys["real"] == keys["dubbed"] == keys["dubbed_again"] is not None
    assert keys["other"] != keys["real"] and keys["noise"] != keys["real"]
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\0" * 2000)
    assert video_stream_key(corrupt) is None and video_stream_key(tmp_path / "missing.mp4") is None
    items = [InputItem(name, str(path)) for name, path in clips.items()] + [InputItem("corrupt", str(corrupt))]
    groups = group_by_video_stream(items)
    assert [[item.id for item in group] for _, group in groups] == [
        ["real", "dubbed", "dubbed_again"], ["other"], ["noise"], ["corrupt"]]
    assert groups[0][0] == keys["real"] and [key for key, _ in groups[1:]] == [None, None, None]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_shared_video_outputs_are_those_of_each_input_alone(clips, tmp_path, workers):
    alone = tmp_path / "alone"
    alone_records = {name: VideoPreprocessor(PrepareOptions()).process(InputItem(name, str(path)), alone)
                     for name, path in clips.items()}
    summary = run(PrepareJob(clips["real"].parent, tmp_path / "run", workers=workers))
    assert summary.counts == {"ok": 4, "no_face": 1}
    run_dir = tmp_path / "run"
    records = {name: json.loads((run_dir / "status" / f"{name}.json").read_text()) for name in clips}
    # Inputs are taken in the order of their ids: "dubbed" is the first of its stream.
    assert records["dubbed"].get("video_shared_with") is None
    assert records["real"]["video_shared_with"] == records["dubbed_again"]["video_shared_with"] == "dubbed"
    assert "video_shared_with" not in records["other"] and "video_shared_with" not in records["noise"]
    for name in ("real", "dubbed", "dubbed_again", "other"):
        mine, single = records[name], alone_records[name]
        drop = ("seconds", "input", "video_shared_with")
        assert {k: v for k, v in mine.items() if k not in drop} == {k: v for k, v in single.items() if k not in drop}
        assert file_sha256(run_dir / mine["tracks"][0]["video"]) == file_sha256(alone / single["tracks"][0]["video"])
        assert file_sha256(run_dir / mine["audio"]) == file_sha256(alone / single["audio"])
        np.testing.assert_array_equal(np.load(run_dir / mine["landmarks"])["landmarks"],
                                      np.load(alone / single["landmarks"])["landmarks"])
    # Each input keeps its own sound: the dubbed copies' wavs are not the real clip's.
    wavs = {name: sf.read(run_dir / records[name]["audio"])[0] for name in ("real", "dubbed", "dubbed_again")}
    assert not np.allclose(wavs["real"], wavs["dubbed"]) and not np.allclose(wavs["dubbed"], wavs["dubbed_again"])
    assert summary.n_rows == 4


@pytest.mark.slow
def test_faces_are_found_once_per_stream_and_a_failure_is_shared(clips, tmp_path, monkeypatch):
    calls = []
    find_faces = VideoPreprocessor._find_faces

    def counted(self, item):
        calls.append(item.id)
        return find_faces(self, item)

    monkeypatch.setattr(VideoPreprocessor, "_find_faces", counted)
    root = tmp_path / "in"
    root.mkdir()
    names = ("real", "dubbed", "noise")
    for name in names:
        (root / f"{name}.mp4").write_bytes(clips[name].read_bytes())
    noise_copy = with_other_audio(root / "noise.mp4", root / "noise_dubbed.mp4", 300.0)
    assert video_stream_key(noise_copy) == video_stream_key(root / "noise.mp4")
    summary = run(PrepareJob(root, tmp_path / "out"))
    assert calls == ["dubbed", "noise"]
    assert summary.counts == {"ok": 2, "no_face": 2}
    shared_failure = json.loads((tmp_path / "out" / "status" / "noise_dubbed.json").read_text())
    first_failure = json.loads((tmp_path / "out" / "status" / "noise.json").read_text())
    assert shared_failure["status"] == "no_face" and shared_failure["video_shared_with"] == "noise"
    assert shared_failure["reason"] == first_failure["reason"]
    assert prepare_engine.read_prepare_record(tmp_path / "out", "real").video_shared_with == "dubbed"
