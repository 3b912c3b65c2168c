"""Verdict and reason codes from scored clips (similarity matrices built in the test)."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import numpy as np
import pytest

from sf_fairseq.eval import conformal, verdict
from sf_fairseq.eval.pipeline import ScoreOptions
from sf_fairseq.eval.speech import AudioAnalysis, AudioStats, SpeechSettings

K = 15
OPTIONS = ScoreOptions()


def clip(n_frames: int = 250, offset: int = 0, level: float = 0.6, seed: int = 0):
    """A ``ClipResult`` stand-in whose ``s_i(k)`` peak at ``offset``."""
    rng = np.random.default_rng(seed)
    k = np.arange(-K, K + 1)
    sims = level * np.exp(-((k - offset) ** 2) / 4.5)[None].repeat(n_frames, 0)
    sims = sims + rng.normal(0, 0.05, sims.shape)
    curve = sims.mean(0)
    return SimpleNamespace(sims=sims, score=float(curve.max()), best_offset=int(curve.argmax()) - K)


def audio(n_frames: int = 250, speech_frames: int | None = None, peak: float = 0.5, clipped: float = 0.0,
          seconds: float | None = None):
    mask = np.zeros(n_frames, bool)
    mask[: n_frames if speech_frames is None else speech_frames] = True
    n = n_frames * 640
    stats = AudioStats(n, n / 16000, peak, -20.0 if peak else None, clipped)
    return AudioAnalysis(stats, mask, SpeechSettings(), seconds or n / 16000)


def reference(n: int = 200, mean: float = 0.6, seed: int = 1, **kw):
    rng = np.random.default_rng(seed)
    records = [{"id": str(i), "status": "ok", "label": 1, "score_speech": float(s), "score": float(s), **kw}
               for i, s in enumerate(rng.normal(mean, 0.02, n))]
    return conformal.build_reference_set(records)


def test_reason_table_is_documented_once():
    doc = verdict.__doc__
    for code, (kind, _) in verdict.REASONS.items():
        assert f"``{code}``" in doc and kind in doc
    assert verdict.INPUT_REASONS >= {"silent_audio", "too_little_speech", "no_audio", "offset_at_edge"}


def test_without_reference_always_inconclusive():
    out = verdict.assess_clip(clip(), OPTIONS, audio())
    assert out["verdict"] == "inconclusive" and out["reasons"] == ["uncalibrated"]
    assert out["p_value"] is None and out["score_speech"] == pytest.approx(clip().score, abs=0.02)
    json.dumps(out, allow_nan=False)  # JSON-ready


def test_real_and_fake_with_reference():
    ref = reference()
    good = verdict.assess_clip(clip(level=0.6), OPTIONS, audio(), reference=ref)
    assert good["verdict"] == "real" and good["reasons"] == [] and good["p_value"] > 0.01
    bad = verdict.assess_clip(clip(level=0.2), OPTIONS, audio(), reference=ref)
    assert bad["verdict"] == "fake" and bad["p_value"] == pytest.approx(1 / 201)
    assert bad["reference"] == {"score_field": "score_speech", "group_by": None, "group": "all", "n": 200}


@pytest.mark.parametrize("case, reasons", [
    (dict(audio=None), {"no_audio", "too_little_speech"}),
    (dict(audio=audio(peak=0.001, speech_frames=0)), {"silent_audio", "too_little_speech"}),
    (dict(audio=audio(clipped=0.05)), {"clipped_audio"}),
    (dict(audio=audio(speech_frames=30)), {"too_little_speech"}),
    (dict(result=clip(n_frames=20), audio=audio(n_frames=20)), {"too_little_speech", "clip_too_short"}),
    (dict(result=clip(offset=15)), {"offset_at_edge"}),
    (dict(media=verdict.MediaChecks(video_frames=250, audio_frames=200)), {"truncated_input"}),
    (dict(media=verdict.MediaChecks(truncated=True)), {"truncated_input"}),
    (dict(media=verdict.MediaChecks(source_short_side=120)), {"low_resolution"}),
    (dict(face=verdict.FaceStats(0.5, 100.0, 0.01)), {"face_track_short"}),
    (dict(face=verdict.FaceStats(1.0, 40.0, 0.01)), {"face_too_small"}),
    (dict(face=verdict.FaceStats(1.0, 100.0, 0.2)), {"unstable_landmarks"}),
    (dict(face=verdict.FaceStats(0.0, 0.0, float("nan"))), {"no_face"}),
])
def test_bad_input_is_inconclusive_never_real(case, reasons):
    ref = reference()
    for level in (0.6, 0.1):  # a good score or a bad one: neither decides
        kwargs = {"result": clip(level=level), "audio": audio(), **case}
        result, aud = kwargs.pop("result"), kwargs.pop("audio")
        out = verdict.assess_clip(result, OPTIONS, aud, reference=ref, **kwargs)
        assert out["verdict"] == "inconclusive"
        assert reasons <= set(out["reasons"]), out["reasons"]
        assert not set(out["reasons"]) - reasons - {"duration_capped"}


def test_drift_prevents_real_but_not_fake():
    shifted = clip()
    k = np.arange(-K, K + 1)
    shifted.sims[125:] = 0.6 * np.exp(-((k - 8) ** 2) / 4.5)
    out = verdict.assess_clip(shifted, OPTIONS, audio(), reference=reference(mean=0.3))
    assert out["drift"]["drifting"] and "offset_drift" in out["reasons"]
    assert out["verdict"] == "inconclusive"  # its p-value alone would say real
    assert out["p_value"] >= 0.01
    low = verdict.assess_clip(shifted, OPTIONS, audio(), reference=reference(mean=0.9))
    assert low["verdict"] == "fake" and "offset_drift" in low["reasons"]


def test_calibration_reasons():
    small = reference(n=50)
    out = verdict.assess_clip(clip(level=0.1), OPTIONS, audio(), reference=small)
    assert out["verdict"] == "inconclusive" and out["reasons"] == ["reference_too_small"]
    assert out["p_value"] == pytest.approx(1 / 51)
    grouped = conformal.build_reference_set(
        [{"id": str(i), "status": "ok", "label": 1, "score_speech": 0.6, "language": "en"} for i in range(200)],
        group_by="language")
    out = verdict.assess_clip(clip(), OPTIONS, audio(), reference=grouped, record={"language": "fr"})
    assert out["reasons"] == ["reference_group_missing"] and out["verdict"] == "inconclusive"
    prov = {"checkpoint_sha256": "a", "layer": None, "settings": {"x": 1}}
    ref = reference(provenance=prov)
    same = verdict.assess_clip(clip(), OPTIONS, audio(), reference=ref, provenance=prov)
    assert same["verdict"] == "real"
    other = verdict.assess_clip(clip(), OPTIONS, audio(), reference=ref, provenance={**prov, "layer": 3})
    assert other["reasons"] == ["reference_mismatch"] and other["verdict"] == "inconclusive"


def test_paper_score_field_reference():
    records = [{"id": str(i), "status": "ok", "label": 1, "score": 0.6 + i / 1e4} for i in range(150)]
    ref = conformal.build_reference_set(records, score_field="score")
    result = clip(level=0.3)
    out = verdict.assess_clip(result, OPTIONS, audio(), reference=ref)
    assert out["verdict"] == "fake"
    assert out["p_value"] == conformal.conformal_p_value(result.score, ref.groups["all"])


def test_duration_capped_is_a_note():
    out = verdict.assess_clip(clip(), OPTIONS, audio(seconds=80.0), reference=reference())
    assert out["reasons"] == ["duration_capped"] and out["verdict"] == "real"


def test_face_stats_from_landmarks():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (68, 2))
    t = np.arange(100)[:, None, None]
    smooth = base[None] + 0.5 * t  # steady head motion: no acceleration
    stats = verdict.face_stats(smooth.astype(np.float32))
    assert stats.face_fraction == 1.0 and stats.size_px == pytest.approx(np.ptp(base, 0).max(), rel=1e-5)
    assert stats.jitter == pytest.approx(0, abs=1e-4)
    shaky = smooth + rng.normal(0, 5, smooth.shape)
    shaky[:30] = np.nan
    s2 = verdict.face_stats(shaky.astype(np.float32))
    assert s2.face_fraction == 0.7 and s2.jitter > 0.03
    assert verdict.face_stats(np.full((10, 68, 2), np.nan)).face_fraction == 0


def test_media_checks_from_prepare_record():
    rec = {"width": 640, "height": 360, "notes": ["audio covers 2.00 s of the 5.00 s video; the rest is silence"]}
    m = verdict.media_checks_from_prepare(rec, video_frames=125, audio_frames=125)
    assert m.truncated and m.source_short_side == 360 and m.video_frames == 125
    assert verdict.media_checks_from_prepare({"notes": ["decoding stopped at 1.20 s: EOF"]}).truncated
    cut = {"truncated": {"video": {"decoded_s": 1.0, "stated_s": 4.0}}, "notes": []}
    assert verdict.media_checks_from_prepare(cut).truncated
    assert not verdict.media_checks_from_prepare({"width": 96, "height": 96, "notes": [], "truncated": {}}).truncated


def test_unscored_verdict_and_prepare_statuses():
    out = verdict.unscored_verdict([verdict.PREPARE_STATUS_REASONS["no_face"]])
    assert out["verdict"] == "inconclusive" and out["reasons"] == ["no_face"]
    with pytest.raises(ValueError):
        verdict.unscored_verdict(["nonsense"])


def test_settings_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    verdict.add_verdict_arguments(parser)
    config = verdict.verdict_config_from_arguments(parser.parse_args([]))
    assert config == verdict.VerdictConfig()
    reference().save(tmp_path / "ref.json")
    args = parser.parse_args(["--alpha", "0.05", "--min-speech-seconds", "1", "--drift-window-s", "3",
                              "--vad-pad-frames", "0", "--reference", str(tmp_path / "ref.json")])
    config = verdict.verdict_config_from_arguments(args)
    assert config.settings.alpha == 0.05 and config.settings.min_speech_seconds == 1.0
    assert config.settings.min_frames == verdict.VerdictSettings().min_frames
    assert config.drift.window_s == 3.0 and config.speech.pad_frames == 0
    assert len(config.reference.groups["all"]) == 200
    prov = config.provenance()
    assert prov["verdict_settings"]["alpha"] == 0.05 and len(prov["reference_set"]["sha256"]) == 64
    help_text = parser.format_help()
    assert "false-positive" in help_text and "--vad-threshold" in help_text
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError):
        verdict.verdict_config_from_arguments(parser.parse_args(["--reference", str(tmp_path / "bad.json")]))


def test_verdict_fields_are_the_same_scored_or_not():
    scored = verdict.assess_clip(clip(), OPTIONS, audio())
    assert tuple(scored) == verdict.VERDICT_FIELDS
    unscored = verdict.unscored_verdict(["no_audio"])
    assert set(unscored) == set(verdict.VERDICT_FIELDS) and unscored["p_value"] is None


def test_face_stats_from_a_prepare_record(tmp_path):
    lm = np.full((2, 50, 68, 2), np.nan, np.float32)
    lm[1, :40] = np.random.default_rng(0).uniform(0, 80, (68, 2))
    (tmp_path / "landmarks").mkdir()
    np.savez_compressed(tmp_path / "landmarks/x.npz", landmarks=lm)
    stats = verdict.face_stats_from_prepare(tmp_path, {"landmarks": "landmarks/x.npz"}, track=1)
    assert stats.face_fraction == 0.8 and stats.jitter == pytest.approx(0, abs=1e-6)
    assert verdict.face_stats_from_prepare(tmp_path, {"landmarks": "landmarks/x.npz"}).face_fraction == 0


def test_summary_lines_and_reason_table():
    result = clip(level=0.2)
    record = {"score": result.score, "best_offset": result.best_offset, "category": "dubbed",
              **verdict.assess_clip(result, OPTIONS, audio(), reference=reference()),
              "provenance": {"input_sha256": "ab", "checkpoint_sha256": "cd", "code_version": {"version": "0.1.0"}}}
    text = "\n".join(verdict.summary_lines(record))
    assert "verdict: fake" in text and "p-value: 0.004975" in text and "against 200 real clips" in text
    assert "input sha256 ab, checkpoint sha256 cd, code 0.1.0" in text
    silent = {"score": 0.1, "best_offset": 0, "category": "real",
              **verdict.assess_clip(clip(), OPTIONS, audio(peak=0.0, speech_frames=0))}
    assert "reason: silent_audio (input): audio peak below silent_peak_dbfs" in "\n".join(verdict.summary_lines(silent))
    table = verdict.reason_table([record, silent, {"category": "real"}])
    lines = table.splitlines()
    assert lines[0] == ("| category | n | real | fake | inconclusive | silent_audio | too_little_speech "
                        "| uncalibrated |")
    assert lines[2] == "| dubbed | 1 | 0 | 1 | 0 | 0 | 0 | 0 |"
    assert lines[3] == "| real | 1 | 0 | 0 | 1 | 1 | 1 | 1 |"


def test_summary_lines_of_an_unscored_record_and_a_dirty_work_tree():
    record = {**verdict.unscored_verdict(["no_face"]), "score": None, "best_offset": None,
              "provenance": {"input_sha256": "ab", "checkpoint_sha256": "cd",
                             "code_version": {"version": "0.1.0", "git_commit": "ef", "git_dirty": True}}}
    text = "\n".join(verdict.summary_lines(record))
    assert "verdict: inconclusive" in text and "score (paper's rule): not computed" in text
    assert "reason: no_face (input): no face followed" in text
    assert text.endswith("code 0.1.0 ef (work tree with uncommitted changes)")
