"""Perturbations are seeded by the content of the stream they perturb: a real clip and its
dubbed copy (same video, other speech) get the same noisy frames, and ROI clips that share the
perturbed stream are perturbed once."""

from __future__ import annotations

import json
import shutil

import numpy as np
import soundfile as sf

from robustness_media import decode_frames, write_raw_video, write_roi_pair
from sf_fairseq.eval import lists
from sf_fairseq.eval import perturb_engine as pt

FAST = pt.PerturbOptions(preset="ultrafast", threads=1)


def log_records(out_dir) -> dict[str, dict]:
    lines = (out_dir / "perturb.log.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_stream_digest_names_the_stream_not_the_file(tmp_path):
    src = write_raw_video(tmp_path / "src.mp4")
    dubbed = tmp_path / "dubbed.mp4"
    pt.perturb_video_file(src, dubbed, "noise", 1, "other speech", FAST)  # video packets copied
    assert pt.stream_digest(src, "video") == pt.stream_digest(dubbed, "video")
    assert pt.stream_digest(src, "audio") != pt.stream_digest(dubbed, "audio")
    other = write_raw_video(tmp_path / "o.mp4", seed=3)
    assert pt.stream_digest(src, "video") != pt.stream_digest(other, "video")

    def key(path, code: str) -> str:
        return pt.perturbed_stream_key(str(path), None, code, False)

    assert key(src, "gnc") == key(dubbed, "gb")  # a video type: the video stream's content
    assert key(src, "noise") != key(dubbed, "noise")  # an audio type: the audio's


def test_raw_videos_sharing_a_video_stream_get_the_same_frames(tmp_path):
    root = tmp_path / "in"
    src = write_raw_video(root / "real.mp4")
    pt.perturb_video_file(src, root / "dubbed.mp4", "noise", 1, "other speech", FAST)
    write_raw_video(root / "other.mp4", seed=5)
    items = [lists.EvalItem(name, str(root / f"{name}.mp4"), None, 1, None) for name in ("real", "dubbed", "other")]
    out = tmp_path / "gnc_3"
    counts = pt.perturb_items(items, str(root), out, "gnc", 3, FAST, progress=False)
    assert counts == {"done": 0, "written": 3, "failed": 0}
    real, dubbed, other = (decode_frames(out / f"{name}.mp4") for name in ("real", "dubbed", "other"))
    assert np.array_equal(real, dubbed)  # same noise on the same frames
    assert not np.array_equal(real, decode_frames(src))
    assert not np.array_equal(pt.decode_audio(out / "real.mp4")[0], pt.decode_audio(out / "dubbed.mp4")[0])
    # Not the same noise as another clip's (compare the noise, frame minus source, on the shared box).
    noise_other = other.astype(int) - decode_frames(root / "other.mp4").astype(int)
    noise_real = real.astype(int) - decode_frames(src).astype(int)
    assert not np.array_equal(noise_other, noise_real)


def test_roi_clips_sharing_the_perturbed_stream_are_perturbed_once(tmp_path):
    root = tmp_path / "rois"
    real = write_roi_pair(root / "real.mp4", seed=0)
    write_roi_pair(root / "speech_b.mp4", seed=0, audio_seed=7)  # another speech for the dubbed clip
    shutil.copyfile(real, root / "dubbed.mp4")  # the real video, the other speech
    shutil.copyfile(root / "speech_b.wav", root / "dubbed.wav")
    write_roi_pair(root / "redrawn.mp4", seed=3)  # another video, the real speech
    shutil.copyfile(root / "real.wav", root / "redrawn.wav")
    names = ("real", "dubbed", "redrawn")
    items = [lists.EvalItem(n, str(root / f"{n}.mp4"), str(root / f"{n}.wav"), 1, None) for n in names]

    out = tmp_path / "gnc_3"
    assert pt.perturb_items(items, str(root), out, "gnc", 3, FAST, roi=True, progress=False)["written"] == 3
    records = log_records(out)
    assert records["dubbed"]["copied_from"] == "real.mp4" and "copied_from" not in records["real"]
    assert "copied_from" not in records["redrawn"]
    assert (out / "dubbed.mp4").read_bytes() == (out / "real.mp4").read_bytes()
    assert (out / "dubbed.wav").read_bytes() == (root / "dubbed.wav").read_bytes()  # its own speech
    # The copy is what perturbing the dubbed clip alone gives.
    alone = tmp_path / "alone"
    pt.perturb_items(items[1:2], str(root), alone, "gnc", 3, FAST, roi=True, progress=False)
    assert np.array_equal(decode_frames(alone / "dubbed.mp4"), decode_frames(out / "dubbed.mp4"))

    out = tmp_path / "noise_5"  # an audio type: the clips sharing the speech share its noise
    pt.perturb_items(items, str(root), out, "noise", 5, FAST, roi=True, progress=False)
    assert log_records(out)["redrawn"]["copied_from"] == "real.mp4"
    assert (out / "redrawn.wav").read_bytes() == (out / "real.wav").read_bytes()
    assert (out / "redrawn.mp4").read_bytes() == (root / "redrawn.mp4").read_bytes()
    assert sf.read(out / "dubbed.wav")[0].tolist() != sf.read(root / "dubbed.wav")[0].tolist()


def test_a_copy_whose_shared_input_failed_fails_with_the_reason(tmp_path):
    root = tmp_path / "rois"
    root.mkdir()
    for name in ("a", "b"):
        (root / f"{name}.mp4").write_bytes(b"not a video")
        sf.write(root / f"{name}.wav", np.zeros(16000, np.int16), 16000)
    items = [lists.EvalItem(n, str(root / f"{n}.mp4"), str(root / f"{n}.wav"), 1, None) for n in ("a", "b")]
    out = tmp_path / "gb_5"
    assert pt.perturb_items(items, str(root), out, "gb", 5, FAST, roi=True, progress=False) == \
        {"done": 0, "written": 0, "failed": 2}
    records = log_records(out)
    assert records["b"]["status"] == "failed" and "a.mp4" in records["b"]["error"]
    assert not (out / "b.mp4").exists() and not (out / "b.wav").exists()
