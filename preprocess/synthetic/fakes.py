"""Labelled fakes derived from a real clip plan (same face, same head motion, same length).

Categories (label 1 = real, 0 = fake, as SpeechForensics' lists):

* ``dubbed`` (0): the audio is another utterance (new sentence and voice); the mouth still
  says the original one. Speech that runs past the clip's end is cut with it, as a dub of a
  real video is (``audio_cut_seconds`` in the metadata says how much), except in GRID clips:
  they are transcribed against their whole sentence, so another sentence is drawn until one
  ends within the clip.
* ``lipsync_other`` (0): the audio stays; the mouth is driven by another utterance's phonemes,
  time-scaled onto the original speech span (so mouth activity and sound still coincide: only
  the articulation disagrees).
* ``frozen_mouth`` (0): the mouth barely moves (a fixed slightly open shape with a little drift),
  as a face swap that loses the lips.
* ``smeared_mouth`` (0): the opening is low-passed over ~0.4 s and halved, and the lips are
  blurred (Gaussian, sigma 2–3.5 px): a swap that keeps a vague jaw motion but no lip detail.
* ``partial`` (0): like ``lipsync_other`` but only inside a window of 0.8–1.6 s within the
  speech; the window (frames and seconds) is ground truth for localisation.
* ``offset_small`` (1): the audio shifted by 0.12–0.4 s (either way), inside the ±0.6 s search
  window of the detector, so it should still count as real.
* ``offset_large`` (0): the audio shifted by 0.9–1.6 s (either way), outside the window.

Replacement speech (the dubbed audio, the other mouth) is drawn from the same sentence grammar
as the real clip (``grammar``: a dubbed GRID clip says another GRID sentence).

Shifts are baked into the samples (a delayed track starts with silence; an early one is cut
and padded at the end), because decoders ignore container start offsets.
"""

from __future__ import annotations

import numpy as np

from sf_fairseq.data.rates import FPS, SAMPLE_RATE

from .clips import ClipPlan, new_utterance, place_audio
from .speech import Phoneme, Utterance
from .visemes import MouthTrack, mouth_track

CATEGORIES = ("real", "dubbed", "lipsync_other", "frozen_mouth", "smeared_mouth", "partial",
              "offset_small", "offset_large")
FAKE_CATEGORIES = CATEGORIES[1:]
# Draws of a GRID sentence for a dubbed clip before settling for the one cut least (in practice a
# six-word sentence fits a clip of another one within a few draws).
MAX_DUB_DRAWS = 20
LABELS = {c: 0 for c in CATEGORIES} | {"real": 1, "offset_small": 1}


def shift_audio(audio: np.ndarray, seconds: float) -> np.ndarray:
    """``audio`` delayed by ``seconds`` (> 0: sound comes later; < 0: earlier), same length."""
    n = int(round(abs(seconds) * SAMPLE_RATE))
    out = np.zeros_like(audio)
    if n >= len(audio):
        return out
    if seconds > 0:
        out[n:] = audio[: len(audio) - n]
    else:
        out[: len(audio) - n] = audio[n:]
    return out


def _voiced(utterance: Utterance) -> list[Phoneme]:
    """The utterance's phonemes without its pauses (symbols starting with ``_``)."""
    return [p for p in utterance.phonemes if not p.symbol.startswith("_")]


def _speech_span(plan: ClipPlan) -> tuple[float, float]:
    voiced = _voiced(plan.utterance)
    return plan.lead + voiced[0].start, plan.lead + voiced[-1].end


def _other_mouth(plan: ClipPlan, rng: np.random.Generator, grammar: str = "free") -> tuple[MouthTrack, str]:
    """Mouth of another utterance (of ``grammar``) time-scaled onto the plan's speech span."""
    other = new_utterance(rng, grammar=grammar)
    voiced = _voiced(other)
    s0, s1 = voiced[0].start, voiced[-1].end
    t0, t1 = _speech_span(plan)
    k = (t1 - t0) / (s1 - s0)
    moved = [Phoneme(p.symbol, t0 + (p.start - s0) * k, t0 + (p.end - s0) * k) for p in voiced]
    return mouth_track(moved, plan.n_frames), other.text


def _speech_cut(plan: ClipPlan, utterance: Utterance) -> float:
    """Seconds of ``utterance``'s speech (its last voiced phoneme) past the end of ``plan``'s
    clip when it starts where the plan's own speech does."""
    return max(0.0, plan.lead + _voiced(utterance)[-1].end - plan.n_frames / FPS)


def _dub_speech(plan: ClipPlan, rng: np.random.Generator, grammar: str) -> tuple[Utterance, float]:
    """The dubbed clip's speech and the seconds of it the clip's end cuts off (see the module
    docstring: GRID sentences are redrawn until one fits)."""
    other = new_utterance(rng, grammar=grammar)
    cut = _speech_cut(plan, other)
    for _ in range(MAX_DUB_DRAWS - 1):
        if grammar != "grid" or cut == 0:
            break
        candidate = new_utterance(rng, grammar=grammar)
        candidate_cut = _speech_cut(plan, candidate)
        if candidate_cut < cut:
            other, cut = candidate, candidate_cut
    return other, cut


def make_fake(plan: ClipPlan, category: str, rng: np.random.Generator, grammar: str = "free") -> ClipPlan:
    """A fake of ``category`` (see :data:`FAKE_CATEGORIES`) from the real ``plan``; replacement
    speech comes from ``grammar`` (:data:`.clips.GRAMMARS`)."""
    meta = {"category": category, "label": LABELS[category]}
    n = plan.n_frames
    if category == "dubbed":
        other, cut = _dub_speech(plan, rng, grammar)
        meta["audio_text"], meta["audio_voice"] = other.text, other.voice.name
        meta["audio_cut_seconds"] = round(cut, 3)
        return plan.with_changes(audio=place_audio(other.audio, plan.lead, n), meta=meta)
    if category == "lipsync_other":
        mouth, text = _other_mouth(plan, rng, grammar)
        meta["mouth_text"] = text
        return plan.with_changes(mouth=mouth, meta=meta)
    if category == "frozen_mouth":
        level = float(rng.uniform(0.05, 0.2))
        drift = np.convolve(rng.normal(0, 0.02, n + 24), np.ones(25) / 25, mode="valid")[:n]
        mouth = MouthTrack(np.clip(level + drift, 0, 1), np.full(n, float(rng.uniform(-0.2, 0.3))))
        meta["open_level"] = round(level, 4)
        return plan.with_changes(mouth=mouth, meta=meta)
    if category == "smeared_mouth":
        box = np.ones(11) / 11  # 0.44 s
        pad = np.pad(plan.mouth.open, 5, mode="edge")
        mouth = MouthTrack(0.05 + 0.5 * np.convolve(pad, box, mode="valid"),
                           0.3 * np.convolve(np.pad(plan.mouth.width, 5, mode="edge"), box, mode="valid"))
        sigma = float(rng.uniform(2.0, 3.5))
        meta["blur_sigma"] = round(sigma, 4)
        return plan.with_changes(mouth=mouth, blur=np.full(n, sigma), meta=meta)
    if category == "partial":
        t0, t1 = _speech_span(plan)
        length = min(float(rng.uniform(0.8, 1.6)), max(t1 - t0, 0.4))
        start = float(rng.uniform(t0, max(t0, t1 - length)))
        f0, f1 = int(round(start * FPS)), min(n, int(round((start + length) * FPS)))
        other, text = _other_mouth(plan, rng, grammar)
        # Cross-fade over 2 frames inside the window, so nothing outside it changes.
        fade = np.zeros(n)
        fade[f0:f1] = 1.0
        ramp = min(2, (f1 - f0) // 2)
        if ramp:
            fade[f0 : f0 + ramp] = fade[f1 - ramp : f1][::-1] = np.arange(1, ramp + 1) / (ramp + 1)
        mouth = MouthTrack(plan.mouth.open * (1 - fade) + other.open * fade,
                           plan.mouth.width * (1 - fade) + other.width * fade)
        meta.update(mouth_text=text, window_frames=[f0, f1], window_seconds=[f0 / FPS, f1 / FPS])
        return plan.with_changes(mouth=mouth, meta=meta)
    if category in ("offset_small", "offset_large"):
        low, high = (0.12, 0.4) if category == "offset_small" else (0.9, 1.6)
        seconds = float(rng.uniform(low, high)) * (1 if rng.random() < 0.5 else -1)
        seconds = round(seconds * FPS) / FPS  # whole frames: the shift is exact in both streams
        meta["offset_seconds"] = seconds
        return plan.with_changes(audio=shift_audio(plan.audio, seconds), meta=meta)
    raise ValueError(f"unknown fake category {category!r}; choose from {FAKE_CATEGORIES}")
