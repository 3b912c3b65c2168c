"""The evidence pack: one self-contained HTML file, with what is there and "not computed" otherwise."""

from __future__ import annotations

import numpy as np
from conftest import check_self_contained, clip_result, full_record
from sf_fairseq.eval import evidence
from sf_fairseq.eval.evidence import (
    TrackEvidence,
    best_offset_windows,
    render_evidence_pack,
    write_evidence_pack,
)


def test_full_pack_is_self_contained_and_shows_every_section(roi_media, tmp_path):
    video, wav = roi_media
    result = clip_result()
    speech = np.zeros(100, dtype=bool)
    speech[10:90] = True
    track = TrackEvidence(full_record(result), result, video, wav, speech)
    path = write_evidence_pack(tmp_path / "pack.html", [track], title="clip.mp4",
                               reference=list(np.linspace(0.1, 0.5, 50)), reference_field="score_speech")
    html = path.read_text(encoding="utf-8")
    page = check_self_contained(html)
    # reference, curve, time line, frame strip
    assert len(page.images) == 4
    text = " ".join(page.text)
    assert "fake" in text and "offset_drift" in text and "re-timed" not in text
    assert "confident windows disagree on the audio-video offset" in text  # reason meaning
    assert "bob made five pies" in text and "a different sentence" in text
    assert "input_sha256" in text and "ab" * 32 in text
    assert "the offset changes" in text and "2.00 s" in text
    assert "real reference clips score at or below" in text
    assert "not computed" not in text
    # record text is escaped, never markup
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_minimal_record_says_not_computed(tmp_path):
    result = clip_result()
    record = {"id": "x", **result.as_record()}
    html = render_evidence_pack([TrackEvidence(record)], title="x.mp4")
    page = check_self_contained(html)
    assert len(page.images) == 1  # the offset curve only
    text = " ".join(page.text)
    for what in ("Verdict and reasons: not computed", "Provenance: not computed", "Transcripts: not computed",
                 "Offset drift: not computed", "Reference distribution: not computed", "Frame strip: not computed"):
        assert what in " ".join(text.split()), what


def test_one_section_per_face_track(roi_media):
    video, wav = roi_media
    tracks = [TrackEvidence({**full_record(clip_result(seed=s)), "track": f"clip__track{s}"}, clip_result(seed=s),
                            video, wav) for s in range(2)]
    html = render_evidence_pack(tracks, title="two faces")
    check_self_contained(html)
    assert html.count('<section class="track">') == 2
    assert "clip__track0" in html and "clip__track1" in html


def test_worst_windows_are_the_dip_and_skip_silence():
    result = clip_result(n_frames=125, dip=(50, 75))
    sims = result.sims.double().numpy()
    windows = best_offset_windows(sims, result.best_offset, 25.0, 1.0, None)
    assert windows.score.size == 5
    worst, best = windows.ranked(1)
    assert worst == [2] and best is not None and best != 2
    worst, best = windows.ranked(10)  # a short clip still shows its best window
    assert len(worst) == 4 and worst[0] == 2 and best not in worst
    # with the dip in silence, the worst speech window is another one
    speech = np.ones(125, dtype=bool)
    speech[50:75] = False
    worst, _ = best_offset_windows(sims, result.best_offset, 25.0, 1.0, speech).ranked(1)
    assert worst != [2]


def test_flatten_nested_provenance():
    rows = dict(evidence.flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": None}], "f": "text"}))
    assert rows == {"a.b": "1", "a.c": "[1, 2]", "d[0].e": "null", "f": "text"}


def test_rescored_speech_band_uses_the_recorded_voice_activity_settings():
    from sf_fairseq.eval.speech import SpeechSettings

    record = {"provenance": {"settings": {"speech": {"detector": "silero-vad 6.0", "threshold": 0.7,
                                                      "pad_frames": 0}}}}
    assert evidence.recorded_speech_settings(record) == SpeechSettings(threshold=0.7, pad_frames=0)
    assert evidence.recorded_speech_settings({"id": "old"}) == SpeechSettings()
