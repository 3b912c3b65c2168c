"""How a synthetic source clip was "recorded and stored": video compression, audio level and noise.

A detector that meets clips from another generator meets other cameras, encoders and
microphones. Each source clip of the corpus draws one :class:`Channel` and every clip made from
it (the real one and each fake) goes through the same channel, so no category can be told apart
by its channel, only by what the lips and the speech do.

* ``crf``: the H.264 quality of the mp4 (18 near lossless .. 32 visibly blocky lips);
* ``gain_db``: the audio level (-12 .. +6 dB; loud clips clip at int16, as a hot microphone does);
* ``noise_snr_db`` / ``noise_colour``: white or pink noise at 15-40 dB below the speech (None:
  a clean track, a third of the clips);
* ``fps``: the frame rate the clip is filmed and stored at, 25 for most clips, 24 or 30 for a
  fifth each: the motion is rendered at that rate's instants (:func:`.clips.tracks_at`), as a
  camera at that rate films it, so the preprocessing's resampling to 25 fps meets frames that
  fall between the 25 fps instants (up to half a frame, 20 ms, off), as in real footage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sf_fairseq.data.rates import FPS

NOISE_COLOURS = ("white", "pink")
CLEAN_SHARE = 1 / 3
FRAME_RATES = (FPS, FPS, FPS, 24, 30)  # drawn uniformly


@dataclass(frozen=True)
class Channel:
    crf: int = 20
    gain_db: float = 0.0
    noise_snr_db: float | None = None
    noise_colour: str = "white"
    fps: int = FPS

    @staticmethod
    def random(rng: np.random.Generator) -> "Channel":
        crf = int(rng.integers(18, 33))
        gain_db = float(rng.uniform(-12.0, 6.0))
        snr = float(rng.uniform(15.0, 40.0))
        colour = str(NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))])
        clean = rng.random() < CLEAN_SHARE
        fps = int(FRAME_RATES[int(rng.integers(len(FRAME_RATES)))])
        return Channel(crf, gain_db, None if clean else snr, colour, fps)

    def apply_audio(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``audio`` (int16 [N]) through the channel: noise at the SNR (measured against the
        speech, the samples above -40 dB of the peak), then the gain, clipped to int16."""
        if audio.dtype != np.int16 or audio.ndim != 1:
            raise ValueError(f"audio must be int16 [N], got {audio.dtype} {audio.shape}")
        x = audio.astype(np.float64)
        if self.noise_snr_db is not None and x.size:
            speech = x[np.abs(x) > 0.01 * max(np.abs(x).max(), 1.0)]
            power = float(np.mean(speech**2)) if speech.size else 0.0
            if power > 0:
                noise = coloured_noise(x.size, self.noise_colour, rng)
                x = x + noise * np.sqrt(power / 10 ** (self.noise_snr_db / 10))
        x *= 10 ** (self.gain_db / 20)
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)

    def metadata(self) -> dict:
        return asdict(self)


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of unit-power white or pink (power ~ 1/f) noise, float64."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    if colour != "pink":
        raise ValueError(f"unknown noise colour {colour!r}; choose from {NOISE_COLOURS}")
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # keep the DC bin finite (it is near 0 anyway)
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    return pink / max(float(np.sqrt(np.mean(pink**2))), 1e-12)
