"""The recording channel of synthetic source clips: audio level, noise at a given SNR, compression."""

from __future__ import annotations

import numpy as np
import pytest

from sf_fairseq.preprocess.synthetic.channel import Channel, coloured_noise
from sf_fairseq.preprocess.synthetic.render import HeadMotion
from sf_fairseq.preprocess.synthetic.visemes import MouthTrack


def _tone(n: int = 16000, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(n) / 16000
    return np.round(amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def test_identity_channel_changes_nothing() -> None:
    audio = _tone()
    assert np.array_equal(Channel().apply_audio(audio, np.random.default_rng(0)), audio)


def test_gain_scales_and_clips_to_int16() -> None:
    audio = _tone()
    quieter = Channel(gain_db=-6.0).apply_audio(audio, np.random.default_rng(0))
    assert np.abs(quieter).max() == pytest.approx(np.abs(audio).max() * 10 ** (-6 / 20), abs=1)
    louder = Channel(gain_db=20.0).apply_audio(audio, np.random.default_rng(0))
    assert louder.dtype == np.int16 and louder.max() == 32767 and louder.min() == -32768


@pytest.mark.parametrize("colour", ["white", "pink"])
def test_noise_is_added_at_the_requested_snr(colour: str) -> None:
    audio = _tone()
    noisy = Channel(noise_snr_db=20.0, noise_colour=colour).apply_audio(audio, np.random.default_rng(0))
    noise = noisy.astype(float) - audio
    snr = 10 * np.log10(np.mean(audio.astype(float) ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(20.0, abs=0.5)


def test_pink_noise_has_more_power_at_low_frequencies() -> None:
    noise = coloured_noise(1 << 16, "pink", np.random.default_rng(0))
    power = np.abs(np.fft.rfft(noise)) ** 2
    assert np.mean(noise**2) == pytest.approx(1.0)
    assert power[10:100].mean() > 10 * power[10000:20000].mean()
    with pytest.raises(ValueError, match="colour"):
        coloured_noise(10, "brown", np.random.default_rng(0))


def test_random_channels_cover_the_ranges_and_are_seeded() -> None:
    channels = [Channel.random(np.random.default_rng(i)) for i in range(300)]
    assert {c.crf for c in channels} == set(range(18, 33))
    assert min(c.gain_db for c in channels) < -10 and max(c.gain_db for c in channels) > 4
    clean = sum(c.noise_snr_db is None for c in channels) / len(channels)
    assert 0.25 < clean < 0.42
    assert Channel.random(np.random.default_rng(7)) == Channel.random(np.random.default_rng(7))


def test_apply_audio_refuses_float_audio() -> None:
    with pytest.raises(ValueError, match="int16"):
        Channel().apply_audio(np.zeros(10, np.float32), np.random.default_rng(0))


def test_a_source_and_its_fakes_share_one_channel(tmp_path) -> None:
    import json


    from sf_fairseq.preprocess.synthetic.corpus_engine import CHANNEL_STREAM, SPLITS, CorpusJob, generate

    job = CorpusJob(tmp_path / "c", n_train=0, n_test=1, seed=3, size=(128, 128), quick=True,
                    categories=("real", "dubbed"), recorded_fraction=0.0)
    generate(job)
    metas = [json.loads(line) for line in (tmp_path / "c" / "test" / "metadata.jsonl").read_text().splitlines()]
    expected = Channel.random(np.random.default_rng([3, SPLITS["test"], 0, CHANNEL_STREAM])).metadata()
    assert [m["category"] for m in metas] == ["real", "dubbed"]
    assert all(m["channel"] == expected for m in metas)
    data = (tmp_path / "c" / "test" / "real" / "s00000.mp4").read_bytes()
    assert f"crf={expected['crf']}.0".encode() in data  # x264 writes its settings into the stream


@pytest.mark.parametrize("fps", [24, 25, 30])
def test_other_frame_rates_are_filmed_at_their_own_instants(tmp_path, fps: int) -> None:
    """A clip filmed at 24 or 30 fps shows the motion at that rate's instants (not 25 fps
    frames repeated or dropped), and the preprocessing's reader brings it back to 25 fps within
    half a frame of each 25 fps instant."""
    from sf_fairseq.preprocess.media import FrameStream
    from sf_fairseq.preprocess.synthetic.clips import frames_at, plan_real, tracks_at, write_mp4

    n = 25
    plan = plan_real(np.random.default_rng(0), (64, 64))
    plan = plan.with_changes(mouth=MouthTrack(np.arange(n) / n, np.zeros(n)), head=HeadMotion.still(n),
                             blur=np.arange(n, dtype=float), audio=np.zeros(n * 640, np.int16))
    mouth, head, blur = tracks_at(plan, fps)
    assert len(mouth) == len(head.angle) == len(blur) == frames_at(n, fps) == -(-n * fps // 25)
    instants = np.arange(len(mouth)) * 25 / fps  # in 25 fps frames
    np.testing.assert_allclose(blur, np.minimum(instants, n - 1))
    np.testing.assert_allclose(mouth.open, np.minimum(instants, n - 1) / n)
    if fps == 25:
        assert mouth is plan.mouth and blur is plan.blur

    # Flat grey frames whose level is 10 x the instant (in 25 fps frames): what was filmed when.
    frames = (np.full((64, 64, 3), np.rint(10 * t), np.uint8) for t in instants)
    path = tmp_path / f"v{fps}.mp4"
    assert write_mp4(path, frames, plan.audio, (64, 64), crf=10, fps=fps) == len(instants)
    read = np.array([float(np.median(frame)) for frame in FrameStream(path, "gray")])
    assert len(read) == n
    shown = read / 10  # the instant each 25 fps frame shows
    assert np.abs(shown - np.arange(n)).max() <= 0.52 + 0.1  # nearest frame of the stored rate (+ coding)
    between = np.abs(shown - np.round(shown)) > 0.15  # instants that fall between the 25 fps ones
    assert (between.sum() == 0) if fps == 25 else (between.sum() > n // 3)


def test_random_channels_store_a_fifth_at_24_and_at_30_fps() -> None:
    rates = [Channel.random(np.random.default_rng(i)).fps for i in range(500)]
    assert set(rates) == {24, 25, 30}
    assert 0.5 < rates.count(25) / len(rates) < 0.7
