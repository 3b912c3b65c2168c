"""sf-score-video's records carry the verdict, speech, p-value, drift and provenance fields
(clips from the synthetic generator's speech, scored by the real loader and scorer with an
encoder that reads mouth opening and loudness; sf-verify with the tiny fixture checkpoint)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sf_fairseq.eval import conformal, verify
from sf_fairseq.eval import score_video as sv
from sf_fairseq.eval import video_engine
from sf_fairseq.eval.encode import InputSettings, StreamEncoder, load_clip
from sf_fairseq.eval.pipeline import ScoreOptions, Scorer
from sf_fairseq.eval.verdict import summary_lines
from verdict_clips import OpeningEncoder, loudness, speech_clip, utterance, write_clip

from sf_fairseq.resume import file_sha256

SETTINGS = InputSettings(normalize=False)
FIXTURE = "fixtures/avhubert_tiny/checkpoint.pt"
TRACK_FIELDS = ("verdict", "reasons", "score", "best_offset", "curve", "score_speech", "best_offset_speech",
                "speech_seconds", "speech_fraction", "p_value", "alpha", "drift", "audio_stats", "provenance")


@pytest.fixture(scope="module")
def utt():
    return utterance()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    """``sv.main`` with the opening/loudness encoder (the checkpoint file is only hashed)."""

    def load(args, checkpoint, device) -> Scorer:
        return Scorer(StreamEncoder(OpeningEncoder()), SETTINGS,
                      ScoreOptions(max_offset=args.max_offset, max_seconds=args.max_seconds or None))

    monkeypatch.setattr(sv, "load_scorer_from_arguments", load)
    checkpoint = tmp_path / "stand_in.pt"
    checkpoint.write_bytes(b"stand-in")
    out = tmp_path / "out"

    def run(video: Path, *args: str) -> tuple[int, dict | None]:
        rc = sv.main([str(video), *args, "--checkpoint", str(checkpoint), "--cpu", "--out", str(out)])
        path = out / f"{video.stem}.score.json"
        return rc, json.loads(path.read_text()) if path.exists() else None

    run.out = out
    run.checkpoint = checkpoint
    return run


@pytest.fixture
def reference_file(tmp_path: Path) -> Path:
    """Stand-in real reference set (this encoder's real clips score about 0.7-0.8)."""
    rng = np.random.default_rng(0)
    records = [{"id": str(i), "status": "ok", "label": 1, "score_speech": float(s)}
               for i, s in enumerate(rng.uniform(0.3, 0.9, 200))]
    path = tmp_path / "reference.json"
    conformal.build_reference_set(records).save(path)
    return path


def test_record_has_every_field_and_the_papers_score(tmp_path, cli, utt, capsys):
    video, wav = speech_clip(tmp_path / "clip.mp4", utt, lead=1.0)
    rc, record = cli(video)
    assert rc == 0
    track = record["tracks"][0]
    missing = [f for f in TRACK_FIELDS if f not in track]
    assert not missing, missing
    for name in ("verdict", "reasons", "score", "score_speech", "speech_seconds", "speech_fraction", "p_value"):
        assert record[name] == track[name]  # the video's verdict is its first track's
    # without a reference set: never a guess
    assert track["verdict"] == "inconclusive" and track["reasons"] == ["uncalibrated"] and track["p_value"] is None
    assert track["speech_seconds"] > 3 and 0 < track["speech_fraction"] < 1
    assert track["score_speech"] > track["score"]  # the second of leading silence is left out
    prov = track["provenance"]
    assert prov["input_sha256"] == file_sha256(video) and prov["checkpoint_sha256"] == file_sha256(cli.checkpoint)
    assert prov["files"]["audio"]["sha256"] == file_sha256(wav)
    assert prov["code_version"]["version"] and prov["verdict_settings"]["min_speech_seconds"] == 2.0
    assert prov["settings"]["speech"]["detector"].startswith("silero-vad")
    # the paper's score, bit for bit as the scorer gives it
    scorer = Scorer(StreamEncoder(OpeningEncoder()), SETTINGS, ScoreOptions())
    direct = scorer.score_clips([load_clip(str(video), str(wav), SETTINGS, 50.0, 25.0)])[0]
    assert track["score"] == direct.score and track["best_offset"] == direct.best_offset
    assert track["curve"] == direct.curve
    # the printed output is the analyst's reading of that record
    printed = capsys.readouterr().out
    assert "\n".join(summary_lines(track)) in printed
    assert "reason: uncalibrated (calibration): no reference set given" in printed


def test_fingerprint_has_the_verdict_settings_and_the_reference_hash(tmp_path, cli, utt, reference_file, capsys):
    video, _ = speech_clip(tmp_path / "clip.mp4", utt)
    _, record = cli(video)
    fingerprint = record["fingerprint"]
    assert fingerprint["verdict_settings"]["alpha"] == 0.01 and fingerprint["reference_set"] is None
    assert fingerprint["drift_settings"] and fingerprint["speech_settings"] == {"threshold": 0.5, "pad_frames": 2}
    capsys.readouterr()
    _, record = cli(video, "--reference", str(reference_file), "--min-speech-seconds", "1", "--vad-threshold", "0.4")
    err = capsys.readouterr().err
    for name in ("verdict_settings.min_speech_seconds", "reference_set", "speech_settings.threshold"):
        assert name in err
    assert record["fingerprint"]["reference_set"]["sha256"] == file_sha256(reference_file)


def test_silent_audio_is_inconclusive_even_with_a_reference(tmp_path, cli, utt, reference_file):
    video, _ = speech_clip(tmp_path / "silent.mp4", utt, silent=True)
    rc, record = cli(video, "--reference", str(reference_file))
    assert rc == 0
    assert record["verdict"] == "inconclusive" and "silent_audio" in record["reasons"]
    assert record["score_speech"] is None and record["speech_seconds"] == 0
    assert record["score"] is not None  # the paper's score is still recorded


def test_reference_set_gives_p_values_real_and_fake(tmp_path, cli, utt, reference_file, capsys):
    real, _ = speech_clip(tmp_path / "real.mp4", utt)
    rc, record = cli(real, "--reference", str(reference_file))
    assert rc == 0 and record["verdict"] == "real" and record["reasons"] == []
    assert record["p_value"] > 0.01
    assert record["tracks"][0]["reference"] == {"score_field": "score_speech", "group_by": None, "group": "all",
                                                "n": 200}
    assert f"p-value: {record['p_value']:.4g} (alpha 0.01; against 200 real clips" in capsys.readouterr().out
    # a dub: the lips say one sentence, the audio another
    other = utterance("Please bring me the small green cup from the kitchen table before the guests arrive.")
    _, real_wav = speech_clip(tmp_path / "a.mp4", utt)
    opening = loudness(sf.read(real_wav, dtype="int16")[0])
    _, other_wav = speech_clip(tmp_path / "b.mp4", other)
    dub_audio = sf.read(other_wav, dtype="int16")[0][: len(opening) * 640]
    dub_audio = np.pad(dub_audio, (0, len(opening) * 640 - len(dub_audio)))
    dub, _ = write_clip(tmp_path / "dub.mp4", opening, dub_audio)
    rc, record = cli(dub, "--reference", str(reference_file))
    assert rc == 0 and record["verdict"] == "fake", record["reasons"]
    assert record["p_value"] == pytest.approx(1 / 201)
    # a re-timed second half: not called real
    n_frames = int(np.ceil((0.3 + utt.duration + 0.3) * 25))
    shifted, _ = speech_clip(tmp_path / "shift.mp4", utt, audio_shift_frames_after=(n_frames // 2, 8))
    _, record = cli(shifted, "--reference", str(reference_file))
    assert record["verdict"] == "inconclusive" and "offset_drift" in record["reasons"]
    assert record["tracks"][0]["drift"]["drifting"]


def _prepare_media():
    """The preprocess tests' face clips (a real face, so that the preprocessing finds one)."""
    path = Path(__file__).resolve().parents[1] / "preprocess" / "prepare_media.py"
    spec = importlib.util.spec_from_file_location("prepare_media", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_raw_inputs_truncated_is_scored_no_audio_is_inconclusive(tmp_path, cli, capsys):
    make_clip = _prepare_media().make_clip
    full = make_clip(tmp_path / "in" / "full.mp4", seconds=3.0, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "in" / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    rc, record = cli(cut)
    assert rc == 0 and record["prepare"]["status"] == "truncated"
    assert record["score"] is not None and "truncated_input" in record["reasons"]
    assert record["verdict"] == "inconclusive"
    mute = make_clip(tmp_path / "in" / "mute.mp4", seconds=1.2, audio_rate=None)
    rc, record = cli(mute)
    assert rc == 0 and record["prepare"]["status"] == "no_audio"
    assert record["verdict"] == "inconclusive" and record["reasons"] == ["no_audio"] and record["score"] is None
    assert record["tracks"][0]["provenance"]["input_sha256"] == file_sha256(mute)
    assert not (cli.out / "mute.score.png").exists()
    assert "verdict: inconclusive" in (cli.out / "mute.score.md").read_text()
    capsys.readouterr()
    assert verify.main([str(cli.out / "mute.score.json")]) == 2
    assert "nothing to re-score: the input was not scored (reasons: no_audio)" in capsys.readouterr().out


@pytest.mark.slow
def test_sf_verify_reproduces_a_score_video_record(tmp_path, utt, shared_dir, capsys):
    video, _ = speech_clip(tmp_path / "clip.mp4", utterance("The cat sees a boat."))
    out = tmp_path / "out"
    checkpoint = str(shared_dir / FIXTURE)
    # Exact reproduction is a float32 claim; `auto` is bf16 on a CPU that runs it natively.
    assert sv.main([str(video), "--checkpoint", checkpoint, "--cpu", "--precision", "fp32", "--out", str(out)]) == 0
    capsys.readouterr()
    assert verify.main([str(out / "clip.score.json")]) == 0
    printed = capsys.readouterr().out
    assert "REPRODUCED (exact); files intact" in printed and "score_speech" in printed
    assert verify.main([str(out / "clip.score.json"), "--track", "1"]) == 2
    assert "no face track 1 (it has 1)" in capsys.readouterr().out


def check_self_contained(html: str) -> None:
    """No external reference; every image an inline PNG."""
    assert html.lstrip().lower().startswith("<!doctype html>")
    for bad in ('src="http', "src='http", 'href="http', "url(http", 'src="//'):
        assert bad not in html
    sources = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


@pytest.mark.slow
def test_html_pack_has_one_section_per_face_track_and_the_transcripts(tmp_path, cli, monkeypatch, capsys):
    video = _prepare_media().make_clip(tmp_path / "two.mp4", seconds=1.2, faces=2, size=(400, 192))
    transcripts = {"lips": "bob made five pies", "audio": "a quiet tone", "word_disagreement": 1.0,
                   "char_disagreement": 0.8, "model": "vsr.pt", "error_type": None, "error": None}
    monkeypatch.setattr(sv, "load_transcriber", lambda args, device: (object(), "vsr.pt"))
    monkeypatch.setattr(video_engine, "transcribe_batch", lambda transcriber, name, loaded, paths, scorer:
                        [dict(transcripts, lips=f"{transcripts['lips']} {i}") for i in range(len(loaded))])
    vsr = tmp_path / "vsr.pt"
    vsr.write_bytes(b"stand-in")
    rc, record = cli(video, "--transcribe", str(vsr), "--html", "--min-frames", "10")
    assert rc == 0 and len(record["tracks"]) == 2
    html = (cli.out / "two.evidence.html").read_text(encoding="utf-8")
    check_self_contained(html)
    assert html.count('<section class="track">') == 2
    for track in record["tracks"]:
        assert track["track"] in html and track["provenance"]["input_sha256"] in html
    assert "bob made five pies 0" in html and "bob made five pies 1" in html
    assert "too_little_speech" in html  # a 1.2 s tone: the reasons are shown
    assert str(cli.out / "two.evidence.html") in capsys.readouterr().out
    # --html PATH
    pack = tmp_path / "elsewhere" / "pack.html"
    pack.parent.mkdir()
    assert cli(video, "--html", str(pack), "--min-frames", "10")[0] == 0
    check_self_contained(pack.read_text(encoding="utf-8"))


def test_group_of_a_grouped_reference_set(tmp_path, cli, utt):
    rng = np.random.default_rng(1)
    records = [{"id": f"{lang}{i}", "status": "ok", "label": 1, "language": lang, "score_speech": float(s)}
               for lang, n in (("en", 150), ("de", 120)) for i, s in enumerate(rng.uniform(0.3, 0.9, n))]
    path = tmp_path / "grouped.json"
    conformal.build_reference_set(records, group_by="language").save(path)
    video, _ = speech_clip(tmp_path / "clip.mp4", utt)
    _, record = cli(video, "--reference", str(path))
    assert record["verdict"] == "inconclusive" and "reference_group_missing" in record["reasons"]
    _, record = cli(video, "--reference", str(path), "--group", "de")
    track = record["tracks"][0]
    assert record["verdict"] == "real" and track["language"] == "de"
    assert track["reference"]["group"] == "de" and track["reference"]["n"] == 120
    assert record["fingerprint"]["group"] == "de"
