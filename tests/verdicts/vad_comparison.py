"""Compare voice-activity detectors on speech/silence ground truth from the synthetic corpus.

Not a test: a measurement, run by hand (a few minutes on one core)::

    python tests/verdicts/vad_comparison.py --n-espeak 40

Clips: espeak-ng sentences (phoneme timings from the synthesiser) and the shipped LibriVox
excerpts (forced-aligned phones), each padded with 0.5-2 s of silence at both ends, under
three conditions: clean (plus a -70 dBFS noise floor), white noise at 20 dB SNR and at 10 dB
SNR (relative to the speech's RMS). Truth per 25 fps frame: speech when at least half of the
frame lies inside a non-pause phone, after filling pauses shorter than 0.2 s (word gaps that
the gated score should keep). Reports frame accuracy, speech precision/recall/F1 and the
real-time factor (seconds of CPU per second of audio) per detector and condition.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sf_fairseq.eval import speech
from sf_fairseq.preprocess.synthetic.recorded import load_recordings, recorded_utterance
from sf_fairseq.preprocess.synthetic.speech import make_sentence, random_voice, speak

FPS = 25
SPF = 640


def truth_frames(phonemes, lead: float, n_frames: int, fill_gap: float = 0.2) -> np.ndarray:
    spans = [(lead + p.start, lead + p.end) for p in phonemes if not p.symbol.startswith("_")]
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a - merged[-1][1] < fill_gap:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    cover = np.zeros(n_frames * SPF)
    for a, b in merged:
        cover[int(a * 16000): int(b * 16000)] = 1
    return cover.reshape(n_frames, SPF).mean(1) >= 0.5


def make_clips(n_espeak: int, seed: int):
    rng = np.random.default_rng(seed)
    utterances = [speak(make_sentence(rng), random_voice(rng)) for _ in range(n_espeak)]
    utterances += [recorded_utterance(r) for r in load_recordings()]
    clips = []
    for u in utterances:
        lead, tail = rng.uniform(0.5, 2.0, size=2)
        n_frames = int(np.ceil((lead + u.duration + tail) * FPS))
        x = np.zeros(n_frames * SPF)
        start = int(lead * 16000)
        x[start: start + len(u.audio)] = u.audio
        clips.append((x, truth_frames(u.phonemes, lead, n_frames), u.voice.name))
    return clips, rng


def with_noise(x: np.ndarray, truth: np.ndarray, snr_db: float | None, rng) -> np.ndarray:
    speech_rms = np.sqrt(np.mean(x[np.repeat(truth, SPF)] ** 2))
    level = 32768 * 10 ** (-70 / 20) if snr_db is None else speech_rms * 10 ** (-snr_db / 20)
    return np.clip(x + rng.normal(0, level, x.shape), -32768, 32767).astype(np.int16)


def silero_frames(x: np.ndarray) -> np.ndarray:
    return speech.speech_probabilities(x) >= 0.5


def webrtc_frames(mode: int):
    import webrtcvad

    vad = webrtcvad.Vad(mode)

    def detect(x: np.ndarray) -> np.ndarray:
        sub = x[: len(x) // 320 * 320].reshape(-1, 320)
        flags = np.array([vad.is_speech(s.tobytes(), 16000) for s in sub], dtype=float)
        flags = np.pad(flags, (0, 2 * speech.frame_count(len(x)) - flags.size))
        return flags.reshape(-1, 2).mean(1) >= 0.5

    return detect


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-espeak", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    clips, rng = make_clips(args.n_espeak, args.seed)
    detectors = {"silero-vad (p>=0.5)": silero_frames,
                 "silero-vad as gated (p>=0.5, +-2 frames)": lambda x: speech.speech_frames(x)}
    try:
        for mode in (1, 2, 3):
            detectors[f"webrtcvad mode {mode}"] = webrtc_frames(mode)
    except ImportError:
        print("webrtcvad not installed: skipped")
    conditions = {"clean": None, "20 dB": 20.0, "10 dB": 10.0}
    noisy = {c: [with_noise(x, t, snr, rng) for x, t, _ in clips] for c, snr in conditions.items()}
    total_s = sum(len(x) for x, _, _ in clips) / 16000
    speech_share = np.mean(np.concatenate([t for _, t, _ in clips]))
    print(f"{len(clips)} clips, {total_s:.0f} s per condition, {speech_share:.0%} speech frames")
    print("| detector | condition | accuracy | precision | recall | F1 | CPU s per audio s |")
    print("|---|---|---|---|---|---|---|")
    for name, detect in detectors.items():
        for cond in conditions:
            t0 = time.process_time()
            pred = np.concatenate([detect(x) for x in noisy[cond]])
            cpu = time.process_time() - t0
            truth = np.concatenate([t for _, t, _ in clips])
            pred = pred[: truth.size]
            tp = np.sum(pred & truth)
            prec = tp / max(pred.sum(), 1)
            rec = tp / max(truth.sum(), 1)
            f1 = 2 * prec * rec / max(prec + rec, 1e-9)
            print(f"| {name} | {cond} | {np.mean(pred == truth):.3f} | {prec:.3f} | {rec:.3f} | "
                  f"{f1:.3f} | {cpu / total_s:.4f} |")


if __name__ == "__main__":
    main()
