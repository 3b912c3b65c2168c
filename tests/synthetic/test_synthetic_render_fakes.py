"""Rendering follows the driven mouth (measured with dlib), clip encoding, fakes, determinism."""

import json

import av
import numpy as np
import pytest

from sf_fairseq.preprocess.synthetic import corpus_engine
from sf_fairseq.preprocess.synthetic.clips import SAMPLES_PER_FRAME, plan_real, render_frames, write_mp4
from sf_fairseq.preprocess.synthetic.faces import FACE_SOURCES, augment, detect_landmarks
from sf_fairseq.preprocess.synthetic.fakes import FAKE_CATEGORIES, LABELS, make_fake, shift_audio
from sf_fairseq.preprocess.synthetic.render import FaceRenderer
from sf_fairseq.preprocess.synthetic.speech import Voice, speak

SIZE = (288, 288)


@pytest.fixture(scope="module")
def plan():
    utterance = speak("Bob made five pies by the map.", Voice("en-us", rate=170))
    return plan_real(np.random.default_rng(3), SIZE, utterance, ("astronaut",))


@pytest.fixture(scope="module")
def renderer(plan):
    return FaceRenderer(*augment(plan.augmentation, SIZE))


@pytest.fixture(scope="module")
def frames(plan, renderer):
    return np.stack(list(render_frames(plan, renderer)))


def inner_gap(frame):
    lm = detect_landmarks(frame)
    return np.linalg.norm(lm[66] - lm[62]) / np.linalg.norm(lm[54] - lm[48])


def test_dlib_follows_the_driven_opening(plan, frames):
    assert frames.shape == (plan.n_frames, SIZE[1], SIZE[0], 3)
    gaps = np.array([inner_gap(f) for f in frames])
    r = np.corrcoef(gaps, plan.mouth.open)[0, 1]
    assert r > 0.9, r
    assert gaps[plan.mouth.open < 0.05].mean() < 0.05  # closed reads as closed


@pytest.mark.parametrize("source", FACE_SOURCES[1:])
def test_every_photo_opens_and_closes(source):
    image, landmarks = augment(
        plan_real(np.random.default_rng(1), SIZE, speak("Hi."), (source,)).augmentation, SIZE)
    renderer = FaceRenderer(image, landmarks)
    closed, wide = inner_gap(renderer.render(0.0, 0.0)), inner_gap(renderer.render(1.0, 0.0))
    assert closed < 0.06 and wide > closed + 0.2, (closed, wide)


def test_mp4_has_exact_frames_and_audio_duration(plan, frames, tmp_path):
    path = tmp_path / "clip.mp4"
    assert write_mp4(path, iter(frames), plan.audio, SIZE) == plan.n_frames
    assert not list(tmp_path.glob("*.tmp.mp4"))
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        assert video.average_rate == 25
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert len(decoded) == plan.n_frames
    assert len(plan.audio) == plan.n_frames * SAMPLES_PER_FRAME
    assert abs(len(audio) - len(plan.audio)) < 1024  # AAC frames are 1024 samples
    original = plan.audio.astype(np.float32) / 32768
    n = min(len(audio), len(original))
    lags = [np.dot(audio[max(0, k): n + min(0, k)], original[max(0, -k): n - max(0, k)]) for k in range(-80, 81)]
    assert int(np.argmax(lags)) - 80 == 0  # no encoder delay left in the decoded audio
    assert np.abs(decoded[10].astype(int) - frames[10]).mean() < 6  # lossy but close


def test_fake_categories_differ_as_intended(plan, renderer, frames):
    fakes = {c: make_fake(plan, c, np.random.default_rng(11)) for c in FAKE_CATEGORIES}
    for category, fake in fakes.items():
        assert fake.meta["category"] == category and fake.meta["label"] == LABELS[category]
        assert fake.n_frames == plan.n_frames and len(fake.audio) == len(plan.audio)
    assert LABELS["offset_small"] == 1 and LABELS["offset_large"] == 0 and LABELS["dubbed"] == 0
    # dubbed: other audio, same mouth
    dub = fakes["dubbed"]
    assert np.array_equal(dub.mouth.open, plan.mouth.open)
    assert np.corrcoef(dub.audio[: len(plan.audio)].astype(float), plan.audio.astype(float))[0, 1] < 0.2
    assert dub.meta["audio_text"] != plan.utterance.text
    # lipsync_other: same audio, other mouth
    lip = fakes["lipsync_other"]
    assert np.array_equal(lip.audio, plan.audio)
    assert np.corrcoef(lip.mouth.open, plan.mouth.open)[0, 1] < 0.8
    # frozen: hardly any motion; smeared: blurred, slow, reduced motion
    assert fakes["frozen_mouth"].mouth.open.std() < 0.05 < plan.mouth.open.std()
    smear = fakes["smeared_mouth"]
    assert smear.blur.min() >= 2.0 and np.ptp(smear.mouth.open) < 0.6 * np.ptp(plan.mouth.open)
    # offsets: the audio is the original shifted by exactly the stated time
    for category, (low, high) in (("offset_small", (0.12, 0.4)), ("offset_large", (0.9, 1.6))):
        fake = fakes[category]
        seconds = fake.meta["offset_seconds"]
        assert low - 0.02 <= abs(seconds) <= high + 0.02
        n = int(round(abs(seconds) * 16000))
        if seconds > 0:
            assert np.array_equal(fake.audio[n:], plan.audio[:-n]) and not fake.audio[:n].any()
        else:
            assert np.array_equal(fake.audio[:-n], plan.audio[n:]) and not fake.audio[-n:].any()
        assert np.array_equal(fake.mouth.open, plan.mouth.open)
    # partial: rendered frames differ from the real clip only inside the recorded window
    part = fakes["partial"]
    f0, f1 = part.meta["window_frames"]
    assert part.meta["window_seconds"] == [f0 / 25, f1 / 25] and 15 <= f1 - f0 <= 41
    rendered = np.stack(list(render_frames(part, renderer)))
    changed = np.abs(rendered.astype(int) - frames).reshape(len(frames), -1).max(1) > 0
    assert not changed[:f0].any() and not changed[f1:].any()
    assert changed[f0:f1].mean() > 0.5


def test_shift_audio_both_ways():
    x = np.arange(1, 11, dtype=np.int16)
    assert shift_audio(x, 3 / 16000).tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]
    assert shift_audio(x, -3 / 16000).tolist() == [4, 5, 6, 7, 8, 9, 10, 0, 0, 0]


def _generate(out, seed):
    corpus_engine.generate_source(out, "test", 0, seed, (256, 256), True, ("real", "dubbed", "partial"))
    return {c: json.loads(corpus_engine.clip_path(out, "test", c, 0).with_suffix(".json").read_text())
            for c in ("real", "dubbed", "partial")}


@pytest.mark.slow  # dlib and media: over 5 s in the fast set (--durations)
def test_same_seed_same_arrays_and_resume(tmp_path):
    a, b, c = _generate(tmp_path / "a", 5), _generate(tmp_path / "b", 5), _generate(tmp_path / "c", 6)
    for category in a:
        assert a[category]["frames_sha256"] == b[category]["frames_sha256"]
        assert a[category]["audio_sha256"] == b[category]["audio_sha256"]
        assert a[category]["frames_sha256"] != c[category]["frames_sha256"]
    assert a["real"]["audio_sha256"] != a["dubbed"]["audio_sha256"]
    assert a["real"]["frames_sha256"] == a["dubbed"]["frames_sha256"]
    assert a["real"]["frames_sha256"] != a["partial"]["frames_sha256"]
    assert corpus_engine.generate_source(tmp_path / "a", "test", 0, 5, (256, 256), True, ("real", "dubbed")) == 0


def test_only_fakes_that_change_the_sound_show_the_real_frames(plan):
    shows = {category: corpus_engine.shows_real_frames(make_fake(plan, category, np.random.default_rng(0)), plan)
             for category in FAKE_CATEGORIES}
    assert shows == {category: category in ("dubbed", "offset_small", "offset_large") for category in FAKE_CATEGORIES}
    assert corpus_engine.shows_real_frames(plan, plan)


def _decoded(path, kind):
    with av.open(str(path)) as container:
        if kind == "audio":
            return np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.slow  # dlib and media
def test_fakes_that_change_only_the_sound_copy_the_real_clips_video(tmp_path, monkeypatch):
    from sf_fairseq.preprocess.prepare_engine import video_stream_key

    rendered_categories = []

    def counted(plan, renderer=None, fps=25):
        rendered_categories.append(plan.meta["category"])
        return render_frames(plan, renderer, fps)

    monkeypatch.setattr(corpus_engine, "render_frames", counted)
    categories = ("real", "dubbed", "offset_large", "partial")
    corpus_engine.generate_source(tmp_path / "a", "test", 0, 5, (256, 256), True, categories)
    assert rendered_categories == ["real", "partial"]  # the dubbed and offset clips were copies
    clip = {c: corpus_engine.clip_path(tmp_path / "a", "test", c, 0) for c in categories}
    keys = {c: video_stream_key(path) for c, path in clip.items()}
    assert keys["real"] == keys["dubbed"] == keys["offset_large"] != keys["partial"]
    # Without its real clip beside it, a dubbed clip is rendered: it shows the same frames and
    # says the same audio as the copy.
    corpus_engine.generate_source(tmp_path / "b", "test", 0, 5, (256, 256), True, ("dubbed",))
    assert rendered_categories[-1] == "dubbed"
    rendered = corpus_engine.clip_path(tmp_path / "b", "test", "dubbed", 0)
    assert video_stream_key(rendered) == keys["dubbed"]
    np.testing.assert_array_equal(_decoded(rendered, "video"), _decoded(clip["dubbed"], "video"))
    np.testing.assert_array_equal(_decoded(rendered, "audio"), _decoded(clip["dubbed"], "audio"))
    assert not np.array_equal(_decoded(clip["real"], "audio"), _decoded(clip["dubbed"], "audio"))
    copied, alone = (json.loads(path.with_suffix(".json").read_text()) for path in (clip["dubbed"], rendered))
    assert copied == alone
